"""``connect(url)``: a Database is a peewee database, its bound models and its driver."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import peewee

from flywheel.errors import translate_db_errors
from flywheel.plugins import find_driver, resolve
from flywheel.storage import DEFAULT_URL
from flywheel.storage.models import MODELS, bind_models

if TYPE_CHECKING:
    import pluggy

    from flywheel.storage.driver import Driver



class Database:
    """An open flywheel database.

    ``db.atomic()`` opens a transaction (a savepoint when nested); jobs inserted inside it
    commit or roll back with the caller's own writes (the outbox pattern). ``db.pw`` is
    the underlying peewee database for the caller's own models and queries.
    """

    def __init__(self, driver: Driver, pm: pluggy.PluginManager) -> None:
        self.driver = driver
        self.pm = pm
        self.pw: peewee.Database = driver.open()
        self.models = bind_models(self.pw)
        self.Job: Any = self.models["jobs"]
        self.JobRun: Any = self.models["job_runs"]
        self.JobPeriodic: Any = self.models["job_periodics"]
        self._local = threading.local()

    @property
    def url(self) -> str:
        """The URL with any password hidden."""
        return self.driver.display_url()

    @property
    def dialect(self) -> str:
        return self.driver.name

    @contextmanager
    def atomic(self) -> Iterator[Database]:
        """A transaction; callbacks registered with :meth:`on_commit` run after it commits."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.after_commit = []
        self._local.depth = depth + 1
        committed = False
        try:
            with self.driver.atomic(self):
                yield self
            committed = True
        finally:
            self._local.depth = depth
            if depth == 0:
                callbacks, self._local.after_commit = self._local.after_commit, []
                if committed:
                    for callback in callbacks:
                        callback()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current :meth:`atomic` block commits (now if none is open)."""
        if getattr(self._local, "depth", 0):
            self._local.after_commit.append(callback)
        else:
            callback()

    def close(self) -> None:
        """Close this thread's connection and the driver's own (other threads' close when they end)."""
        if not self.pw.is_closed():
            self.pw.close()
        self.driver.close()

    def __repr__(self) -> str:
        return f"<flywheel.Database {self.url}>"


def connect(url: str = DEFAULT_URL, *, pm: pluggy.PluginManager | None = None) -> Database:
    """Open the database at ``url`` with the driver plugin that understands it.

    Nothing is created until :func:`migrate` runs. An unknown scheme raises ``ValueError``
    naming the schemes the loaded drivers understand.
    """
    manager = resolve(pm)
    return Database(find_driver(manager, url), manager)


@translate_db_errors
def migrate(db: Database) -> None:
    """Create the tables and indexes that do not exist yet; safe to run on every start."""
    db.driver.migrate(db)


def models() -> tuple[type[peewee.Model], ...]:
    """The unbound peewee models (``Job``, ``JobRun``, ``JobPeriodic``) for host-owned schemas."""
    return MODELS
