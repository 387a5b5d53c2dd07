"""The schema: ``jobs``, ``job_runs`` and ``job_periodics`` as peewee models, and ``migrate``.

The models here are unbound (``flywheel.models()`` hands them to hosts that own their
schema); each :class:`~flywheel.storage.db.Database` binds its own subclasses, so several
databases can be open in one process. Timestamps are stored as aware UTC instants in one
fixed-width text form that both dialects accept, so comparisons are exact on SQLite too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import peewee

from flywheel.enums import ACTIVE_STATES, CLAIMABLE_STATES, TERMINAL_STATES

_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"


def to_db_time(value: datetime) -> str:
    """The stored form of an instant (naive values are taken as UTC).

    ``isoformat`` renders it ~4x faster than ``strftime`` (several instants per job); it
    leaves out a zero microsecond and pads years below 1000, which ``_TS_FORMAT`` does not.
    """
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value.year < 1000:
        return value.strftime(_TS_FORMAT)
    text = value.isoformat(" ")
    return text if value.microsecond else f"{text[:19]}.000000+00:00"


def from_db_time(value: Any) -> datetime | None:
    """An aware UTC datetime from whatever the driver returned."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class TimestampField(peewee.Field):
    """An instant: ``timestamptz`` on PostgreSQL, fixed-width UTC text on SQLite."""

    field_type = "TIMESTAMPTZ"

    def db_value(self, value: Any) -> Any:
        return None if value is None else to_db_time(value) if isinstance(value, datetime) else value

    def python_value(self, value: Any) -> datetime | None:
        return from_db_time(value)


class JSONField(peewee.Field):
    """JSON: ``jsonb`` on PostgreSQL, text on SQLite. A ``str`` value is taken as JSON text."""

    field_type = "JSON"

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"))

    def python_value(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, (str, bytes, bytearray)) else value


def _states(states: tuple[str, ...]) -> str:
    return ", ".join(f"'{s}'" for s in states)


CLAIMABLE_SQL = _states(CLAIMABLE_STATES)
ACTIVE_SQL = _states(ACTIVE_STATES)
TERMINAL_SQL = _states(TERMINAL_STATES)

# Partial-index predicates as literal SQL: a planner uses a partial index only when the
# query's WHERE provably implies the index's predicate, which bound parameters never do.
IS_CLAIMABLE = peewee.SQL(f"state IN ({CLAIMABLE_SQL})")
IS_RUNNING = peewee.SQL("state = 'running'")


class Job(peewee.Model):
    """A unit of work and its current state (one row per job)."""

    id = peewee.TextField(primary_key=True)
    created_at = TimestampField()
    updated_at = TimestampField()
    metadata = JSONField(default="{}")
    kind = peewee.TextField()
    queue = peewee.TextField(default="default")
    args = JSONField()
    priority = peewee.BigIntegerField(default=100)
    state = peewee.TextField(default="available")
    attempt = peewee.BigIntegerField(default=0)
    max_attempts = peewee.BigIntegerField(default=25)
    timeout_ms = peewee.BigIntegerField(null=True)
    scheduled_at = TimestampField()
    leased_until = TimestampField(null=True)
    lease_token = peewee.TextField(null=True)
    unique_key = peewee.TextField(null=True)
    unique_active_key = peewee.TextField(null=True)
    parent_job_id = peewee.TextField(null=True)
    executor_class = peewee.TextField(default="")
    finalized_at = TimestampField(null=True)
    tags = JSONField(default="[]")

    class Meta:
        table_name = "jobs"


class JobRun(peewee.Model):
    """One attempt of a job: the append-only audit trail."""

    id = peewee.TextField(primary_key=True)
    job_id = peewee.TextField()
    attempt = peewee.BigIntegerField()
    executor_class = peewee.TextField(default="")
    executor_id = peewee.TextField()
    started_at = TimestampField()
    finished_at = TimestampField(null=True)
    outcome = peewee.TextField()
    error_class = peewee.TextField(null=True)
    error_message = peewee.TextField(null=True)
    error_payload = JSONField(null=True)
    output = JSONField(null=True)
    duration_ms = peewee.BigIntegerField(null=True)
    cost_micros = peewee.BigIntegerField(null=True)
    enqueued_children = peewee.BigIntegerField(default=0)
    created_at = TimestampField()

    class Meta:
        table_name = "job_runs"


class JobPeriodic(peewee.Model):
    """A cron or interval schedule and its cursor."""

    id = peewee.TextField(primary_key=True)
    slug = peewee.TextField()
    kind = peewee.TextField()
    args_template = JSONField(default="{}")
    queue = peewee.TextField(default="periodic")
    cron_expr = peewee.TextField(null=True)
    interval_seconds = peewee.BigIntegerField(null=True)
    timezone = peewee.TextField(default="UTC")
    next_run_at = TimestampField()
    last_enqueued_at = TimestampField(null=True)
    is_active = peewee.BooleanField(default=True)
    created_at = TimestampField()
    updated_at = TimestampField()

    class Meta:
        table_name = "job_periodics"


MODELS: tuple[type[peewee.Model], ...] = (Job, JobRun, JobPeriodic)

@attrs.frozen(kw_only=True)
class Index:
    """One index of the schema; ``where`` (standard SQL) makes it partial."""

    name: str
    table: str
    columns: str
    unique: bool = False
    where: str | None = None

    def ddl(self) -> str:
        """``CREATE [UNIQUE] INDEX IF NOT EXISTS …``, which every supported database accepts."""
        kind = "UNIQUE INDEX" if self.unique else "INDEX"
        where = f" WHERE {self.where}" if self.where else ""
        return f"CREATE {kind} IF NOT EXISTS {self.name} ON {self.table} ({self.columns}){where}"


#: The indexes, in creation order. The predicates are what make the unique keys and the
#: claim index partial; queries that must use a partial index repeat its predicate literally.
INDEXES: tuple[Index, ...] = (
    Index(name="jobs_unique_key", table="jobs", unique=True, columns="unique_key", where="unique_key IS NOT NULL"),
    Index(name="jobs_unique_active_key", table="jobs", unique=True, columns="unique_active_key",
          where=f"unique_active_key IS NOT NULL AND state IN ({ACTIVE_SQL})"),
    # The claim: equality on queue, then the claim's exact order, over claimable rows only.
    Index(name="jobs_ready", table="jobs", columns="queue, priority, scheduled_at, id",
          where=f"state IN ({CLAIMABLE_SQL})"),
    Index(name="jobs_parent_state", table="jobs", columns="parent_job_id, state", where="parent_job_id IS NOT NULL"),
    Index(name="jobs_running_leased", table="jobs", columns="leased_until", where="state = 'running'"),
    Index(name="jobs_state", table="jobs", columns="state, kind"),
    Index(name="jobs_finalized", table="jobs", columns="finalized_at", where="finalized_at IS NOT NULL"),
    Index(name="job_runs_job_attempt", table="job_runs", unique=True, columns="job_id, attempt"),
    Index(name="idx_job_periodics_slug", table="job_periodics", unique=True, columns="slug"),
)


def index_ddl() -> list[str]:
    """The ``CREATE INDEX`` statements, in order."""
    return [index.ddl() for index in INDEXES]


def bind_models(database: peewee.Database) -> dict[str, type[peewee.Model]]:
    """Subclasses of the models bound to ``database``, keyed by table name."""
    bound: dict[str, type[peewee.Model]] = {}
    for model in MODELS:
        meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
        bound[model._meta.table_name] = type(model.__name__, (model,), {"Meta": meta, "__module__": __name__})
    return bound
