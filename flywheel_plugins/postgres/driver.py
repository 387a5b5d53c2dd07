"""The PostgreSQL :class:`~flywheel.storage.driver.Driver`: the kernel's operations, each in as few round trips as
PostgreSQL allows (what each one does better is listed in :mod:`flywheel_plugins.postgres`)."""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from flywheel.clock import SystemClock, current_clock
from flywheel.errors import DuplicateKey, FlywheelError, ForeignKeyViolation, SchemaMissing
from flywheel.storage.driver import (
    Capabilities,
    ClaimedJob,
    ClaimRequest,
    FinalizePlan,
    FinalizeResult,
    Singleton,
    SweepResult,
    claimed_job,
)
from flywheel.storage.migrations import create_schema
from flywheel.storage.models import to_db_time
from flywheel.storage.portable import PeeweeDriver
from flywheel.storage.schema import JOB_COLUMNS, job_rows
from flywheel_plugins.postgres.bulk import CONVERTERS, COPY_MIN_ROWS, CopyStream, copy_columns, field_default
from flywheel_plugins.postgres.connection import (
    EXCEPTION_WRAPPER,
    TRANSIENT_SQLSTATES,
    PostgresDatabase,
    Secrets,
    connection_params,
    execute,
    hide_password,
    loaded_psycopg2,
    lost_connection,
    sqlstate,
)
from flywheel_plugins.postgres.listener import CHANNEL_SQL, Listener
from flywheel_plugins.postgres.locks import AdvisoryLock, lock_key
from flywheel_plugins.postgres.statements import (
    ENQUEUE_ONE_EXECUTE,
    ENQUEUE_ONE_PREPARE,
    FENCE_ONLY_SQL,
    FINALIZE_SQL,
    RUNS_ONLY_SQL,
    claim_sql,
    plan_arrays,
    renew_sql,
    sweep_sql,
)

if TYPE_CHECKING:
    from flywheel.storage.db import Database

#: Storage parameters for ``jobs`` (go-flywheel §2.6): vacuum the hot queue table early and
#: leave room on each page for the updated row versions a job's life produces.
JOBS_STORAGE_PARAMETERS = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_cost_limit": "1000",
    "fillfactor": "80",
}

T = TypeVar("T")

_JOB_KEYS = frozenset(JOB_COLUMNS)
#: SQLSTATEs that name a flywheel error (:meth:`PostgresDriver.map_error`).
_UNIQUE_VIOLATION, _FOREIGN_KEY_VIOLATION, _UNDEFINED_TABLE = "23505", "23503", "42P01"
_MISSING_TABLE = re.compile(r'relation "(?:\w+\.)?(jobs|job_runs|job_periodics)" does not exist')


def uses_db_clock() -> bool:
    """Whether leases, due times and the sweep go by the database's clock (``now()``) here.

    They do while the clock in scope is a :class:`~flywheel.clock.SystemClock` (the default):
    that is this node's wall clock, which may be off by any amount, and nodes whose clocks
    disagree must not judge each other's leases by their own. A clock injected with
    :func:`flywheel.use_clock` that is not a ``SystemClock`` (a ``FixedClock`` in tests) is
    virtual time the caller controls, so it drives them instead, exactly as on SQLite.
    """
    return isinstance(current_clock(), SystemClock)


