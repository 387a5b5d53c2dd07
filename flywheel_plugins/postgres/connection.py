"""PostgreSQL connections: URLs and their secrets, libpq parameters, the peewee database,
and telling a lost connection from a bad statement."""

from __future__ import annotations

import contextlib
import re
import select
from typing import TYPE_CHECKING, Any

import peewee

from flywheel.errors import FlywheelError
from flywheel.redact import UrlSecrets, redact_url

if TYPE_CHECKING:
    import threading

    from flywheel.storage.db import Database
    from flywheel_plugins.postgres.driver import PostgresDriver

INSTALL_HINT = "pip install 'flywheel-jobs[postgres]'"

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


class PostgresDriverMissing(FlywheelError, ImportError):
    """psycopg2 is not installed."""


def import_psycopg2() -> Any:
    """Import psycopg2 on first use, with the install hint when it is missing."""
    try:
        import psycopg2
        import psycopg2.extensions
    except ImportError as exc:
        raise PostgresDriverMissing(
            f"flywheel: PostgreSQL URLs need the psycopg2 driver: {INSTALL_HINT}"
        ) from exc
    return psycopg2


# -- URLs, secrets and connection parameters -------------------------------------------------


#: ``url`` with any password shown as ``***`` (kept under its old name; see :mod:`flywheel.redact`).
hide_password = redact_url


def _unencoded_at(url: str) -> bool:
    """Whether the authority libpq reads (up to the first ``/``) holds more than one ``@``.

    libpq ends the user info at the first ``@``, so an unencoded ``@`` in a password makes the
    rest of the password part of the host name: a connection that can never work, and a
    host-name error that would quote the password's tail.
    """
    rest = url.partition("//")[2]
    return rest.split("/", 1)[0].split("?", 1)[0].count("@") > 1


def _merge_options(options: str | None, defaults: dict[str, str]) -> str:
    """libpq ``options`` with ``-c name=value`` added for each default the caller did not set."""
    options = options or ""
    present = {m.group(1).lower() for m in re.finditer(r"(?:-c\s*|--)([A-Za-z_][A-Za-z0-9_.]*)\s*=", options)}
    extra = [f"-c {name}={value}" for name, value in defaults.items() if name.lower() not in present]
    return " ".join(part for part in (options.strip(), *extra) if part)


class Secrets(UrlSecrets):
    """Scrubs a URL's password from text (:class:`flywheel.redact.UrlSecrets`) and from exceptions."""

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
    psycopg2 = import_psycopg2()
    secrets = Secrets(url)
    dsn = "postgresql" + url[url.index(":") :] if url.lower().startswith("postgres:") else url
    if _unencoded_at(url):
        raise ValueError(f"flywheel: malformed PostgreSQL URL {secrets.display}: the user name or password "
                         "holds an unencoded '@' (percent-encode it as %40)")
    failure: str | None = None
    try:
        params: dict[str, Any] = dict(psycopg2.extensions.parse_dsn(dsn))
    except psycopg2.Error as exc:  # libpq quotes the malformed URL, or pieces of it: scrub them
        failure = secrets.scrub(" ".join(str(exc).replace(dsn, url).split()))
    if failure is not None:
        raise ValueError(f"flywheel: malformed PostgreSQL URL {secrets.display}: {failure}")
    for key, value in CONNECTION_DEFAULTS.items():
        params.setdefault(key, value)
    params["options"] = _merge_options(params.get("options"), SESSION_DEFAULTS)
    return params


# -- the peewee database -------------------------------------------------------------------


def peer_hung_up(conn: Any) -> bool:
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
    except Exception:  # any failure here means the connection is unusable
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

    # peewee.Database sets these in __init__ (per-thread state, and the lock around it); its stubs leave them out
    _state: peewee._ConnectionState
    _lock: threading.Lock | peewee._NoopLock

    def __init__(self, params: dict[str, Any], secrets: Secrets, **kwargs: Any) -> None:
        self._flywheel_params = params
        self._secrets = secrets
        super().__init__(params.get("dbname") or params.get("user") or "postgres", **kwargs)

    def _connect(self) -> Any:
        psycopg2 = import_psycopg2()
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
        if not state.closed and state.conn is not None and not state.transactions and peer_hung_up(state.conn):
            self.drop_connection()
        return super().cursor()  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs

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


# -- lost connections ------------------------------------------------------------------------

#: Connection-level SQLSTATE classes: the statement never reached (or never finished on) a
#: live server, and a retry on a new connection may succeed.
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014", "53300")
_LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03")
_LOST_MARKERS = (
    "server closed the connection", "connection already closed", "terminating connection",
    "could not connect", "connection refused", "no connection to the server", "could not receive data",
    "could not send data", "ssl syscall error", "connection timed out", "no message from the libpq",
    "the database system is", "connection not open", "cursor already closed", "eof detected",
)


def sqlstate(exc: BaseException) -> str:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        code = getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return ""


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection to the server is gone (not a problem with the SQL)."""
    code = sqlstate(exc)
    if code and code.startswith(_LOST_SQLSTATES):
        return True
    if isinstance(exc, peewee.InterfaceError):
        return True
    psycopg2 = loaded_psycopg2()
    if psycopg2 is not None and isinstance(exc, psycopg2.InterfaceError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _LOST_MARKERS)


def loaded_psycopg2() -> Any:
    import sys

    return sys.modules.get("psycopg2")


# -- raw statements and connections -----------------------------------------------------------

EXCEPTION_WRAPPER = peewee.__exception_wrapper__  # type: ignore[attr-defined]  # not in peewee's stubs


def execute(db: Database, sql: str | bytes, params: Any = None, *, dicts: bool = False) -> Any:
    """Run ``sql`` on this thread's connection; driver errors come out as peewee's exceptions."""
    cursor = db.pw.cursor()
    with EXCEPTION_WRAPPER:
        cursor.execute(sql, params)
        if dicts:
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return cursor


def connect_raw(driver: PostgresDriver, **overrides: Any) -> Any:
    """A dedicated autocommit psycopg2 connection (errors scrubbed, nothing chained)."""
    psycopg2 = import_psycopg2()
    failure: Exception | None = None
    try:
        conn = psycopg2.connect(**{**driver.params, **overrides})
    except psycopg2.Error as exc:
        failure = driver.secrets.error(exc)
    if failure is not None:
        raise failure
    conn.autocommit = True
    return conn
