"""The driver methods peewee's query builder writes correctly on any database.

:class:`PeeweeDriver` implements the parts of :class:`~flywheel.storage.driver.Driver`
whose every write re-checks its own fence in its ``WHERE`` clause (state and lease token),
so they stay correct under row locking (MVCC) as under a database-wide write lock. It
leaves abstract what differs per database: opening it, the claim, inserts, finalisation,
renewal, picking the sweep's batch, wake-ups, locks, migration and error mapping.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import peewee

from flywheel.enums import ACTIVE_STATES, JobState, RunOutcome
from flywheel.storage.driver import Driver, SweepResult
from flywheel.storage.models import IS_CLAIMABLE

if TYPE_CHECKING:
    from flywheel.storage.db import Database


class PeeweeDriver(Driver):
    """A partial driver: the portable methods, written once with peewee's query builder."""

    #: the peewee exceptions worth retrying (lock contention, lost connections)
    transient_errors: tuple[type[BaseException], ...] = (peewee.OperationalError, peewee.InterfaceError)

    # -- connection ------------------------------------------------------------

    def close(self) -> None:
        """Nothing beyond per-thread connections to release."""

    def display_url(self) -> str:
        return self.url

    @contextlib.contextmanager
    def atomic(self, db: Database) -> Iterator[None]:
        with db.pw.atomic():
            yield

    def reset_connection(self, db: Database) -> None:
        with contextlib.suppress(Exception):
            if not db.pw.is_closed() and not db.pw.in_transaction():
                db.pw.close()

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self.transient_errors)

    # -- producing -------------------------------------------------------------

    def enqueue(self, db: Database, rows: Sequence[dict[str, Any]]) -> set[str]:
        with db.atomic():
            landed = self.insert_jobs(db, rows)
            if landed:
                self.notify(db, {row["queue"] for row in rows if row["id"] in landed})
        return landed

    # -- leases ----------------------------------------------------------------

    def release_leases(self, db: Database, leases: Sequence[tuple[str, str]], now: datetime) -> int:
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

    # -- maintenance -----------------------------------------------------------

    def sweep(self, db: Database, now: datetime, batch_size: int = 1000) -> SweepResult:
        total = SweepResult(reclaimed=0, discarded=0)
        while True:
            batch = self.sweep_batch(db, now, batch_size)
            total = SweepResult(reclaimed=total.reclaimed + batch.reclaimed,
                                discarded=total.discarded + batch.discarded)
            if batch.reclaimed + batch.discarded < batch_size:
                return total

    @abc.abstractmethod
    def sweep_batch(self, db: Database, now: datetime, batch_size: int) -> SweepResult:
        """One transaction of :meth:`sweep`: pick up to ``batch_size`` expired leases, oldest first.

        No other transaction may recover the picked rows meanwhile; then :meth:`recover_expired` them."""

    def recover_expired(self, db: Database, now: datetime, expired: Sequence[tuple[str, int, int]]) -> SweepResult:
        """Apply the sweep's transitions to ``(id, attempt, max_attempts)`` rows the caller picked.

        Each UPDATE re-checks that the lease is still expired, so a job finalised meanwhile is left alone."""
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

    def count_active(self, db: Database, queues: Sequence[str] | None, executor_class: str | None) -> int:
        Job = db.Job
        query = Job.select().where(Job.state.in_([s.value for s in ACTIVE_STATES]))
        if queues is not None:
            query = query.where(Job.queue.in_(list(queues)))
        if executor_class is not None:
            query = query.where(Job.executor_class.in_([executor_class, ""]))
        return int(query.count())

    def next_due(self, db: Database, queues: Sequence[str], executor_class: str | None) -> datetime | None:
        Job = db.Job
        query = Job.select(Job.scheduled_at).where(IS_CLAIMABLE, Job.queue.in_(list(queues)))
        if executor_class is not None:
            query = query.where(Job.executor_class.in_([executor_class, ""]))
        row = query.order_by(Job.scheduled_at).limit(1).first()
        return None if row is None else row.scheduled_at
