"""PostgreSQL driver: ``postgresql://user:pass@host:port/db?libpq-params`` (also ``postgres://``).

What PostgreSQL does better than the portable peewee defaults in :mod:`flywheel.driver`:

* **The claim** is one statement: ``SELECT … FOR UPDATE SKIP LOCKED`` over the ``jobs_ready``
  partial index, the ``UPDATE`` that leases the rows and the ``INSERT`` of their ``started``
  run rows, in one round trip (see :data:`_CLAIM_SQL`).
* **Enqueue** is a multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING id``; a single job
  inserted outside a transaction is one round trip that also ``NOTIFY``s its queue.
* **Wake-ups**: every insert ``NOTIFY``s its queue's channel inside the inserting transaction
  (so a rolled-back insert wakes nobody); an idle runner waits on a dedicated ``LISTEN``
  connection per driver, which is re-established whenever it drops. Polling stays the source
  of truth: a lost notification costs one poll interval.
* **Connections heal**: one connection per thread (peewee's thread-local state); a connection
  whose server side went away (``pg_terminate_backend``, a restart) is noticed before it is
  used and replaced; ``statement_timeout``, TCP keepalives and ``tcp_user_timeout`` keep a
  half-open socket from hanging a runner. Passwords never reach a log line or an error.
* **Finalisation** of a group of attempts is one statement (two with follow-ups), fenced by
  lease token exactly like :meth:`flywheel.driver.Driver._finalize_one`.
* **Maintenance**: the sweep locks its batch with ``SKIP LOCKED``; :meth:`singleton` is a
  session advisory lock on a dedicated connection; ``migrate`` runs under a transaction-level
  advisory lock (nodes starting together do not race) and sets ``jobs``' storage parameters.

``psycopg2`` is imported only when a PostgreSQL database is opened; this module imports
without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import peewee

from flywheel.driver import (
    ClaimedJob,
    ClaimRequest,
    Driver,
    FinalizePlan,
    FinalizeResult,
    Singleton,
    SweepResult,
)
from flywheel.enums import CLAIMABLE_STATES
from flywheel.errors import FlywheelError
from flywheel.models import from_db_time, to_db_time
from flywheel.serde import loads_json
from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel.db import Database

URL_SCHEMES = ("postgresql", "postgres")
INSTALL_HINT = "pip install 'flywheel[postgres]'"

logger = logging.getLogger("flywheel.postgres")

#: Connection settings applied unless the URL sets them (any libpq parameter may be given
#: as a URL query parameter, e.g. ``?connect_timeout=3&sslmode=require``).
CONNECTION_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    # Notice a peer that vanished without closing the socket (a half-open connection):
    # keepalive probes after 10 s idle, every 5 s, 3 misses; unacknowledged writes give up
    # after 30 s (tcp_user_timeout, in ms).
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
    "fallback_application_name": "flywheel",
}
#: Server settings applied through libpq ``options`` unless the URL's ``options`` sets them.
SESSION_DEFAULTS: dict[str, str] = {
    "statement_timeout": "30s",
    "TimeZone": "UTC",
}
#: A LISTEN connection nobody has waited on for this long is closed (it reopens on demand).
LISTEN_LINGER_S = 5.0
#: The longest pause between attempts to re-open a lost LISTEN connection.
LISTEN_MAX_BACKOFF_S = 2.0
#: From this many rows, ``insert_jobs`` streams them with COPY (see :meth:`PostgresDriver.insert_jobs`).
COPY_MIN_ROWS = 200
#: Rows per COPY message.
COPY_PIECE = 10_000
#: Storage parameters for ``jobs`` (go-flywheel §2.6): vacuum the hot queue table early and
#: leave room on each page for the updated row versions a job's life produces.
JOBS_STORAGE_PARAMETERS = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_cost_limit": "1000",
    "fillfactor": "80",
}

T = TypeVar("T")


class PostgresDriverMissing(FlywheelError, ImportError):
    """psycopg2 is not installed."""


def _psycopg2() -> Any:
    """Import psycopg2 on first use, with the install hint when it is missing."""
    try:
        import psycopg2
        import psycopg2.extensions
    except ImportError as exc:
        raise PostgresDriverMissing(
            f"flywheel: PostgreSQL URLs need the psycopg2 driver: {INSTALL_HINT}"
        ) from exc
    return psycopg2


@hookimpl(trylast=True)
def flywheel_driver(url: str) -> Driver | None:
    """Open ``postgresql://`` and ``postgres://`` URLs."""
    scheme = url.partition(":")[0].lower()
    if scheme not in URL_SCHEMES or not url[len(scheme) :].startswith("://"):
        return None
    return PostgresDriver(url)


# -- URLs, secrets and connection parameters -------------------------------------------------


def hide_password(url: str) -> str:
    """``url`` with the password (in the authority or a ``password=`` parameter) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*-=%/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str) -> list[str]:
    """Every spelling of the URL's password that an error message could echo."""
    secrets: set[str] = set()
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            raw = userinfo.split(":", 1)[1]
            secrets.update((raw, unquote(raw)))
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "password":
                secrets.update((value, quote(value, safe="")))
    return sorted((s for s in secrets if s), key=len, reverse=True)


