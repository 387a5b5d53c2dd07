"""The storage seam: what a database driver must do, declared once, with its data.

The runtime, the API and the scheduler reach the database only through the methods of
:class:`Driver` (and the peewee models for plain reads and admin writes). A driver plugin
(``flywheel_driver(url)``) returns an instance of a subclass that implements every one of
them; this module is what its author reads. The kernel holds no SQL dialect: each
driver's hand-written SQL lives in its own package (``flywheel_plugins.sqlite``,
``flywheel_plugins.postgres``), and :class:`flywheel.storage.portable.PeeweeDriver` offers the
methods that peewee's query builder writes correctly on any database.

What every implementation guarantees, whatever its locking:

* a job is leased by at most one claim at a time (two concurrent claims never return the
  same job), and every later write of an attempt is fenced by ``(job id, lease token)``;
* a claim writes the attempt's ``started`` run row in the same transaction as the lease;
* writes that run inside :meth:`flywheel.storage.db.Database.atomic` commit or roll back
  with the caller's own writes, and wake-ups (:meth:`Driver.notify`) go out only at commit.

Instants are aware UTC datetimes; rows passed to :meth:`Driver.insert_jobs` hold every
column of :data:`flywheel.storage.schema.JOB_COLUMNS`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import peewee

from flywheel.enums import JobState, RunOutcome
from flywheel.serde import loads_json
from flywheel.storage.models import from_db_time
from flywheel.storage.sanitize import clean_error, clean_output

if TYPE_CHECKING:
    from flywheel.errors import FlywheelError
    from flywheel.storage.db import Database


@attrs.frozen(kw_only=True)
class ClaimRequest:
    """One claim: up to ``limit`` due jobs of ``queues`` for a runner of ``executor_class``."""

    queues: tuple[str, ...]
    executor_class: str
    claim_any_class: bool
    limit: int
    now: datetime
    lease_until: datetime
    lease_token: str
    executor_id: str
    run_ids: tuple[str, ...]


@attrs.frozen(kw_only=True)
class ClaimedJob:
    """A claimed ``jobs`` row, with the run row the claim wrote for it."""

    id: str
    kind: str
    queue: str
    args: Any
    attempt: int
    max_attempts: int
    timeout_ms: int | None
    parent_job_id: str | None
    tags: list[str]
    scheduled_at: datetime
    metadata: dict[str, Any]
    executor_class: str
    lease_token: str
    run_id: str
    started_at: datetime
    #: lower runs first; a runner starts the jobs it prefetched in this order
    priority: int = 0


@attrs.frozen(kw_only=True)
class FinalizePlan:
    """Everything one attempt's finalisation writes; built before the transaction opens.

    The error message and output are made storable on construction (:mod:`flywheel.storage.sanitize`),
    so no outcome a worker produces can make its finalisation fail.
    """

    job_id: str
    run_id: str
    lease_token: str
    state: JobState
    scheduled_at: datetime | None
    finalized_at: datetime | None
    bump_max_attempts: bool
    outcome: RunOutcome
    finished_at: datetime
    duration_ms: int
    error_class: str | None
    error_message: str | None = attrs.field(converter=clean_error)
    output_json: str | None = attrs.field(converter=clean_output)
    cost_micros: int
    follow_ups: tuple[dict[str, Any], ...] = ()


@attrs.frozen(kw_only=True)
class FinalizeResult:
    """What a finalisation persisted."""

    job_id: str
    superseded: bool
    enqueued_children: int


@attrs.frozen(kw_only=True)
class SweepResult:
    """What a sweep recovered: jobs handed back to the queue, and crash-looping jobs discarded."""

    reclaimed: int
    discarded: int


class Singleton:
    """A maintenance lock; ``acquire()`` never blocks and says whether this process holds it.

    A holder calls ``acquire()`` before each round of work (it is cheap and re-entrant) so
    that a lock lost with its connection is noticed, and ``release()`` when it stops. This
    base class coordinates nothing (every caller holds it); drivers subclass it with an
    advisory lock, a file lock or the like.
    """

    def acquire(self) -> bool:
        """Take or re-check the lock without blocking; True while this process holds it."""
        return True

    def release(self) -> None:
        """Give the lock up (idempotent)."""


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a database can do that changes how the kernel phrases its own queries."""

    #: ``SELECT … FOR UPDATE SKIP LOCKED``: concurrent writers lock rows, so a query that
    #: reads rows it is about to change (the scheduler firing a schedule, retention picking a
    #: batch) locks them and steps over rows another transaction holds. False where a write
    #: transaction excludes every other writer, so no row lock is needed (or available).
    row_locks: bool


#: The ``jobs`` columns a claim returns: the :class:`ClaimedJob` fields the row supplies
#: (the lease token, run id and start come from the :class:`ClaimRequest`), in field order.
CLAIM_RETURNING: tuple[str, ...] = tuple(
    field.name for field in attrs.fields(ClaimedJob) if field.name not in ("lease_token", "run_id", "started_at"))