class PostgresDriver(PeeweeDriver):
    """The PostgreSQL driver; see the :mod:`flywheel_plugins.postgres` docstring."""

    name = "postgres"
    chunk_size = 1000
    capabilities = Capabilities(row_locks=True)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        #: the URL's password, to scrub from errors and log lines
        self.secrets = Secrets(url)
        self._params: dict[str, Any] | None = None
        #: guards :attr:`_listener`; the listener takes it too to retire itself without a race
        self.listener_lock = threading.Lock()
        self._listener: Listener | None = None
        self._wake = threading.Condition()
        self._seq: dict[str, int] = {}  # queue -> notifications seen (bumped by the listener)
        self._interrupts = 0
        self._seen = threading.local()
        self._prepared: weakref.WeakSet[Any] = weakref.WeakSet()  # connections holding ENQUEUE_ONE

    # -- connection ----------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            self._params = connection_params(self.url)
        return self._params

    def open(self) -> peewee.Database:
        return PostgresDatabase(
            self.params, self.secrets,
            field_types={"JSON": "JSONB", "TIMESTAMPTZ": "TIMESTAMPTZ"},
        )

    def display_url(self) -> str:
        return hide_password(self.url)

    def scrub(self, text: str) -> str:
        """``text`` with this driver's password hidden."""
        return self.secrets.scrub(text)

    def is_transient(self, exc: BaseException) -> bool:
        if super().is_transient(exc) or lost_connection(exc):
            return True
        psycopg2 = loaded_psycopg2()
        if psycopg2 is not None and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return True
        code = sqlstate(exc)
        return bool(code) and code.startswith(TRANSIENT_SQLSTATES)

    @classmethod
    def map_error(cls, exc: BaseException) -> FlywheelError | None:
        """By SQLSTATE (psycopg2's ``pgcode``, kept on the scrubbed copies this driver raises)."""
        code = sqlstate(exc)
        text = str(exc).strip() or type(exc).__name__
        if code == _UNIQUE_VIOLATION:
            return DuplicateKey(f"flywheel: duplicate key: {text}")
        if code == _FOREIGN_KEY_VIOLATION:
            return ForeignKeyViolation(f"flywheel: foreign key violation: {text}")
        if code == _UNDEFINED_TABLE and (missing := _MISSING_TABLE.search(text)) is not None:
            return SchemaMissing(f"table {missing.group(1)} does not exist")
        return None

    def reset_connection(self, db: Database) -> None:
        pw = db.pw
        if pw.in_transaction():
            return  # the caller's transaction owns it; it fails and unwinds on its own
        if isinstance(pw, PostgresDatabase):
            pw.drop_connection()
        else:
            super().reset_connection(db)

    def _retry_lost(self, db: Database, operation: Callable[[], T]) -> T:
        """Run ``operation``; if the connection turned out dead, run it once more on a new one.

        Only for operations that are safe to repeat and only outside a caller's transaction.
        """
        try:
            return operation()
        except Exception as exc:
            if db.pw.in_transaction() or not lost_connection(exc):
                raise
        self.reset_connection(db)
        return operation()

    # -- schema --------------------------------------------------------------------------

    def migrate(self, db: Database) -> None:
        with db.atomic():
            # Nodes starting together each run migrate: serialise them (CREATE TABLE IF NOT
            # EXISTS races on the catalog otherwise). Index builds may outlast statement_timeout.
            db.pw.execute_sql("SET LOCAL statement_timeout = 0")
            db.pw.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key("", "flywheel:migrate"),))
            create_schema(db)
            self._set_storage_parameters(db)

    def _set_storage_parameters(self, db: Database) -> None:
        row = db.pw.execute_sql(
            "SELECT reloptions FROM pg_class WHERE oid = to_regclass('jobs')"
        ).fetchone()
        current = dict(option.split("=", 1) for option in (row[0] if row and row[0] else []))
        wanted = {k: v for k, v in JOBS_STORAGE_PARAMETERS.items() if current.get(k) != v}
        if wanted:  # ALTER only when something differs: it takes a lock, even when idempotent
            settings = ", ".join(f"{k} = {v}" for k, v in wanted.items())
            db.pw.execute_sql(f"ALTER TABLE jobs SET ({settings})")

    # -- producing -----------------------------------------------------------------------

    def _values_sql(self, db: Database, rows: Sequence[dict[str, Any]]) -> tuple[list[str], bytes]:
        """Column names and the mogrified ``VALUES`` list of ``rows`` (one C call for the chunk)."""
        fields = db.Job._meta.fields
        names = [name for name in fields if name in rows[0]]
        if any(len(row) != len(names) for row in rows):  # ragged rows: every column any row has
            names = [name for name in fields if any(name in row for row in rows)]
            rows = [{name: row[name] if name in row else field_default(fields[name]) for name in names} for row in rows]
        pairs = [(name, CONVERTERS.get(fields[name].field_type)) for name in names]
        flat: list[Any] = []
        for row in rows:
            flat.extend([row[name] if convert is None else convert(row[name]) for name, convert in pairs])
        template = "(" + ",".join(["%s"] * len(names)) + ")"
        values = db.pw.cursor().mogrify(",".join([template] * len(rows)), flat)
        return [fields[name].column_name for name in names], values

    def insert_jobs(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert ``rows`` skipping unique collisions; return exactly the ids that landed.

        Up to :data:`COPY_MIN_ROWS` rows: one multi-row ``INSERT … ON CONFLICT DO NOTHING
        RETURNING id`` per chunk of :attr:`chunk_size`. Bulk: the rows are streamed with
        ``COPY`` (PostgreSQL parses COPY data several times faster than a VALUES list, and
        Python formats it faster too); see :meth:`_copy_insert`.
        """
        if not rows:
            return set()
        if len(rows) >= COPY_MIN_ROWS:
            if db.pw.in_transaction():
                return self._copy_insert(db, rows)
            with db.atomic():
                return self._copy_insert(db, rows)
        landed: set[str] = set()
        for start in range(0, len(rows), self.chunk_size):
            chunk = rows[start : start + self.chunk_size]
            columns, values = self._values_sql(db, chunk)
            sql = (f"INSERT INTO jobs ({', '.join(columns)}) VALUES ".encode() + values
                   + b" ON CONFLICT DO NOTHING RETURNING id")
            ids = [row[0] for row in execute(db, sql).fetchall()]
            if len(ids) != len(chunk) and not any(r.get("unique_key") is not None
                                                   or r.get("unique_active_key") is not None for r in chunk):
                # Without unique keys only an id that already exists can skip a row: refuse the
                # batch (the caller's transaction then writes nothing) rather than lose the job.
                raise DuplicateKey(f"flywheel: {len(chunk) - len(ids)} of {len(chunk)} new job ids "
                                   "already existed; nothing was enqueued")
            landed.update(ids)
        return landed

    def _copy_insert(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """COPY ``rows`` in, streamed piece by piece (:class:`CopyStream`), inside a transaction.

        Rows without a unique key go straight into ``jobs``: COPY writes every row or fails
        as a whole, and its row count is checked, so all their ids landed. A batch with
        unique keys goes through a session-private staging table and one ``INSERT … SELECT
        … ON CONFLICT DO NOTHING RETURNING id``, which names the rows that landed.
        """
        fields = db.Job._meta.fields
        if any(len(row) != len(rows[0]) for row in rows):  # ragged rows: every column any row has
            names = [name for name in fields if any(name in row for row in rows)]
            rows = [{name: row[name] if name in row else field_default(fields[name]) for name in names} for row in rows]
        columns = copy_columns(rows, fields)
        listed = ", ".join(column for column, _, _, _ in columns)
        cursor = db.pw.cursor()
        if not any(row.get("unique_key") is not None or row.get("unique_active_key") is not None for row in rows):
            with EXCEPTION_WRAPPER:
                cursor.copy_expert(f"COPY jobs ({listed}) FROM STDIN", CopyStream(rows, columns))
            if cursor.rowcount != len(rows):
                raise peewee.DatabaseError(f"flywheel: COPY wrote {cursor.rowcount} of {len(rows)} rows")
            return {row["id"] for row in rows}
        # The staging table lives as long as the session; ON COMMIT DELETE ROWS and the
        # TRUNCATE keep it empty between uses (insert_jobs may run twice in one transaction).
        execute(db, "CREATE TEMP TABLE IF NOT EXISTS flywheel_stage (LIKE jobs) ON COMMIT DELETE ROWS; "
                     "TRUNCATE flywheel_stage")
        with EXCEPTION_WRAPPER:
            cursor.copy_expert(f"COPY flywheel_stage ({listed}) FROM STDIN", CopyStream(rows, columns))
        sql = f"INSERT INTO jobs ({listed}) SELECT {listed} FROM flywheel_stage ON CONFLICT DO NOTHING RETURNING id"
        return {row[0] for row in execute(db, sql).fetchall()}

    def enqueue(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        if len(rows) == 1 and rows[0].keys() == _JOB_KEYS:
            return self._enqueue_one(db, rows[0])
        if not rows:
            return set()
        with db.atomic():
            landed = self.insert_jobs(db, rows)
            if landed:
                self.notify(db, {row["queue"] for row in rows if row["id"] in landed})
        return landed

    def _enqueue_one(self, db: Database, row: dict[str, Any]) -> set[str]:
        """One job: the insert and its NOTIFY in one prepared statement, so one round trip and
        (outside a caller's transaction, in autocommit) one commit, with no parsing or planning
        of the insert after a connection's first. The notification goes out only if the row
        landed; the returned set says whether it did."""
        values = job_rows([row])[0]
        for attempt in (1, 2):
            conn = db.pw.connection()
            try:
                if conn not in self._prepared:
                    execute(db, ENQUEUE_ONE_PREPARE)
                    self._prepared.add(conn)
                return {found[0] for found in execute(db, ENQUEUE_ONE_EXECUTE, values).fetchall()}
            except peewee.DatabaseError as exc:
                # the session lost its prepared statements (DISCARD ALL by a pooler): prepare again
                if attempt == 2 or sqlstate(exc) != "26000" or db.pw.in_transaction():
                    raise
                self._prepared.discard(conn)
        raise AssertionError("unreachable")

    def notify(self, db: Database, queues: set[str]) -> None:
        """``NOTIFY`` each queue's channel; inside a transaction PostgreSQL sends it at commit."""
        if queues:
            db.pw.execute_sql(
                f"SELECT pg_notify({CHANNEL_SQL.format(q='queue')}, '') FROM unnest(%s::text[]) AS q (queue)",
                (sorted(queues),),
            )

    # -- wake-ups --------------------------------------------------------------------------

    def wait_for_work(self, db: Database, queues: Sequence[str], timeout: float) -> bool:
        """Wait on the driver's LISTEN connection for a notification on one of ``queues``.

        A notification (or :meth:`interrupt_waits`) that arrived since this thread's previous
        wait returns at once, so one sent between a claim and the next wait is not lost.
        """
        if timeout <= 0:
            return False
        queues = tuple(queues)
        listener = self._listen(queues)
        deadline = time.monotonic() + timeout
        seen: dict[Any, int] | None = getattr(self._seen, "counters", None)
        if seen is None:
            seen = self._seen.counters = {}
        with self._wake:
            listener.waiters += 1
            try:
                baseline = seen.get(queues, self._notified(queues))
                interrupts = seen.get(None, self._interrupts)
                while True:
                    current = self._notified(queues)
                    if current != baseline or self._interrupts != interrupts:
                        woken = True
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        woken = False
                        break
                    self._wake.wait(remaining)
                seen[queues] = current
                seen[None] = self._interrupts
                return woken
            finally:
                listener.waiters -= 1
                listener.last_wait = time.monotonic()

    def _notified(self, queues: Sequence[str]) -> int:
        return sum(self._seq.get(queue, 0) for queue in queues)

    def interrupt_waits(self) -> None:
        with self._wake:
            self._interrupts += 1
            self._wake.notify_all()

    def _listen(self, queues: Sequence[str]) -> Listener:
        with self.listener_lock:
            listener = self._listener
            if listener is None or not listener.is_alive() or listener.pid != os.getpid() or listener.retiring:
                listener = self._listener = Listener(self)
                listener.want(queues)
                listener.start()
            else:
                listener.want(queues)
            listener.last_wait = time.monotonic()  # keeps it from retiring before the wait starts
            return listener

    def bump_queues(self, queues: Sequence[str]) -> None:
        """Count a notification on each of ``queues`` and wake the waiting threads (the listener calls this)."""
        with self._wake:
            for queue in queues:
                self._seq[queue] = self._seq.get(queue, 0) + 1
            self._wake.notify_all()

    def listener_retired(self, listener: Listener) -> None:
        """Forget ``listener`` once it has stopped, so the next wait starts a new one."""
        with self.listener_lock:
            if self._listener is listener:
                self._listener = None

    def close(self) -> None:
        """Stop the LISTEN connection, if any (it would also close itself once idle)."""
        with self.listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()

    # -- the claim -------------------------------------------------------------------------

    def claim(self, db: Database, request: ClaimRequest) -> list[ClaimedJob]:
        """Lease up to ``request.limit`` jobs and write their run rows: one statement, one round trip.

        A claim is safe to repeat, so one that finds its connection dead is retried at once
        on a new connection (if the lost one had committed, its jobs come back through the
        sweep when their lease expires).
        """
        if request.limit <= 0 or not request.queues or not request.run_ids:
            return []
        sql, params = claim_sql(request, db_clock=uses_db_clock())
        rows = self._retry_lost(db, lambda: execute(db, sql, params, dicts=True))
        return [claimed_job(row, request, row["run_id"]) for row in rows]

    # -- leases ----------------------------------------------------------------------------

    def renew_leases(
        self, db: Database, leases: Sequence[tuple[str, str]], until: datetime, now: datetime
    ) -> set[str]:
        if not leases:
            return set()
        params = {"until": to_db_time(until), "now": to_db_time(now), "lease_s": (until - now).total_seconds(),
                  "ids": [job_id for job_id, _ in leases], "tokens": [token for _, token in leases]}
        sql = renew_sql(db_clock=uses_db_clock())
        rows = self._retry_lost(db, lambda: execute(db, sql, params).fetchall())
        return {row[0] for row in rows}

    # -- finalisation ------------------------------------------------------------------------

    def finalize(self, db: Database, plans: Sequence[FinalizePlan]) -> list[FinalizeResult]:
        """Finalise a group of attempts in one statement (follow-ups: one transaction).

        Same semantics as :meth:`flywheel.storage.driver.Driver.finalize`: the job changes only while it is
        still running under the attempt's lease token; a superseded attempt still writes
        its own run row; follow-ups are inserted only when not superseded.
        """
        if not plans:
            return []
        if not any(plan.follow_ups for plan in plans) and not db.pw.in_transaction():
            changed = {row[0] for row in execute(db, FINALIZE_SQL, plan_arrays(plans, {})).fetchall()}
            return [FinalizeResult(job_id=p.job_id, superseded=p.job_id not in changed, enqueued_children=0)
                    for p in plans]
        with db.atomic():
            changed = {row[0] for row in execute(db, FENCE_ONLY_SQL, plan_arrays(plans, {})).fetchall()}
            children: dict[str, int] = {}
            queues: set[str] = set()
            for plan in plans:
                if plan.follow_ups and plan.job_id in changed:
                    children[plan.run_id] = len(self.insert_jobs(db, plan.follow_ups))
                    queues.update(row["queue"] for row in plan.follow_ups)
            self.notify(db, queues)
            execute(db, RUNS_ONLY_SQL, plan_arrays(plans, children, changed))
        return [FinalizeResult(job_id=p.job_id, superseded=p.job_id not in changed,
                               enqueued_children=children.get(p.run_id, 0)) for p in plans]

    # -- maintenance -------------------------------------------------------------------------

    def sweep_batch(self, db: Database, now: datetime, batch_size: int) -> SweepResult:
        with db.atomic():
            # SKIP LOCKED: a row another transaction holds (a finaliser committing, another
            # node's sweep) is left to it; recover_expired re-checks the lease in its UPDATEs.
            # On the database's clock, a lease is expired when the database says so, and the
            # recovery is stamped (and re-checked) with that same instant.
            rows = execute(db, sweep_sql(db_clock=uses_db_clock()),
                            {"now": to_db_time(now), "limit": batch_size}).fetchall()
            at = rows[0][3] if rows else now
            return self.recover_expired(db, at, [tuple(row[:3]) for row in rows])

    def release_leases(self, db: Database, leases: Sequence[tuple[str, str]], now: datetime) -> int:
        """As the base, but on the database's clock a released job is due by that clock's now."""
        if leases and uses_db_clock():
            now = self._retry_lost(db, lambda: execute(db, "SELECT now()").fetchone()[0])
        return super().release_leases(db, leases, now)

    def singleton(self, db: Database, name: str) -> Singleton:
        """A session advisory lock named ``name`` (scoped to the database's schema)."""
        return AdvisoryLock(self, name)