def _merge_options(options: str | None, defaults: dict[str, str]) -> str:
    """libpq ``options`` with ``-c name=value`` added for each default the caller did not set."""
    options = options or ""
    present = {m.group(1).lower() for m in re.finditer(r"(?:-c\s*|--)([A-Za-z_][A-Za-z0-9_.]*)\s*=", options)}
    extra = [f"-c {name}={value}" for name, value in defaults.items() if name.lower() not in present]
    return " ".join(part for part in (options.strip(), *extra) if part)


class _Secrets:
    """Scrubs a URL's password from text (error messages, log lines)."""

    def __init__(self, url: str) -> None:
        self._secrets = _secrets_of(url)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        # libpq never echoes a password today; if a future one quotes a conninfo, hide it too.
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)

    def error(self, exc: BaseException, kind: type[Exception] = peewee.OperationalError) -> Exception:
        """A new exception of ``kind`` carrying ``exc``'s scrubbed message and nothing else of it."""
        message = " ".join(self.scrub(str(exc)).split()) or type(exc).__name__
        new = kind(message)
        pgcode = getattr(exc, "pgcode", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
        if pgcode:
            new.pgcode = pgcode  # type: ignore[attr-defined]
        return new


def connection_params(url: str) -> dict[str, Any]:
    """The psycopg2 keyword arguments for ``url``: libpq's own parse, plus flywheel's defaults."""
    psycopg2 = _psycopg2()
    secrets = _Secrets(url)
    dsn = "postgresql" + url[url.index(":") :] if url.lower().startswith("postgres:") else url
    failure: str | None = None
    try:
        params: dict[str, Any] = dict(psycopg2.extensions.parse_dsn(dsn))
    except psycopg2.Error as exc:  # libpq quotes pieces of a malformed conninfo: scrub them
        failure = secrets.scrub(" ".join(str(exc).split()))
    if failure is not None:
        raise ValueError(f"flywheel: malformed PostgreSQL URL {hide_password(url)}: {failure}")
    for key, value in CONNECTION_DEFAULTS.items():
        params.setdefault(key, value)
    params["options"] = _merge_options(params.get("options"), SESSION_DEFAULTS)
    return params


def _channel_suffix(queue: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", queue)[:16]


def channel_name(schema: str, queue: str) -> str:
    """The NOTIFY channel of ``queue`` in ``schema``: always a safe identifier (<= 38 bytes).

    A readable prefix of the queue name plus a hash of schema and queue, so two schemas in
    one database (or two queues that sanitise alike) do not wake each other's runners.
    Must agree with :data:`_CHANNEL_SQL`.
    """
    digest = hashlib.md5(f"{schema}/{queue}".encode()).hexdigest()[:12]  # noqa: S324 - a name, not security
    return f"flywheel_{_channel_suffix(queue)}_{digest}"


#: :func:`channel_name` in SQL, for a ``queue`` column or expression ``{q}``.
_CHANNEL_SQL = (
    "'flywheel_' || left(regexp_replace({q}, '[^A-Za-z0-9_]', '_', 'g'), 16) || '_' || "
    "left(md5(coalesce(current_schema(), '') || '/' || {q}), 12)"
)


# -- the peewee database -------------------------------------------------------------------


def _peer_hung_up(conn: Any) -> bool:
    """Whether an idle connection's server side has gone (terminated backend, restart).

    An idle client socket has nothing to read unless the server sent something on its own:
    a ``FATAL: terminating connection`` before closing, or EOF. Reading it costs one
    ``poll`` syscall, no round trip, and lets a dead connection be replaced before a
    statement is lost on it.
    """
    if conn.closed:
        return True
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        for _ in range(3):
            if not poller.poll(0):
                break
            conn.poll()  # consumes notices / notifications; raises once the socket is at EOF
            if conn.closed:
                return True
        notices = conn.notices[-2:] if conn.notices else []
        return any(str(n).startswith("FATAL") for n in notices)
    except Exception:  # noqa: BLE001 - any failure here means the connection is unusable
        return True


class PostgresDatabase(peewee.PostgresqlDatabase):
    """peewee's PostgreSQL database with flywheel's connection handling.

    * connects with keyword parameters from libpq's own parse of the URL (query parameters
      such as ``options`` honoured), so the URL string itself is never handed to libpq again;
    * connection errors are re-raised with the password scrubbed and without the original
      exception chained;
    * before a statement outside a transaction, a connection whose server went away is
      dropped and a fresh one opened (inside a transaction the statement fails instead: a
      transaction cannot move to another connection).
    """

    def __init__(self, params: dict[str, Any], secrets: _Secrets, **kwargs: Any) -> None:
        self._flywheel_params = params
        self._secrets = secrets
        super().__init__(params.get("dbname") or params.get("user") or "postgres", **kwargs)

    def _connect(self) -> Any:
        psycopg2 = _psycopg2()
        failure: Exception | None = None
        try:
            conn = psycopg2.connect(**self._flywheel_params)
        except psycopg2.Error as exc:
            failure = self._secrets.error(exc)
        if failure is not None:
            raise failure  # raised outside the handler: the unscrubbed error is not chained
        conn.autocommit = True
        # JSON comes back as text, as on SQLite: the models' JSONField decodes it. (Decoded
        # here, a JSON string value such as "done" would be indistinguishable from JSON text.)
        import psycopg2.extras

        psycopg2.extras.register_default_json(conn, loads=_as_text)
        psycopg2.extras.register_default_jsonb(conn, loads=_as_text)
        return conn

    def cursor(self, named_cursor: Any = None) -> Any:
        state = self._state
        if not state.closed and state.conn is not None and not state.transactions and _peer_hung_up(state.conn):
            self.drop_connection()
        return super().cursor()

    def drop_connection(self) -> None:
        """Forget this thread's connection (closing it if possible); the next use reconnects."""
        with self._lock:
            conn = self._state.conn
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._state.reset()


def _as_text(value: str) -> str:
    return value


# -- the driver -----------------------------------------------------------------------------

_CLAIMABLE = ", ".join(f"'{s.value}'" for s in CLAIMABLE_STATES)


#: The columns a claim returns (what :class:`~flywheel.driver.ClaimedJob` needs, and the sort key).
_CLAIM_RETURNING = ("id", "kind", "queue", "args", "attempt", "max_attempts", "timeout_ms", "parent_job_id",
                    "tags", "scheduled_at", "metadata", "executor_class", "priority")


def _claimed_job(row: dict[str, Any], request: ClaimRequest) -> ClaimedJob:
    return ClaimedJob(
        id=row["id"], kind=row["kind"], queue=row["queue"], args=row["args"], attempt=int(row["attempt"]),
        max_attempts=int(row["max_attempts"]), timeout_ms=row["timeout_ms"], parent_job_id=row["parent_job_id"],
        tags=[] if row["tags"] == "[]" else list(loads_json(row["tags"]) or []),
        scheduled_at=from_db_time(row["scheduled_at"]),  # type: ignore[arg-type]
        metadata={} if row["metadata"] == "{}" else dict(loads_json(row["metadata"]) or {}),
        executor_class=row["executor_class"] or "",
        lease_token=request.lease_token, run_id=row["run_id"], started_at=request.now,
    )


#: The claim, in one round trip. ``{due}`` is :data:`_DUE_ONE_QUEUE` or
#: :data:`_DUE_QUEUES`, completed by :func:`claim_sql`; every value is a bound parameter.
_CLAIM_SQL = """
WITH due AS ({due}
), claimed AS (
    -- Lease them: one token for the whole batch (every later write is fenced by id AND token).
    UPDATE jobs
    SET state = 'running', attempt = jobs.attempt + 1, leased_until = %(lease_until)s::timestamptz,
        lease_token = %(token)s, updated_at = %(now)s::timestamptz
    FROM due WHERE jobs.id = due.id
    RETURNING {returned}
), numbered AS (
    -- UPDATE ... RETURNING comes back in no particular order: number the rows in claim order
    -- and pair the n-th with the n-th run id the kernel minted.
    SELECT claimed.*, run.id AS run_id
    FROM (SELECT *, row_number() OVER (ORDER BY priority, scheduled_at, id) AS n FROM claimed) AS claimed
    JOIN unnest(%(run_ids)s::text[]) WITH ORDINALITY AS run (id, n) ON run.n = claimed.n
), runs AS (
    -- The attempts' 'started' audit rows, in the same statement (and so the same commit).
    INSERT INTO job_runs (id, job_id, attempt, executor_class, executor_id, started_at, outcome,
                          enqueued_children, created_at)
    SELECT run_id, id, attempt, %(executor_class)s, %(executor_id)s, %(now)s::timestamptz, 'started',
           0, %(now)s::timestamptz
    FROM numbered
)
SELECT * FROM numbered ORDER BY n
"""

#: The due rows of one queue, in claim order. The predicate repeats the jobs_ready index's
#: own (state IN claimable AND deleted_at IS NULL), so the planner can use that partial
#: index; its key (queue, priority, scheduled_at, id) yields the rows already in claim order,
#: so LIMIT stops after n entries and an empty poll is one index probe. The executor class
#: is a cheap filter on the rows, deliberately not an index column. SKIP LOCKED steps over
#: rows another claimer holds: claimers never wait on one another, never take the same row.
_DUE_ONE_QUEUE = """
    SELECT id FROM jobs
    WHERE state IN ({claimable}) AND deleted_at IS NULL
      AND queue = %(queue)s AND scheduled_at <= %(now)s::timestamptz{class_filter}
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED"""

#: Several queues: ``queue = ANY(...)`` would scan every ready row of those queues and sort
#: them. Instead, the same ordered, locking index scan runs once per queue (LATERAL) and the
#: best n of the candidates are kept. Candidates beyond the n stay locked only until this
#: statement commits; other claimers skip them meanwhile, which is harmless.
_DUE_QUEUES = """
    SELECT candidate.id FROM unnest(%(queues)s::text[]) AS q (queue)
    CROSS JOIN LATERAL (
        SELECT id, priority, scheduled_at FROM jobs
        WHERE state IN ({claimable}) AND deleted_at IS NULL
          AND queue = q.queue AND scheduled_at <= %(now)s::timestamptz{class_filter}
        ORDER BY priority, scheduled_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS candidate
    ORDER BY candidate.priority, candidate.scheduled_at, candidate.id
    LIMIT %(limit)s"""


def claim_sql(request: ClaimRequest) -> tuple[str, dict[str, Any]]:
    """The claim statement and its parameters for ``request`` (also used by the EXPLAIN test)."""
    queues = list(dict.fromkeys(request.queues))
    class_filter = "" if request.claim_any_class else "\n          AND executor_class IN (%(executor_class)s, '')"
    due = (_DUE_ONE_QUEUE if len(queues) == 1 else _DUE_QUEUES).format(
        claimable=_CLAIMABLE, class_filter=class_filter)
    sql = _CLAIM_SQL.format(due=due, returned=", ".join(f"jobs.{c}" for c in _CLAIM_RETURNING))
    params = {
        "queue": queues[0] if queues else None,
        "queues": queues,
        "now": to_db_time(request.now),
        # never lease more rows than there are run ids for (a row without one would be orphaned)
        "limit": min(request.limit, len(request.run_ids)),
        "lease_until": to_db_time(request.lease_until),
        "token": request.lease_token,
        "run_ids": list(request.run_ids[: request.limit]),
        "executor_class": request.executor_class,
        "executor_id": request.executor_id,
    }
    return sql, params


_RENEW_SQL = """
UPDATE jobs SET leased_until = %(until)s::timestamptz, updated_at = %(now)s::timestamptz
FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS lease (id, token)
WHERE jobs.id = lease.id AND jobs.state = 'running' AND jobs.lease_token = lease.token
RETURNING jobs.id
"""

#: Fenced finalisation of a group of attempts. ``plan`` unnests the arrays of
#: :func:`_plan_arrays`; the ``jobs`` update only touches rows still running under the
#: attempt's own lease token, and returns the ids it changed (the others were superseded:
#: cancelled, retried or swept while the attempt ran). Superseded attempts still write their
#: own run row. Matches :meth:`flywheel.driver.Driver._finalize_one` column for column.
_PLAN_CTE = """
plan AS (
    SELECT * FROM unnest(
        %(job_id)s::text[], %(run_id)s::text[], %(lease_token)s::text[], %(state)s::text[],
        %(scheduled_at)s::timestamptz[], %(finalized_at)s::timestamptz[], %(bump)s::boolean[],
        %(outcome)s::text[], %(finished_at)s::timestamptz[], %(duration_ms)s::bigint[],
        %(error_class)s::text[], %(error_message)s::text[], %(output)s::text[], %(cost_micros)s::bigint[],
        %(children)s::bigint[], %(current)s::boolean[]
    ) AS p (job_id, run_id, lease_token, state, scheduled_at, finalized_at, bump, outcome, finished_at,
            duration_ms, error_class, error_message, output, cost_micros, children, current)
)"""
_FENCE_SQL = """
    UPDATE jobs
    SET state = plan.state, updated_at = plan.finished_at, leased_until = NULL, lease_token = NULL,
        scheduled_at = coalesce(plan.scheduled_at, jobs.scheduled_at),
        finalized_at = coalesce(plan.finalized_at, jobs.finalized_at),
        max_attempts = jobs.max_attempts + CASE WHEN plan.bump THEN 1 ELSE 0 END
    FROM plan
    WHERE jobs.id = plan.job_id AND jobs.state = 'running' AND jobs.lease_token = plan.lease_token
    RETURNING jobs.id"""
_RUNS_SQL = """
    UPDATE job_runs
    SET outcome = plan.outcome, finished_at = plan.finished_at, duration_ms = plan.duration_ms,
        cost_micros = plan.cost_micros, enqueued_children = plan.children,
        error_class = plan.error_class, error_message = plan.error_message,
        error_payload = CASE WHEN plan.error_message IS NULL THEN NULL
                             ELSE jsonb_build_object('message', plan.error_message) END,
        output = plan.output::jsonb
    FROM plan
    -- a superseded attempt keeps a verdict already recorded (the sweep's or a release's 'crashed')
    WHERE job_runs.id = plan.run_id AND (job_runs.outcome = 'started' OR {current})"""
#: No follow-ups: fence the jobs and write the runs in one statement (one round trip, and
#: autocommit makes it one commit).
_FINALIZE_SQL = (f"WITH {_PLAN_CTE.strip()},\nfenced AS ({_FENCE_SQL}\n),\n"
                 f"runs AS ({_RUNS_SQL.format(current='plan.job_id IN (SELECT id FROM fenced)')}\n)\n"
                 "SELECT id FROM fenced")
#: With follow-ups: fence first, insert the follow-ups of the attempts that were current, then
#: write the runs with their children counts (``plan.current`` says which were not superseded).
_FENCE_ONLY_SQL = f"WITH {_PLAN_CTE.strip()}\n{_FENCE_SQL.strip()}"
_RUNS_ONLY_SQL = f"WITH {_PLAN_CTE.strip()}\n{_RUNS_SQL.format(current='plan.current').strip()}"

_SWEEP_SQL = """
SELECT id, attempt, max_attempts FROM jobs
WHERE state = 'running' AND leased_until < %(now)s::timestamptz AND deleted_at IS NULL
ORDER BY leased_until
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

#: Connection-level SQLSTATE classes: the statement never reached (or never finished on) a
#: live server, and a retry on a new connection may succeed.
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014", "53300")
_LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03")
_LOST_MARKERS = (
    "server closed the connection", "connection already closed", "terminating connection",
    "could not connect", "connection refused", "no connection to the server", "could not receive data",
    "could not send data", "ssl syscall error", "connection timed out", "no message from the libpq",
    "the database system is", "connection not open", "cursor already closed", "eof detected",
)


def _sqlstate(exc: BaseException) -> str:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        code = getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return ""


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection to the server is gone (not a problem with the SQL)."""
    code = _sqlstate(exc)
    if code and code.startswith(_LOST_SQLSTATES):
        return True
    if isinstance(exc, peewee.InterfaceError):
        return True
    psycopg2 = _loaded_psycopg2()
    if psycopg2 is not None and isinstance(exc, psycopg2.InterfaceError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _LOST_MARKERS)


def _loaded_psycopg2() -> Any:
    import sys

    return sys.modules.get("psycopg2")


class PostgresDriver(Driver):
    """The PostgreSQL driver; see the module docstring."""

    name = "postgres"
    chunk_size = 1000

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._secrets = _Secrets(url)
        self._params: dict[str, Any] | None = None
        self._listener_lock = threading.Lock()
        self._listener: _Listener | None = None
        self._wake = threading.Condition()
        self._seq: dict[str, int] = {}  # queue -> notifications seen (bumped by the listener)
        self._interrupts = 0
        self._seen = threading.local()

    # -- connection ----------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            self._params = connection_params(self.url)
        return self._params

    def open(self) -> peewee.Database:
        return PostgresDatabase(
            self.params, self._secrets,
            field_types={"JSON": "JSONB", "TIMESTAMPTZ": "TIMESTAMPTZ"},
        )

    def display_url(self) -> str:
        return hide_password(self.url)

    def scrub(self, text: str) -> str:
        """``text`` with this driver's password hidden."""
        return self._secrets.scrub(text)

    def is_transient(self, exc: BaseException) -> bool:
        if super().is_transient(exc) or lost_connection(exc):
            return True
        psycopg2 = _loaded_psycopg2()
        if psycopg2 is not None and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return True
        code = _sqlstate(exc)
        return bool(code) and code.startswith(_TRANSIENT_SQLSTATES)

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
            db.pw.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_lock_key("", "flywheel:migrate"),))
            super().migrate(db)
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
            rows = [{name: row[name] if name in row else _default(fields[name]) for name in names} for row in rows]
        pairs = [(name, _CONVERTERS.get(fields[name].field_type)) for name in names]
        flat: list[Any] = []
        for row in rows:
            flat.extend([row[name] if convert is None else convert(row[name]) for name, convert in pairs])
        template = "(" + ",".join(["%s"] * len(names)) + ")"
        values = db.pw.cursor().mogrify(",".join([template] * len(rows)), flat)
        return [fields[name].column_name for name in names], values

    def insert_jobs(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert ``rows`` skipping unique collisions; return the ids that landed.

        Up to :data:`COPY_MIN_ROWS` rows: one multi-row ``INSERT … ON CONFLICT DO NOTHING
        RETURNING id`` per chunk of :attr:`chunk_size`. Bulk: the rows are streamed with
        ``COPY`` into a session-private staging table, then moved by one ``INSERT … SELECT …
        ON CONFLICT DO NOTHING RETURNING id`` (same semantics; PostgreSQL parses COPY data
        several times faster than a VALUES list, and Python formats it faster too).
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
            landed.update(row[0] for row in _execute(db, sql).fetchall())
        return landed

    def _copy_insert(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        fields = db.Job._meta.fields
        names = [name for name in fields if name in rows[0]]
        if any(len(row) != len(names) for row in rows):
            names = [name for name in fields if any(name in row for row in rows)]
            rows = [{name: row[name] if name in row else _default(fields[name]) for name in names} for row in rows]
        # The staging table lives as long as the session; ON COMMIT DELETE ROWS and the
        # TRUNCATE keep it empty between uses (insert_jobs may run twice in one transaction).
        _execute(db, "CREATE TEMP TABLE IF NOT EXISTS flywheel_stage (LIKE jobs) ON COMMIT DELETE ROWS; "
                     "TRUNCATE flywheel_stage")
        cursor = db.pw.cursor()
        copied: list[str] = []
        for start in range(0, len(rows), COPY_PIECE):
            piece = rows[start : start + COPY_PIECE]
            columns, text = _copy_text(piece, [(fields[name].column_name, name, fields[name].field_type,
                                                fields[name].null) for name in names])
            if copied and columns != copied:  # a different set of all-NULL columns: move this piece first
                landed = self._move_stage(db, copied)
                _execute(db, "TRUNCATE flywheel_stage")
                return landed | self._copy_insert(db, rows[start:])
            copied = columns
            with _WRAP:
                cursor.copy_expert(f"COPY flywheel_stage ({', '.join(columns)}) FROM STDIN", io.StringIO(text))
        return self._move_stage(db, copied)

    def _move_stage(self, db: Database, columns: list[str]) -> set[str]:
        names = ", ".join(columns)
        sql = f"INSERT INTO jobs ({names}) SELECT {names} FROM flywheel_stage ON CONFLICT DO NOTHING RETURNING id"
        return {row[0] for row in _execute(db, sql).fetchall()}

    def enqueue(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        if not rows:
            return set()
        if len(rows) == 1 and not db.pw.in_transaction():
            # One job, no caller transaction: insert and NOTIFY in one autocommit statement,
            # one round trip. The notification is sent only if the row landed.
            columns, values = self._values_sql(db, rows)
            sql = (
                f"WITH ins AS (INSERT INTO jobs ({', '.join(columns)}) VALUES ".encode() + values
                + b" ON CONFLICT DO NOTHING RETURNING id, queue)\n"
                + f"SELECT id, pg_notify({_CHANNEL_SQL.format(q='queue')}, '') FROM ins".encode()
            )
            return {row[0] for row in _execute(db, sql).fetchall()}
        with db.atomic():
            landed = self.insert_jobs(db, rows)
            if landed:
                self.notify(db, {row["queue"] for row in rows if row["id"] in landed})
        return landed

    def notify(self, db: Database, queues: set[str]) -> None:
        """``NOTIFY`` each queue's channel; inside a transaction PostgreSQL sends it at commit."""
        if queues:
            db.pw.execute_sql(
                f"SELECT pg_notify({_CHANNEL_SQL.format(q='queue')}, '') FROM unnest(%s::text[]) AS q (queue)",
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

    def _listen(self, queues: Sequence[str]) -> _Listener:
        with self._listener_lock:
            listener = self._listener
            if listener is None or not listener.is_alive() or listener.pid != os.getpid() or listener.retiring:
                listener = self._listener = _Listener(self)
                listener.want(queues)
                listener.start()
            else:
                listener.want(queues)
            listener.last_wait = time.monotonic()  # keeps it from retiring before the wait starts
            return listener

    def _bump(self, queues: Sequence[str]) -> None:
        with self._wake:
            for queue in queues:
                self._seq[queue] = self._seq.get(queue, 0) + 1
            self._wake.notify_all()

    def _listener_retired(self, listener: _Listener) -> None:
        with self._listener_lock:
            if self._listener is listener:
                self._listener = None

    def close(self) -> None:
        """Stop the LISTEN connection, if any (it would also close itself once idle)."""
        with self._listener_lock:
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
        sql, params = claim_sql(request)
        rows = self._retry_lost(db, lambda: _execute(db, sql, params, dicts=True))
        return [_claimed_job(row, request) for row in rows]

    # -- leases ----------------------------------------------------------------------------

    def renew_leases(
        self, db: Database, leases: Sequence[tuple[str, str]], until: datetime, now: datetime
    ) -> set[str]:
        if not leases:
            return set()
        params = {"until": to_db_time(until), "now": to_db_time(now),
                  "ids": [job_id for job_id, _ in leases], "tokens": [token for _, token in leases]}
        rows = self._retry_lost(db, lambda: _execute(db, _RENEW_SQL, params).fetchall())
        return {row[0] for row in rows}

    # -- finalisation ------------------------------------------------------------------------

    def finalize(self, db: Database, plans: Sequence[FinalizePlan]) -> list[FinalizeResult]:
        """Finalise a group of attempts in one statement (follow-ups: one transaction).

        Same semantics as the base :meth:`_finalize_one`: the job changes only while it is
        still running under the attempt's lease token; a superseded attempt still writes
        its own run row; follow-ups are inserted only when not superseded.
        """
        if not plans:
            return []
        if not any(plan.follow_ups for plan in plans) and not db.pw.in_transaction():
            changed = {row[0] for row in _execute(db, _FINALIZE_SQL, _plan_arrays(plans, {})).fetchall()}
            return [FinalizeResult(job_id=p.job_id, superseded=p.job_id not in changed, enqueued_children=0)
                    for p in plans]
        with db.atomic():
            changed = {row[0] for row in _execute(db, _FENCE_ONLY_SQL, _plan_arrays(plans, {})).fetchall()}
            children: dict[str, int] = {}
            queues: set[str] = set()
            for plan in plans:
                if plan.follow_ups and plan.job_id in changed:
                    children[plan.run_id] = len(self.insert_jobs(db, plan.follow_ups))
                    queues.update(row["queue"] for row in plan.follow_ups)
            self.notify(db, queues)
            _execute(db, _RUNS_ONLY_SQL, _plan_arrays(plans, children, changed))
        return [FinalizeResult(job_id=p.job_id, superseded=p.job_id not in changed,
                               enqueued_children=children.get(p.run_id, 0)) for p in plans]

    # -- maintenance -------------------------------------------------------------------------

    def _sweep_batch(self, db: Database, now: datetime, batch_size: int) -> SweepResult:
        with db.atomic():
            # SKIP LOCKED: a row another transaction holds (a finaliser committing, another
            # node's sweep) is left to it; the base _recover re-checks the lease in its UPDATEs.
            expired = [tuple(row) for row in _execute(
                db, _SWEEP_SQL, {"now": to_db_time(now), "limit": batch_size}).fetchall()]
            return self._recover(db, now, expired)  # type: ignore[arg-type]

    def singleton(self, db: Database, name: str) -> Singleton:
        """A session advisory lock named ``name`` (scoped to the database's schema)."""
        return AdvisoryLock(self, name)


# -- helpers -----------------------------------------------------------------------------------

_WRAP = getattr(peewee, "__exception_wrapper__")


def _execute(db: Database, sql: str | bytes, params: Any = None, *, dicts: bool = False) -> Any:
    """Run ``sql`` on this thread's connection; driver errors come out as peewee's exceptions."""
    cursor = db.pw.cursor()
    with _WRAP:
        cursor.execute(sql, params)
        if dicts:
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return cursor


def _default(field: peewee.Field) -> Any:
    default = field.default
    return default() if callable(default) else default


def _timestamp_text(value: Any) -> Any:
    """An instant as ISO text (naive means UTC); PostgreSQL casts it to timestamptz."""
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo is not None else value.isoformat() + "+00:00"
    return value


def _json_text(value: Any) -> Any:
    """JSON text for a ``jsonb`` column (a ``str`` is already JSON, as in the models' JSONField)."""
    return value if value is None or isinstance(value, str) else json.dumps(value, separators=(",", ":"))


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: Sequence[dict[str, Any]], columns: list[tuple[str, str, str, bool]]) -> tuple[list[str], str]:
    """``rows`` in COPY's text format, built column by column (no call per value).

    A nullable column that is NULL in every row is left out (it defaults to NULL). Text is
    escaped only in the columns where a backslash, tab or line break occurs at all.
    """
    names: list[str] = []
    cells: list[list[str]] = []
    for column, name, field_type, nullable in columns:
        values: list[Any] = [row[name] for row in rows]
        if nullable and values.count(None) == len(values):
            continue
        if field_type == "TIMESTAMPTZ":
            values = [v if v is None or type(v) is str  # noqa: E721 - exact type on the hot path
                      else v.isoformat() if v.tzinfo is not None else v.isoformat() + "+00:00" for v in values]
        elif field_type == "JSON":
            values = [v if v is None or type(v) is str  # noqa: E721
                      else json.dumps(v, separators=(",", ":")) for v in values]
        else:
            values = [v if v is None or type(v) is str else str(v) for v in values]  # noqa: E721
        present = [v for v in values if v is not None] if None in values else values
        joined = "".join(present)
        if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
            values = [None if v is None else v.translate(_TSV_ESCAPES) for v in values]
        if present is not values or None in values:
            values = ["\\N" if v is None else v for v in values]
        names.append(column)
        cells.append(values)
    return names, "".join([line + "\n" for line in map("\t".join, zip(*cells, strict=True))])


#: Value conversion by peewee ``field_type`` (the others go to psycopg2 as they are).
_CONVERTERS: dict[str, Callable[[Any], Any]] = {"TIMESTAMPTZ": _timestamp_text, "JSON": _json_text}


def _plan_arrays(
    plans: Sequence[FinalizePlan], children: dict[str, int], current: set[str] | None = None
) -> dict[str, list[Any]]:
    def ts(value: datetime | None) -> str | None:
        return None if value is None else to_db_time(value)

    return {
        "job_id": [p.job_id for p in plans],
        "run_id": [p.run_id for p in plans],
        "lease_token": [p.lease_token for p in plans],
        "state": [p.state.value for p in plans],
        "scheduled_at": [ts(p.scheduled_at) for p in plans],
        "finalized_at": [ts(p.finalized_at) for p in plans],
        "bump": [bool(p.bump_max_attempts) for p in plans],
        "outcome": [p.outcome.value for p in plans],
        "finished_at": [ts(p.finished_at) for p in plans],
        "duration_ms": [p.duration_ms for p in plans],
        "error_class": [p.error_class for p in plans],
        "error_message": [p.error_message for p in plans],
        "output": [p.output_json for p in plans],
        "cost_micros": [p.cost_micros for p in plans],
        "children": [children.get(p.run_id, 0) for p in plans],
        "current": [current is not None and p.job_id in current for p in plans],
    }


def _lock_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` within ``schema``."""
    digest = hashlib.sha256(f"flywheel/{schema}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _connect_raw(driver: PostgresDriver, **overrides: Any) -> Any:
    """A dedicated autocommit psycopg2 connection (errors scrubbed, nothing chained)."""
    psycopg2 = _psycopg2()
    failure: Exception | None = None
    try:
        conn = psycopg2.connect(**{**driver.params, **overrides})
    except psycopg2.Error as exc:
        failure = driver._secrets.error(exc)
    if failure is not None:
        raise failure
    conn.autocommit = True
    return conn


class _Listener(threading.Thread):
    """The driver's LISTEN connection, on its own thread.

    It listens on the channel of every queue a runner has waited on, bumps the driver's
    per-queue counters when a notification arrives, and re-opens the connection whenever
    it drops (logging once per outage). It closes itself once nobody has waited for a while.
    """

    def __init__(self, driver: PostgresDriver) -> None:
        super().__init__(name="flywheel-pg-listener", daemon=True)
        self.driver = driver
        self.pid = os.getpid()
        self.waiters = 0
        self.last_wait = time.monotonic()
        self.retiring = False
        self._queues: set[str] = set()
        self._listening: dict[str, set[str]] = {}  # channel -> queues
        self._pending = True
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._conn: Any = None
        self._schema = ""
        self._outage_logged = False

    def want(self, queues: Sequence[str]) -> None:
        with self._lock:
            new = set(queues) - self._queues
            if not new:
                return
            self._queues |= new
            self._pending = True
        self._poke()

    def stop(self) -> None:
        self._stopping.set()
        self._poke()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def run(self) -> None:
        backoff = 0.0
        try:
            while not self._stopping.is_set():
                if self._idle():
                    break
                if self._conn is None:
                    if not self._open():
                        backoff = min(max(backoff * 2, 0.05), LISTEN_MAX_BACKOFF_S)
                        self._sleep(backoff)
                        continue
                    backoff = 0.0
                try:
                    self._sync_channels()
                    self._receive(timeout=1.0)
                except Exception as exc:  # noqa: BLE001 - the connection dropped: reopen it
                    self._lost(exc)
        finally:
            self._close()
            self.retiring = True
            self.driver._listener_retired(self)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _idle(self) -> bool:
        if self.waiters == 0 and time.monotonic() - self.last_wait > LISTEN_LINGER_S:
            with self.driver._listener_lock:
                if self.waiters == 0 and time.monotonic() - self.last_wait > LISTEN_LINGER_S:
                    self.retiring = True
                    return True
        return False

    def _open(self) -> bool:
        try:
            conn = _connect_raw(self.driver)
            with conn.cursor() as cursor:
                cursor.execute("SELECT coalesce(current_schema(), '')")
                self._schema = cursor.fetchone()[0]
        except Exception as exc:  # noqa: BLE001
            self._lost(exc)
            return False
        self._conn = conn
        with self._lock:
            self._listening = {}
            self._pending = True
        return True

    def _sync_channels(self) -> None:
        with self._lock:
            if not self._pending:
                return
            self._pending = False
            queues = set(self._queues)
        fresh = []
        with self._conn.cursor() as cursor:
            for queue in sorted(queues):
                channel = channel_name(self._schema, queue)
                if queue not in self._listening.get(channel, set()):
                    if channel not in self._listening:
                        cursor.execute(f'LISTEN "{channel}"')
                    self._listening.setdefault(channel, set()).add(queue)
                    fresh.append(queue)
        if fresh:
            # Work inserted before LISTEN took effect (or while the connection was down) sent
            # its notification to nobody: wake the waiters so they claim once.
            self.driver._bump(fresh)
            if self._outage_logged:
                logger.warning("flywheel: LISTEN connection to %s re-established", self.driver.display_url())
                self._outage_logged = False

    def _receive(self, timeout: float) -> None:
        poller = select.poll()  # not select(): a process may have more than 1024 descriptors
        conn_fd = self._conn.fileno()
        poller.register(conn_fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        poller.register(self._wake_r, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(timeout * 1000)}
        if self._wake_r in ready:
            self._drain_pokes()
        if conn_fd in ready:
            self._conn.poll()
            if self._conn.closed:
                raise _psycopg2().OperationalError("the LISTEN connection was closed by the server")
            if self._conn.notifies:
                queues: set[str] = set()
                for note in self._conn.notifies:
                    queues |= self._listening.get(note.channel, set())
                self._conn.notifies.clear()
                if queues:
                    self.driver._bump(sorted(queues))
            if any(str(n).startswith("FATAL") for n in self._conn.notices[-2:]):
                raise _psycopg2().OperationalError(self._conn.notices[-1].strip())

    def _lost(self, exc: BaseException) -> None:
        if not self._outage_logged:
            what = "lost" if self._conn is not None else "cannot be opened"
            logger.warning(
                "flywheel: LISTEN connection to %s %s; reconnecting (runners keep polling meanwhile): %s",
                self.driver.display_url(), what,
                self.driver.scrub(" ".join(str(exc).split()) or type(exc).__name__))
            self._outage_logged = True
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _sleep(self, seconds: float) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.poll(seconds * 1000)
        self._drain_pokes()

    def _drain_pokes(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass


class AdvisoryLock(Singleton):
    """A PostgreSQL session advisory lock held on its own connection.

    ``acquire()`` never blocks: it checks that the holding connection is still alive (a lock
    dies with its session) and takes the lock again, on a new connection, if it was lost.
    ``release()`` unlocks and closes the connection.
    """

    def __init__(self, driver: PostgresDriver, name: str) -> None:
        self.driver = driver
        self.name = name
        self._conn: Any = None
        self._key: int | None = None
        self._held = False
        self._lock = threading.Lock()
        self._failing = False

    def acquire(self) -> bool:
        with self._lock:
            try:
                if self._held and self._alive():
                    return True
                self._held = False
                if self._conn is None or self._conn.closed or not self._alive():
                    self._drop()
                    self._conn = _connect_raw(self.driver, fallback_application_name="flywheel-lock")
                    with self._conn.cursor() as cursor:
                        cursor.execute("SELECT coalesce(current_schema(), '')")
                        self._key = _lock_key(cursor.fetchone()[0], self.name)
                with self._conn.cursor() as cursor:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
                    self._held = bool(cursor.fetchone()[0])
                if self._failing:
                    logger.warning("flywheel: lock %r: database reachable again", self.name)
                    self._failing = False
                return self._held
            except Exception as exc:  # noqa: BLE001 - unreachable database: not held, try next round
                if not self._failing:
                    logger.warning("flywheel: lock %r: cannot reach %s: %s", self.name, self.driver.display_url(),
                                   self.driver.scrub(" ".join(str(exc).split())))
                    self._failing = True
                self._drop()
                return False

    def _alive(self) -> bool:
        if self._conn is None or self._conn.closed or _peer_hung_up(self._conn):
            return False
        try:
            with self._conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001
            return False

    def release(self) -> None:
        with self._lock:
            if self._conn is not None and self._held and not self._conn.closed:
                with contextlib.suppress(Exception), self._conn.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            self._held = False
            self._drop()

    @property
    def held(self) -> bool:
        return self._held

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._held = False


__all__ = [
    "INSTALL_HINT", "URL_SCHEMES", "AdvisoryLock", "PostgresDatabase", "PostgresDriver", "PostgresDriverMissing",
    "channel_name", "claim_sql", "connection_params", "flywheel_driver", "hide_password", "lost_connection",
]
