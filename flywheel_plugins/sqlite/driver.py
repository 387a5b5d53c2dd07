"""The SQLite driver (the plugin is :mod:`flywheel_plugins.sqlite`).

URLs: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` and ``sqlite://:memory:``.

Every connection runs in WAL mode with ``synchronous=NORMAL``, foreign keys on and a long
busy timeout, and every write transaction is ``BEGIN IMMEDIATE`` so a writer takes the
lock up front instead of failing half way. Inside one process, writers also queue on a
lock per file, so threads wait their turn in Python rather than in SQLite's busy handler.
Several processes may share the file; their writes are serialised by SQLite itself.

Wake-ups: an insert wakes this process's idle runners at commit, and an idle runner
watches ``PRAGMA data_version`` (a cheap read every 4 ms while idle) so commits from
other processes wake it within ~5 ms.

The hot path's SQL (enqueue, claim, renewal, finalisation) is in :mod:`.statements`; the
portable rest comes from :class:`flywheel.storage.portable.PeeweeDriver`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import peewee

from flywheel.enums import RunOutcome
from flywheel.errors import DuplicateKey, FlywheelError, ForeignKeyViolation, SchemaMissing
from flywheel.storage.driver import (
    CLAIM_RETURNING,
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
from flywheel.storage.models import IS_RUNNING
from flywheel.storage.portable import PeeweeDriver
from flywheel.storage.schema import db_value, job_params
from flywheel_plugins.sqlite import statements

if TYPE_CHECKING:
    from flywheel.storage.db import Database

URL_SCHEMES = ("sqlite",)
BUSY_TIMEOUT_S = 60.0
WATCH_STEP_S = 0.004
_MEMORY = ":memory:"
#: ``sqlite3`` error names (``exc.sqlite_errorname``) of constraint violations.
_DUPLICATE_ERRORS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})
_FOREIGN_KEY_ERRORS = frozenset({"SQLITE_CONSTRAINT_FOREIGNKEY"})
_MISSING_TABLE = re.compile(r"no such table: (?:\w+\.)?(jobs|job_runs|job_periodics)\b")


def path_from_url(url: str) -> str:
    """``sqlite:///a.db`` → ``a.db``; ``sqlite:////tmp/a.db`` → ``/tmp/a.db``."""
    rest = url[len("sqlite:") :]
    if rest in ("", "//", "//" + _MEMORY, _MEMORY):
        return _MEMORY
    if not rest.startswith("///"):
        raise ValueError(f"flywheel: malformed SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
    path = rest[3:].split("?", 1)[0]
    if not path:
        raise ValueError(f"flywheel: SQLite URL {url!r} names no file")
    return path


class _PerFile:
    """What every driver on one file shares in this process: the writers' lock and the wake-up."""

    _all: ClassVar[dict[str, _PerFile]] = {}
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.wake = threading.Condition()

    @classmethod
    def of(cls, path: str) -> _PerFile:
        with cls._guard:
            return cls._all.setdefault(path, cls())


class _ExistingFileDatabase(peewee.SqliteDatabase):
    """Connects only to a file that exists: a mistyped path or a missed migrate must not leave an
    empty database behind, so connecting to a missing file raises ``SchemaMissing`` instead."""

    def _connect(self) -> sqlite3.Connection:
        if not os.path.exists(self.database):
            raise SchemaMissing(f"the SQLite file {self.database} does not exist")
        return super()._connect()  # type: ignore[misc, no-any-return]  # not in peewee's stubs


class SQLiteDriver(PeeweeDriver):
    """The embedded default; see the module docstring for its locking and wake-ups."""

    name = "sqlite"
    chunk_size = 500  # 21 columns a row stays well under SQLite's 32,766 bound parameters
    #: one writer at a time (``BEGIN IMMEDIATE``): nothing needs, or has, a row lock
    capabilities = Capabilities(row_locks=False)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        path = path_from_url(url)
        if path == _MEMORY:
            # A real :memory: database is private to one connection, and flywheel uses one
            # connection per thread; a temporary file, removed at exit, behaves the same.
            tmpdir = tempfile.mkdtemp(prefix="flywheel-memory-")
            atexit.register(shutil.rmtree, tmpdir, True)
            path = os.path.join(tmpdir, "flywheel.db")
        self.path = os.path.abspath(path)
        shared = _PerFile.of(self.path)
        self._lock, self._wake = shared.lock, shared.wake
        self._stopping = threading.Event()

    def open(self) -> peewee.Database:
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            raise ValueError(f"flywheel: the directory of the SQLite file does not exist: {directory}")
        return _ExistingFileDatabase(
            self.path,
            pragmas={"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1,
                     "busy_timeout": int(BUSY_TIMEOUT_S * 1000)},
            timeout=BUSY_TIMEOUT_S,
            lock_type="IMMEDIATE",
            returning_clause=True,
            check_same_thread=False,
        )

    @contextlib.contextmanager
    def atomic(self, db: Database) -> Iterator[None]:
        with self._lock, db.pw.atomic():
            yield

    def migrate(self, db: Database) -> None:
        """Create the file (only migrate may: see :class:`_ExistingFileDatabase`), then the schema.

        Dropping the retired ``deleted_at`` column needs ``ALTER TABLE … DROP COLUMN`` (SQLite 3.35+).
        """
        if not os.path.exists(self.path):
            with contextlib.closing(sqlite3.connect(self.path)):
                pass
        with db.atomic():
            create_schema(db)

    def is_transient(self, exc: BaseException) -> bool:
        return (isinstance(exc, peewee.OperationalError) and "locked" in str(exc).lower()) or super().is_transient(exc)

    @classmethod
    def map_error(cls, exc: BaseException) -> FlywheelError | None:
        """Constraint violations by ``sqlite3``'s error name; a missing table by SQLite's message
        (it has no error code of its own: ``no such table: jobs``)."""
        inner = getattr(exc, "orig", None) or exc
        if not isinstance(inner, sqlite3.Error):
            return None
        text = str(exc).strip() or type(exc).__name__
        error_name = getattr(inner, "sqlite_errorname", "")
        if error_name in _DUPLICATE_ERRORS:
            return DuplicateKey(f"flywheel: duplicate key: {text}")
        if error_name in _FOREIGN_KEY_ERRORS:
            return ForeignKeyViolation(f"flywheel: foreign key violation: {text}")
        if (missing := _MISSING_TABLE.search(text)) is not None:
            return SchemaMissing(f"table {missing.group(1)} does not exist")
        return None

    # -- the hot path ----------------------------------------------------------

    def insert_jobs(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """One multi-row ``INSERT … ON CONFLICT DO NOTHING`` per chunk of :attr:`chunk_size`.

        A chunk where some row carries a unique key (any value, ``''`` included) says which
        rows landed with ``RETURNING id``. A chunk without keys can only lose a row to an id
        that already exists: its change count must equal its size, or ``DuplicateKey`` is
        raised (the caller's transaction then writes nothing).
        """
        landed: set[str] = set()
        for start in range(0, len(rows), self.chunk_size):
            chunk = rows[start : start + self.chunk_size]
            keyed = any(r.get("unique_key") is not None or r.get("unique_active_key") is not None for r in chunk)
            cursor = db.pw.execute_sql(statements.insert_jobs(len(chunk), keyed), job_params(chunk))
            if keyed:
                landed.update(row[0] for row in cursor.fetchall())
            elif cursor.rowcount != len(chunk):
                raise DuplicateKey(f"flywheel: {len(chunk) - cursor.rowcount} of {len(chunk)} new job ids "
                                   "already existed; nothing was enqueued")
            else:
                landed.update(row["id"] for row in chunk)
        return landed

    def claim(self, db: Database, request: ClaimRequest) -> list[ClaimedJob]:
        """:func:`.statements.claim` and the run rows' insert, in one ``BEGIN IMMEDIATE`` transaction."""
        by_class = not request.claim_any_class
        now = db_value(request.now)  # rendered once: the claim and every run stub share it
        params: list[Any] = [db_value(request.lease_until), request.lease_token, now, *request.queues, now]
        if by_class:
            params.append(request.executor_class)
        params.append(request.limit)
        with db.atomic():
            cursor = db.pw.execute_sql(statements.claim(len(request.queues), by_class), params)
            rows = [dict(zip(CLAIM_RETURNING, row, strict=True)) for row in cursor.fetchall()]
            rows.sort(key=lambda r: (r["priority"], str(r["scheduled_at"]), r["id"]))
            claimed = [claimed_job(row, request, run_id) for row, run_id in zip(rows, request.run_ids, strict=False)]
            if claimed:
                stubs: list[Any] = []
                for job in claimed:  # the columns of schema.RUN_STUB_COLUMNS
                    stubs += [job.run_id, job.id, job.attempt, request.executor_class, request.executor_id, now,
                              RunOutcome.STARTED.value, 0, now]
                db.pw.execute_sql(statements.insert_run_stubs(len(claimed)), stubs)
        return claimed

    def renew_leases(
        self, db: Database, leases: Sequence[tuple[str, str]], until: datetime, now: datetime
    ) -> set[str]:
        held: set[str] = set()
        by_token: dict[str, list[str]] = {}
        for job_id, token in leases:
            by_token.setdefault(token, []).append(job_id)
        with db.atomic():
            for token, ids in by_token.items():
                cursor = db.pw.execute_sql(statements.renew_leases(len(ids)),
                                           [db_value(until), db_value(now), *ids, token])
                held.update(row[0] for row in cursor.fetchall())
        return held

    def finalize(self, db: Database, plans: Sequence[FinalizePlan]) -> list[FinalizeResult]:
        """A group's outcomes in one transaction: its jobs fenced in one statement, its follow-ups
        inserted for the attempts that were current, its run rows written in one more."""
        current: set[str] = set()
        children: dict[str, int] = {}
        with db.atomic():
            for start in range(0, len(plans), statements.FINALIZE_CHUNK):
                chunk = plans[start : start + statements.FINALIZE_CHUNK]
                rows = statements.padded(len(chunk))
                cursor = db.pw.execute_sql(statements.fence_jobs(rows), statements.fence_jobs_params(chunk, rows))
                current.update(row[0] for row in cursor.fetchall())
            queues: set[str] = set()
            for plan in plans:
                if plan.follow_ups and plan.job_id in current:
                    count = 0
                    for start in range(0, len(plan.follow_ups), self.chunk_size):
                        count += len(self.insert_jobs(db, plan.follow_ups[start : start + self.chunk_size]))
                    children[plan.run_id] = count
                    queues.update(row["queue"] for row in plan.follow_ups)
            if queues:
                self.notify(db, queues)
            for start in range(0, len(plans), statements.FINALIZE_CHUNK):
                chunk = plans[start : start + statements.FINALIZE_CHUNK]
                rows = statements.padded(len(chunk))
                db.pw.execute_sql(statements.record_runs(rows),
                                  statements.record_runs_params(chunk, current, children, rows))
        return [FinalizeResult(job_id=plan.job_id, superseded=plan.job_id not in current,
                               enqueued_children=children.get(plan.run_id, 0)) for plan in plans]

    def sweep_batch(self, db: Database, now: datetime, batch_size: int) -> SweepResult:
        """Select then update in one write transaction: no other writer can touch the batch between."""
        Job = db.Job
        with db.atomic():
            expired = list(
                Job.select(Job.id, Job.attempt, Job.max_attempts)
                .where(IS_RUNNING, Job.leased_until < now)
                .order_by(Job.leased_until)
                .limit(batch_size)
                .tuples()
            )
            return self.recover_expired(db, now, expired)

    # -- wake-ups --------------------------------------------------------------

    def notify(self, db: Database, queues: set[str]) -> None:
        db.on_commit(self._notify_all)

    def _notify_all(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def interrupt_waits(self) -> None:
        self._notify_all()

    def wait_for_work(self, db: Database, queues: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        baseline = self._data_version(db)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._wake:
                if self._wake.wait(min(remaining, WATCH_STEP_S)):
                    return True
            current = self._data_version(db)
            if baseline is not None and current is not None and current != baseline:
                return True

    def _data_version(self, db: Database) -> int | None:
        try:
            row = db.pw.execute_sql("PRAGMA data_version").fetchone()
        except peewee.PeeweeException:
            return None
        return int(row[0]) if row else None

    # -- maintenance lock ------------------------------------------------------

    def singleton(self, db: Database, name: str) -> Singleton:
        """An exclusive ``flock`` on ``<db file>.<name>.lock`` (``flywheel.db.scheduler.lock``).

        Every process on one machine sharing the file sees it; a dead process's lock goes
        with it. Where ``fcntl`` does not exist (Windows) every caller holds it: run one
        scheduler per SQLite file there.
        """
        try:
            import fcntl  # noqa: F401 - only whether it exists (not on Windows)
        except ImportError:
            return Singleton()
        return FileLockSingleton(f"{self.path}.{name.removeprefix('flywheel-')}.lock")


class FileLockSingleton(Singleton):
    """A non-blocking ``flock`` held on a dedicated file descriptor until :meth:`release`.

    ``acquire()`` also checks that the locked file is still the one at ``path`` (someone
    may have deleted it), and takes the new one if not.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._guard = threading.Lock()

    def acquire(self) -> bool:
        import fcntl

        with self._guard:
            if self._fd is not None:
                if self._still_ours(self._fd):
                    return True
                self._close()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            with contextlib.suppress(OSError):  # who holds it, for an operator looking at the file
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._fd = fd
            return True

    def release(self) -> None:
        with self._guard:
            self._close()

    def _still_ours(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
