"""The database seam: what a driver plugin provides, with portable defaults on peewee.

A driver opens the peewee database for a URL and implements the few operations whose
best form differs between databases: the claim, bulk insert with conflict handling,
wake-ups and locking. Everything here is written once with peewee's query builder, so a
new driver overrides only what its database does better (PostgreSQL's claim uses
``FOR UPDATE SKIP LOCKED``; SQLite serialises writers).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import peewee

from flywheel.enums import ACTIVE_STATES, JobState, RunOutcome
from flywheel.errors import DuplicateKey
from flywheel.storage import sql
from flywheel.storage.models import IS_CLAIMABLE, IS_RUNNING, from_db_time, index_ddl
from flywheel.storage.sanitize import clean_error, clean_output
from flywheel.serde import loads_json

if TYPE_CHECKING:
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
    that a lock lost with its connection is noticed, and ``release()`` when it stops.
    """

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        """Give the lock up (idempotent)."""


class Driver:
    """Base class of database drivers; subclasses set ``name`` and implement ``open``."""

    name = "generic"
    #: rows per multi-row INSERT statement
    chunk_size = 500
    #: the peewee exceptions worth retrying (lock contention, lost connections)
    transient_errors: tuple[type[BaseException], ...] = (peewee.OperationalError, peewee.InterfaceError)

    def __init__(self, url: str) -> None:
        self.url = url

    # -- connection ------------------------------------------------------------

    def open(self) -> peewee.Database:
        """Return the peewee database for this driver's URL (not yet connected)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the driver holds beyond per-thread connections (listeners, locks)."""

    def display_url(self) -> str:
        """The URL with any password hidden, for logs, errors and CLI output."""
        return self.url

    @contextlib.contextmanager
    def atomic(self, db: Database) -> Iterator[None]:
        """A write transaction (a savepoint when nested)."""
        with db.pw.atomic():
            yield

    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth retrying after a pause (the database is busy or away)."""
        return isinstance(exc, self.transient_errors)

    def reset_connection(self, db: Database) -> None:
        """Drop this thread's connection after an error so the next call reconnects."""
        with contextlib.suppress(Exception):
            if not db.pw.is_closed() and not db.pw.in_transaction():
                db.pw.close()

    # -- schema ----------------------------------------------------------------

    def migrate(self, db: Database) -> None:
        """Create the tables and indexes that do not exist yet (idempotent)."""
        with db.atomic():
            db.pw.create_tables(list(db.models.values()), safe=True)
            for statement in index_ddl():
                db.pw.execute_sql(statement)

    # -- producing -------------------------------------------------------------

    def insert_jobs(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert ``rows`` skipping unique collisions; return exactly the ids that landed.

        Called inside a transaction; ``rows`` hold every column and carry their own ids. One
        multi-row ``INSERT … ON CONFLICT DO NOTHING`` per chunk of :attr:`chunk_size`. A
        chunk where some row carries a unique key (any value, ``''`` included) says which
        rows landed with ``RETURNING id``. A chunk without keys can only lose a row to an
        id that already exists: its change count must equal its size, or
        :class:`~flywheel.errors.DuplicateKey` is raised (the caller's transaction then
        writes nothing). No id is ever reported for a row that was not written.

        (One prepared single-row INSERT run by ``executemany`` was measured too: on
        SQLite 3.40 / Python 3.11 it inserted these rows at ~2/3 the rate of 500-row
        statements, so the multi-row form stays.)
        """
        landed: set[str] = set()
        for start in range(0, len(rows), self.chunk_size):
            chunk = rows[start : start + self.chunk_size]
            keyed = any(r.get("unique_key") is not None or r.get("unique_active_key") is not None for r in chunk)
            cursor = db.pw.execute_sql(sql.insert_jobs(db.pw.param, len(chunk), keyed), sql.job_params(chunk))
            if keyed:
                landed.update(row[0] for row in cursor.fetchall())
            elif cursor.rowcount != len(chunk):
                raise DuplicateKey(f"flywheel: {len(chunk) - cursor.rowcount} of {len(chunk)} new job ids "
                                   "already existed; nothing was enqueued")
            else:
                landed.update(row["id"] for row in chunk)
        return landed

    def enqueue(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert validated rows in one transaction and wake their runners at commit."""
        with db.atomic():
            landed = self.insert_jobs(db, rows)
            if landed:
                self.notify(db, {row["queue"] for row in rows if row["id"] in landed})
        return landed

    def notify(self, db: Database, queues: set[str]) -> None:
        """Wake runners of ``queues`` once the current transaction commits (default: nothing)."""

    def wait_for_work(self, db: Database, queues: Sequence[str], timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a sign of new work; True if woken early."""
        time.sleep(timeout)
        return False

    def interrupt_waits(self) -> None:
        """Wake every thread blocked in :meth:`wait_for_work` (used at stop)."""

    # -- the claim -------------------------------------------------------------

    def claim(self, db: Database, request: ClaimRequest) -> list[ClaimedJob]:
        """Lease up to ``request.limit`` due jobs and write their ``started`` run rows.

        Portable form: the due rows are picked and updated in one write transaction,
        which is exclusive on SQLite. A database with row locks must override this.
        """
        by_class = not request.claim_any_class
        now = sql.db_value(request.now)  # rendered once: the claim and every run stub share it
        params: list[Any] = [sql.db_value(request.lease_until), request.lease_token, now, *request.queues, now]
        if by_class:
            params.append(request.executor_class)
        params.append(request.limit)
        with db.atomic():
            cursor = db.pw.execute_sql(sql.claim(db.pw.param, len(request.queues), by_class), params)
            rows = [dict(zip(sql.CLAIM_RETURNING, row, strict=True)) for row in cursor.fetchall()]
            rows.sort(key=lambda r: (r["priority"], str(r["scheduled_at"]), r["id"]))
            claimed = [_claimed(row, request, run_id) for row, run_id in zip(rows, request.run_ids, strict=False)]
            if claimed:
                stubs: list[Any] = []
                for job in claimed:  # the columns of sql.RUN_STUB_COLUMNS
                    stubs += [job.run_id, job.id, job.attempt, request.executor_class, request.executor_id, now,
                              RunOutcome.STARTED.value, 0, now]
                db.pw.execute_sql(sql.insert_run_stubs(db.pw.param, len(claimed)), stubs)
        return claimed

    # -- leases ----------------------------------------------------------------

    def renew_leases(
        self, db: Database, leases: Sequence[tuple[str, str]], until: datetime, now: datetime
    ) -> set[str]:
        """Extend the leases of ``(job_id, token)`` pairs still held; return the held ids."""
        held: set[str] = set()
        by_token: dict[str, list[str]] = {}
        for job_id, token in leases:
            by_token.setdefault(token, []).append(job_id)
        with db.atomic():
            for token, ids in by_token.items():
                cursor = db.pw.execute_sql(sql.renew_leases(db.pw.param, len(ids)),
                                           [sql.db_value(until), sql.db_value(now), *ids, token])
                held.update(row[0] for row in cursor.fetchall())
        return held

    def release_leases(self, db: Database, leases: Sequence[tuple[str, str]], now: datetime) -> int:
        """Hand still-held jobs back for immediate claiming (a node stopping before they finished).

        Their ``started`` runs are marked ``crashed``; the attempt they used stays used.
        """
        Job, JobRun = db.Job, db.JobRun
        released = 0
        with db.atomic():
            for job_id, token in leases:
                count = (
                    Job.update(state=JobState.AVAILABLE.value, leased_until=None, lease_token=None,
                               updated_at=now, scheduled_at=now)
                    .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.lease_token == token)
                    .execute()
                )
                if count:
                    released += count
                    JobRun.update(outcome=RunOutcome.CRASHED.value, finished_at=now).where(
                        JobRun.job_id == job_id, JobRun.outcome == RunOutcome.STARTED.value
                    ).execute()
        return released

    def unclaim(self, db: Database, attempts: Sequence[tuple[str, str, str]], now: datetime) -> int:
        """Undo the claims of ``(job_id, token, run_id)`` attempts whose worker never started.

        A job still held under the token goes back to ``available`` as if never claimed:
        its attempt counter is decremented and the attempt's ``started`` run row deleted
        (scheduled_at and priority are kept, so it keeps its place in the queue). An
        attempt whose lease is already gone (cancelled, retried, swept) only has its run
        row closed as ``crashed``. Returns the jobs handed back.
        """
        Job, JobRun = db.Job, db.JobRun
        released = 0
        with db.atomic():
            for job_id, token, run_id in attempts:
                count = (
                    Job.update(state=JobState.AVAILABLE.value, attempt=Job.attempt - 1, leased_until=None,
                               lease_token=None, updated_at=now)
                    .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.lease_token == token)
                    .execute()
                )
                if count:
                    released += count
                    JobRun.delete().where(JobRun.id == run_id, JobRun.outcome == RunOutcome.STARTED.value).execute()
                else:
                    JobRun.update(outcome=RunOutcome.CRASHED.value, finished_at=now,
                                  error_message="jobs: prefetched attempt never started; its lease was lost").where(
                        JobRun.id == run_id, JobRun.outcome == RunOutcome.STARTED.value).execute()
        return released

    # -- finalisation ----------------------------------------------------------

    def finalize(self, db: Database, plans: Sequence[FinalizePlan]) -> list[FinalizeResult]:
        """Persist several attempts' outcomes in one transaction, each fenced by its lease token."""
        with db.atomic():
            return [self._finalize_one(db, plan) for plan in plans]

    def _finalize_one(self, db: Database, plan: FinalizePlan) -> FinalizeResult:
        params: list[Any] = [plan.state.value, sql.db_value(plan.finished_at)]
        if plan.scheduled_at is not None:
            params.append(sql.db_value(plan.scheduled_at))
        if plan.finalized_at is not None:
            params.append(sql.db_value(plan.finalized_at))
        params += [plan.job_id, plan.lease_token]
        statement = sql.finalize_job(db.pw.param, plan.scheduled_at is not None, plan.finalized_at is not None,
                                     plan.bump_max_attempts)
        superseded = db.pw.execute_sql(statement, params).rowcount == 0
        children = 0
        if not superseded and plan.follow_ups:
            for start in range(0, len(plan.follow_ups), self.chunk_size):
                children += len(self.insert_jobs(db, plan.follow_ups[start : start + self.chunk_size]))
            self.notify(db, {row["queue"] for row in plan.follow_ups})
        # A fenced attempt keeps a verdict already recorded (the sweep's or a release's
        # ``crashed``), so a job has one success row at most; otherwise its real outcome lands.
        db.pw.execute_sql(sql.finalize_run(db.pw.param, superseded), run_params(plan, children))
        return FinalizeResult(job_id=plan.job_id, superseded=superseded, enqueued_children=children)

    # -- maintenance -----------------------------------------------------------

    def sweep(self, db: Database, now: datetime, batch_size: int = 1000) -> SweepResult:
        """Recover jobs whose lease expired (their process died or froze), in bounded batches.

        Each batch is one transaction: a job with attempts left goes back to ``available``;
        one whose attempts are used up (it keeps killing its process) is ``discarded``. Every
        ``started`` run of a recovered job is marked ``crashed``.
        """
        total = SweepResult(reclaimed=0, discarded=0)
        while True:
            batch = self._sweep_batch(db, now, batch_size)
            total = SweepResult(reclaimed=total.reclaimed + batch.reclaimed,
                                discarded=total.discarded + batch.discarded)
            if batch.reclaimed + batch.discarded < batch_size:
                return total

    def _sweep_batch(self, db: Database, now: datetime, batch_size: int) -> SweepResult:
        Job, JobRun = db.Job, db.JobRun
        with db.atomic():
            expired = list(
                Job.select(Job.id, Job.attempt, Job.max_attempts)
                .where(IS_RUNNING, Job.leased_until < now, Job.deleted_at.is_null())
                .order_by(Job.leased_until)
                .limit(batch_size)
                .tuples()
            )
            return self._recover(db, now, expired)

    def _recover(self, db: Database, now: datetime, expired: Sequence[tuple[str, int, int]]) -> SweepResult:
        """Apply the sweep's transitions to ``(id, attempt, max_attempts)`` rows already locked."""
        Job, JobRun = db.Job, db.JobRun
        spent = [job_id for job_id, attempt, max_attempts in expired if attempt >= max_attempts]
        retry = [job_id for job_id, attempt, max_attempts in expired if attempt < max_attempts]
        running = (Job.state == JobState.RUNNING.value) & (Job.leased_until < now)
        if retry:
            Job.update(state=JobState.AVAILABLE.value, leased_until=None, lease_token=None, updated_at=now).where(
                Job.id.in_(retry), running).execute()
        if spent:
            Job.update(state=JobState.DISCARDED.value, leased_until=None, lease_token=None, updated_at=now,
                       finalized_at=now).where(Job.id.in_(spent), running).execute()
        if expired:
            JobRun.update(outcome=RunOutcome.CRASHED.value, finished_at=now,
                          error_message="jobs: lease expired; the attempt's process "
                          "stopped renewing it (crashed, killed or frozen)").where(
                JobRun.job_id.in_([row[0] for row in expired]), JobRun.outcome == RunOutcome.STARTED.value).execute()
        return SweepResult(reclaimed=len(retry), discarded=len(spent))

    def singleton(self, db: Database, name: str) -> Singleton:
        """A lock that at most one process holds at a time, for maintenance such as the scheduler.

        The default coordinates nothing (every caller holds it); drivers override it with an
        advisory lock (PostgreSQL) or a file lock (SQLite).
        """
        return Singleton()

    def count_active(self, db: Database, queues: Sequence[str] | None, executor_class: str | None) -> int:
        """Non-terminal jobs in ``queues`` (all when None) claimable by ``executor_class``."""
        Job = db.Job
        query = Job.select().where(Job.state.in_([s.value for s in ACTIVE_STATES]), Job.deleted_at.is_null())
        if queues is not None:
            query = query.where(Job.queue.in_(list(queues)))
        if executor_class is not None:
            query = query.where(Job.executor_class.in_([executor_class, ""]))
        return int(query.count())

    def next_due(self, db: Database, queues: Sequence[str], executor_class: str | None) -> datetime | None:
        """The earliest ``scheduled_at`` among claimable jobs of ``queues``."""
        Job = db.Job
        query = Job.select(Job.scheduled_at).where(IS_CLAIMABLE, Job.deleted_at.is_null(), Job.queue.in_(list(queues)))
        if executor_class is not None:
            query = query.where(Job.executor_class.in_([executor_class, ""]))
        row = query.order_by(Job.scheduled_at).limit(1).first()
        return None if row is None else row.scheduled_at


def _CLAIM_COLUMNS(Job: Any) -> tuple[Any, ...]:  # noqa: N802 - reads like the column list it is
    return tuple(getattr(Job, name) for name in sql.CLAIM_RETURNING)


def run_params(plan: FinalizePlan, children: int) -> list[Any]:
    """The parameters of :func:`flywheel.storage.sql.finalize_run` for one plan."""
    payload = None if plan.error_message is None else sql.db_value({"message": plan.error_message})
    return [plan.outcome.value, sql.db_value(plan.finished_at), plan.duration_ms, plan.cost_micros, children,
            plan.error_class, plan.error_message, payload, plan.output_json, plan.run_id]


def _claimed(row: dict[str, Any], request: ClaimRequest, run_id: str) -> ClaimedJob:
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


__all__ = [
    "ClaimRequest", "ClaimedJob", "Driver", "FinalizePlan", "FinalizeResult", "Singleton",
    "SweepResult",
]