def claimed_job(row: Mapping[str, Any], request: ClaimRequest, run_id: str) -> ClaimedJob:
    """The :class:`ClaimedJob` for one row of :data:`CLAIM_RETURNING` columns, as a driver read it."""
    tags, metadata = row["tags"], row["metadata"]
    return ClaimedJob(
        id=row["id"], kind=row["kind"], queue=row["queue"], args=row["args"], attempt=int(row["attempt"]),
        max_attempts=int(row["max_attempts"]), timeout_ms=row["timeout_ms"], parent_job_id=row["parent_job_id"],
        tags=[] if tags == "[]" else list(loads_json(tags) or []),  # the common empty cases skip the decoder
        scheduled_at=from_db_time(row["scheduled_at"]),  # type: ignore[arg-type]
        metadata={} if metadata == "{}" else dict(loads_json(metadata) or {}),
        executor_class=row["executor_class"] or "", lease_token=request.lease_token, run_id=run_id,
        started_at=request.now, priority=int(row["priority"] or 0),
    )


#: Every concrete driver class defined so far, for :func:`map_driver_error`.
_DRIVER_CLASSES: list[type[Driver]] = []


class Driver(abc.ABC):
    """A database driver: every operation the runtime, the API and the scheduler ask of storage.

    Subclasses set :attr:`name` and :attr:`chunk_size`, declare :attr:`capabilities` and
    implement every abstract method. ``db`` arguments are the
    :class:`~flywheel.storage.db.Database` this driver opened (``db.pw`` is its peewee
    database, ``db.Job``/``db.JobRun``/``db.JobPeriodic`` its bound models). Methods may be
    called from many threads at once; peewee keeps one connection per thread.
    """

    #: the dialect's name, shown as ``db.dialect`` (``"sqlite"``, ``"postgres"``)
    name: ClassVar[str] = "generic"
    #: rows per multi-row INSERT statement
    chunk_size: ClassVar[int] = 500

    def __init__(self, url: str) -> None:
        self.url = url

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _DRIVER_CLASSES.append(cls)

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this database can do that the kernel's own queries depend on.

        Usually a class attribute: ``capabilities = Capabilities(row_locks=True)``."""

    # -- connection ------------------------------------------------------------

    @abc.abstractmethod
    def open(self) -> peewee.Database:
        """Return the peewee database for this driver's URL (not yet connected).

        Called once per :class:`~flywheel.storage.db.Database`; connections open lazily, one per thread."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the driver holds beyond per-thread connections (listeners, locks).

        Idempotent; called when the :class:`~flywheel.storage.db.Database` closes."""

    @abc.abstractmethod
    def display_url(self) -> str:
        """The URL with any password hidden, for logs, errors and CLI output.

        Never returns a secret, even for a malformed URL."""

    @abc.abstractmethod
    def atomic(self, db: Database) -> contextlib.AbstractContextManager[None]:
        """A context manager around one write transaction (a savepoint when nested).

        :meth:`Database.atomic <flywheel.storage.db.Database.atomic>` runs every transaction through it."""

    @abc.abstractmethod
    def reset_connection(self, db: Database) -> None:
        """Drop this thread's connection after an error so the next call reconnects.

        Must leave a connection inside a caller's open transaction alone."""

    # -- errors ----------------------------------------------------------------

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth retrying after a pause (the database is busy, locked or away).

        False for errors in the statement or the data: retrying those fails the same way."""

    @classmethod
    @abc.abstractmethod
    def map_error(cls, exc: BaseException) -> FlywheelError | None:
        """The flywheel error for ``exc`` if this driver's database raised it, else None.

        A unique violation is a :class:`~flywheel.errors.DuplicateKey`, a foreign key one a
        :class:`~flywheel.errors.ForeignKeyViolation`, a missing flywheel table
        :class:`~flywheel.errors.SchemaMissing`; ``exc`` may be peewee's wrapper (the
        driver's own exception is its ``orig``). Used by :func:`flywheel.wrap_db_error`,
        which sets the cause and maps what no driver claims to ``DatabaseError``."""

    # -- schema ----------------------------------------------------------------

    @abc.abstractmethod
    def migrate(self, db: Database) -> None:
        """Create the tables and indexes that do not exist yet and upgrade old ones (idempotent).

        :func:`flywheel.storage.migrations.create_schema` does the portable part; safe to run from
        several nodes at once."""

    # -- producing -------------------------------------------------------------

    @abc.abstractmethod
    def insert_jobs(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert whole ``jobs`` rows skipping unique collisions; return exactly the ids that landed.

        Called inside a transaction; a row whose id already exists (no unique key involved)
        raises :class:`~flywheel.errors.DuplicateKey` rather than vanishing silently."""

    @abc.abstractmethod
    def enqueue(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """:meth:`insert_jobs` in its own transaction (or the caller's), then :meth:`notify` the queues that got rows.

        Returns the ids that landed; the public ``insert``/``insert_many`` go through it."""

    @abc.abstractmethod
    def notify(self, db: Database, queues: set[str]) -> None:
        """Wake runners waiting on ``queues`` once the current transaction commits (now if none).

        A rolled-back transaction wakes nobody; a lost wake-up only costs one poll interval."""

    @abc.abstractmethod
    def wait_for_work(self, db: Database, queues: Sequence[str], timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a sign of new work in ``queues``; True if woken early.

        May wake spuriously; a notification since this thread's previous wait returns at once."""

    @abc.abstractmethod
    def interrupt_waits(self) -> None:
        """Wake every thread blocked in :meth:`wait_for_work` (a runner stopping).

        Must not block and must be callable from any thread."""

    # -- the claim -------------------------------------------------------------

    @abc.abstractmethod
    def claim(self, db: Database, request: ClaimRequest) -> list[ClaimedJob]:
        """Lease up to ``request.limit`` due jobs and write their ``started`` run rows, atomically.

        Due: claimable state, one of ``request.queues``, ``scheduled_at <= request.now``, and
        (unless ``claim_any_class``) ``executor_class`` in (``request.executor_class``, ``''``).
        Picked by ``(priority, scheduled_at, id)``, each gets ``attempt + 1``, the request's
        token and lease end, and the next of ``request.run_ids``; returned in that order.
        Two concurrent claims must never return the same job."""

    # -- leases ----------------------------------------------------------------

    @abc.abstractmethod
    def renew_leases(
        self, db: Database, leases: Sequence[tuple[str, str]], until: datetime, now: datetime
    ) -> set[str]:
        """Extend to ``until`` the leases of ``(job_id, token)`` pairs still running under that token.

        Returns the ids still held; a job missing from the result was lost (cancelled, swept)."""

    @abc.abstractmethod
    def release_leases(self, db: Database, leases: Sequence[tuple[str, str]], now: datetime) -> int:
        """Hand still-held ``(job_id, token)`` jobs back as ``available`` now (a node stopping).

        Their ``started`` runs become ``crashed``; the attempt stays used. Returns the jobs released."""

    @abc.abstractmethod
    def unclaim(self, db: Database, attempts: Sequence[tuple[str, str, str]], now: datetime) -> int:
        """Undo the claims of ``(job_id, token, run_id)`` attempts whose worker never started.

        A job still held goes back to ``available`` with ``attempt - 1``, its ``started`` run
        row deleted, ``scheduled_at`` and priority kept; an attempt whose lease is gone only
        has its run row closed as ``crashed``. Returns the jobs handed back."""

    # -- finalisation ----------------------------------------------------------

    @abc.abstractmethod
    def finalize(self, db: Database, plans: Sequence[FinalizePlan]) -> list[FinalizeResult]:
        """Persist several attempts' outcomes in one transaction, each fenced by its lease token.

        A plan whose job is no longer running under its token is ``superseded``: the job is
        left alone, its follow-ups are not inserted, and its run row keeps a verdict already
        recorded (``crashed``) or else gets the plan's outcome. Results follow ``plans``' order."""

    # -- maintenance -----------------------------------------------------------

    @abc.abstractmethod
    def sweep(self, db: Database, now: datetime, batch_size: int = 1000) -> SweepResult:
        """Recover jobs whose lease expired before ``now``, in transactions of ``batch_size`` jobs.

        With attempts left a job goes back to ``available``, otherwise ``discarded``; their
        ``started`` runs become ``crashed``. Safe to run from several nodes at once."""

    @abc.abstractmethod
    def singleton(self, db: Database, name: str) -> Singleton:
        """A lock that at most one process holds at a time, for maintenance such as the scheduler.

        Return :class:`Singleton` itself (every caller holds it) where nothing can coordinate."""

    @abc.abstractmethod
    def count_active(self, db: Database, queues: Sequence[str] | None, executor_class: str | None) -> int:
        """Non-terminal jobs in ``queues`` (all when None) claimable by ``executor_class`` (any when None).

        Used by ``Runner.run_until_empty`` to tell a drained queue from one still working."""

    @abc.abstractmethod
    def next_due(self, db: Database, queues: Sequence[str], executor_class: str | None) -> datetime | None:
        """The earliest ``scheduled_at`` among claimable jobs of ``queues`` (None when there is none).

        An idle runner sleeps until then at most."""


def map_driver_error(exc: BaseException) -> FlywheelError | None:
    """Ask every concrete driver class defined so far to name ``exc`` (:meth:`Driver.map_error`)."""
    for cls in _DRIVER_CLASSES:
        if not getattr(cls, "__abstractmethods__", None):
            mapped = cls.map_error(exc)
            if mapped is not None:
                return mapped
    return None


__all__ = [
    "CLAIM_RETURNING", "Capabilities", "ClaimRequest", "ClaimedJob", "Driver", "FinalizePlan", "FinalizeResult",
    "Singleton", "SweepResult", "claimed_job", "map_driver_error",
]
