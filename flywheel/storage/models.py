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

import peewee

from flywheel.enums import ACTIVE_STATES, CLAIMABLE_STATES, TERMINAL_STATES

_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"


def to_db_time(value: datetime) -> str:
    """The stored form of an instant (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_TS_FORMAT)


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

# Partial-index predicates as literal SQL: SQLite uses a partial index only when the
# query's WHERE provably implies the index's, which bound parameters never do.
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
    deleted_at = TimestampField(null=True)

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

# (name, table, unique, columns, predicate). Identical DDL on both dialects; the
# predicates are what make the unique keys and the claim index partial.
INDEXES: tuple[tuple[str, str, bool, str, str | None], ...] = (
    ("jobs_unique_key", "jobs", True, "unique_key", "unique_key IS NOT NULL"),
    ("jobs_unique_active_key", "jobs", True, "unique_active_key",
     f"unique_active_key IS NOT NULL AND state IN ({ACTIVE_SQL})"),
    # The claim: equality on queue, then the claim's exact order, over claimable rows only.
    ("jobs_ready", "jobs", False, "queue, priority, scheduled_at, id",
     f"state IN ({CLAIMABLE_SQL}) AND deleted_at IS NULL"),
    ("jobs_parent_state", "jobs", False, "parent_job_id, state",
     "parent_job_id IS NOT NULL AND deleted_at IS NULL"),
    ("jobs_running_leased", "jobs", False, "leased_until", "state = 'running'"),
    ("jobs_state", "jobs", False, "state, kind", "deleted_at IS NULL"),
    ("jobs_finalized", "jobs", False, "finalized_at", "finalized_at IS NOT NULL"),
    ("idx_jobs_deleted_at", "jobs", False, "deleted_at", "deleted_at IS NOT NULL"),
    ("job_runs_job_attempt", "job_runs", True, "job_id, attempt", None),
    ("idx_job_periodics_slug", "job_periodics", True, "slug", None),
)


def index_ddl() -> list[str]:
    """The ``CREATE INDEX`` statements, in order."""
    statements = []
    for name, table, unique, columns, predicate in INDEXES:
        where = f" WHERE {predicate}" if predicate else ""
        kind = "UNIQUE INDEX" if unique else "INDEX"
        statements.append(f"CREATE {kind} IF NOT EXISTS {name} ON {table} ({columns}){where}")
    return statements


def bind_models(database: peewee.Database) -> dict[str, type[peewee.Model]]:
    """Subclasses of the models bound to ``database``, keyed by table name."""
    bound: dict[str, type[peewee.Model]] = {}
    for model in MODELS:
        meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
        bound[model._meta.table_name] = type(model.__name__, (model,), {"Meta": meta, "__module__": __name__})
    return bound
