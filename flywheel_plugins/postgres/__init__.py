"""PostgreSQL driver: ``postgresql://user:pass@host:port/db?libpq-params`` (also ``postgres://``).

How this driver implements :class:`flywheel.storage.driver.Driver` (the methods peewee's query
builder writes portably come from :class:`flywheel.storage.portable.PeeweeDriver`):

* **The claim** is one statement: ``SELECT … FOR UPDATE SKIP LOCKED`` over the ``jobs_ready``
  partial index, the ``UPDATE`` that leases the rows and the ``INSERT`` of their ``started``
  run rows, in one round trip (see :data:`.statements.CLAIM_SQL`).
* **Enqueue** is a multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING id``; a single job
  inserted outside a transaction is one round trip that also ``NOTIFY``s its queue.
* **Wake-ups**: every insert ``NOTIFY``s its queue's channel inside the inserting transaction
  (so a rolled-back insert wakes nobody); an idle runner waits on a dedicated ``LISTEN``
  connection per driver, which is re-established whenever it drops. Polling stays the source
  of truth: a lost notification costs one poll interval.
* **Connections heal**: one connection per thread (peewee's thread-local state); a connection
  whose server side went away (``pg_terminate_backend``, a restart) is noticed before it is
  used and replaced; ``statement_timeout``, TCP keepalives and ``tcp_user_timeout`` keep a
  half-open socket from hanging a runner. Passwords never reach a log line or an error, even
  from a malformed URL (:mod:`flywheel.redact`).
* **Finalisation** of a group of attempts is one statement (two with follow-ups), fenced by
  lease token, with the semantics of :meth:`flywheel.storage.driver.Driver.finalize`.
* **One clock**: leases, due times and the sweep go by the database's ``now()`` (nodes' clocks
  disagree; one running ahead must not reclaim the others' live jobs), unless a test has
  injected a non-system clock (see :func:`.driver.uses_db_clock`).
* **Maintenance**: the sweep locks its batch with ``SKIP LOCKED``; :meth:`singleton` is a
  session advisory lock on a dedicated connection; ``migrate`` runs under a transaction-level
  advisory lock (nodes starting together do not race) and sets ``jobs``' storage parameters.

``psycopg2`` is imported only when a PostgreSQL database is opened; this module imports
without it.

The package, by concept: :mod:`.connection` (URLs, secrets, the peewee database, lost
connections), :mod:`.statements` (the SQL), :mod:`.bulk` (COPY and ``VALUES`` text),
:mod:`.listener` (NOTIFY channels and the LISTEN thread), :mod:`.locks` (advisory locks)
and :mod:`.driver` (the :class:`PostgresDriver` that uses them all).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel.storage.driver import Driver

# The public names below are the ones this module had before it became a package, imported
# on first use so that loading the plugin costs nothing (every `flywheel` command loads it).
# A name is looked up in the submodule that uses it: monkeypatch it there (e.g.
# flywheel_plugins.postgres.driver.execute), not here.
_EXPORTS = {
    "bulk": ("COPY_MIN_ROWS", "COPY_PIECE"),
    "connection": ("CONNECTION_DEFAULTS", "INSTALL_HINT", "SESSION_DEFAULTS", "PostgresDatabase",
                   "PostgresDriverMissing", "connection_params", "hide_password", "lost_connection"),
    "driver": ("JOBS_STORAGE_PARAMETERS", "PostgresDriver"),
    "listener": ("LISTEN_LINGER_S", "LISTEN_MAX_BACKOFF_S", "channel_name"),
    "locks": ("AdvisoryLock",),
    "statements": ("claim_sql",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


URL_SCHEMES = ("postgresql", "postgres")


@hookimpl(trylast=True)
def flywheel_driver(url: str) -> Driver | None:
    """Open ``postgresql://`` and ``postgres://`` URLs."""
    scheme = url.partition(":")[0].lower()
    if scheme not in URL_SCHEMES or not url[len(scheme) :].startswith("://"):
        return None
    from flywheel_plugins.postgres.driver import PostgresDriver

    return PostgresDriver(url)


__all__ = [
    "INSTALL_HINT", "URL_SCHEMES", "AdvisoryLock", "PostgresDatabase", "PostgresDriver", "PostgresDriverMissing",
    "channel_name", "claim_sql", "connection_params", "flywheel_driver", "hide_password", "lost_connection",
]
