"""Inspecting and operating: read projections and operator actions, written once on peewee."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import peewee

from flywheel import clock
from flywheel.api.views import FailureView, JobArgsView, JobRunView, JobsOverview, JobView, QueueHealth
from flywheel.enums import ACTIVE_STATES, CLAIMABLE_STATES, TERMINAL_STATES, JobState, RunOutcome
from flywheel.errors import JobNotFound, JobTerminal, translate_db_errors
from flywheel.storage.models import IS_CLAIMABLE
from flywheel.storage.sanitize import check_text, require_aware

if TYPE_CHECKING:
    from flywheel.storage.db import Database

_ACTIVE = [s.value for s in ACTIVE_STATES]
_CLAIMABLE = [s.value for s in CLAIMABLE_STATES]
_TERMINAL = [s.value for s in TERMINAL_STATES]
RETENTION_BATCH = 1000


def job_view(row: Any) -> JobView:
    metadata = row.metadata or {}  # model fields arrive decoded
    return JobView(
        id=row.id, kind=row.kind, state=row.state, parent_job_id=row.parent_job_id or "",
        enqueued_at=row.created_at, attempt=int(row.attempt), queue=row.queue, priority=int(row.priority),
        max_attempts=int(row.max_attempts), scheduled_at=row.scheduled_at, finalized_at=row.finalized_at,
        executor_class=row.executor_class or "", unique_key=row.unique_key, unique_active_key=row.unique_active_key,
        tags=list(row.tags or []), args=row.args, request_id=metadata.get("request_id"),
    )


def run_view(row: Any) -> JobRunView:
    return JobRunView(
        id=row.id, outcome=row.outcome, executor_class=row.executor_class or "", started_at=row.started_at,
        finished_at=row.finished_at, error=row.error_message, output=row.output,
        attempt=int(row.attempt), executor_id=row.executor_id, error_class=row.error_class,
        duration_ms=row.duration_ms, cost_micros=row.cost_micros, enqueued_children=int(row.enqueued_children or 0),
    )


def _live(db: Database) -> Any:
    """A query over every job (deleting a job deletes its row: there is no soft delete)."""
    return db.Job.select()


@translate_db_errors
def find_job(db: Database, job_id: str) -> JobView:
    """The job with ``job_id``; ``JobNotFound`` when there is none."""
    check_text(job_id, "job_id")
    row = _live(db).where(db.Job.id == job_id).first()
    if row is None:
        raise JobNotFound(job_id)
    return job_view(row)


@translate_db_errors
def list_jobs(db: Database, *, state: str | JobState | None = None, kind: str | None = None,
              queue: str | None = None, limit: int = 50) -> list[JobView]:
    """Jobs newest first, optionally of one state, kind or queue."""
    Job = db.Job
    query = _live(db)
    if state is not None:
        query = query.where(Job.state == JobState(state).value)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if queue is not None:
        query = query.where(Job.queue == queue)
    return [job_view(r) for r in query.order_by(Job.created_at.desc(), Job.id.desc()).limit(max(1, limit))]


@translate_db_errors
def list_runs(db: Database, job_id: str, *, before: datetime | None = None,
              limit: int | None = None) -> list[JobRunView]:
    """A job's attempts newest first; ``before`` is a strict ``started_at`` cursor."""
    Run = db.JobRun
    check_text(job_id, "job_id")
    query = Run.select().where(Run.job_id == job_id)
    if require_aware(before, "before") is not None:
        query = query.where(Run.created_at < before)
    query = query.order_by(Run.created_at.desc(), Run.attempt.desc(), Run.id.desc())
    if limit:
        query = query.limit(limit)
    return [run_view(r) for r in query]


def _counts(db: Database, kind: str | None = None) -> dict[str, int]:
    Job = db.Job
    query = Job.select(Job.state, peewee.fn.COUNT(Job.id).alias("n"))
    if kind is not None:
        query = query.where(Job.kind == kind)
    return {row["state"]: int(row["n"]) for row in query.group_by(Job.state).dicts()}


@translate_db_errors
def overview(db: Database, *, kind: str | None = None) -> JobsOverview:
    """Job counts per state (optionally of one kind) and the total."""
    counts = _counts(db, kind)
    return JobsOverview(counts_by_state=counts, total=sum(counts.values()))


@translate_db_errors
def queue_health(db: Database) -> QueueHealth:
    """A gauge snapshot: depth by state, ready, in flight, scheduled ahead and the oldest ready job's age."""
    Job = db.Job
    now = clock.now()
    counts = _counts(db)
    claimable = _live(db).where(IS_CLAIMABLE)
    ready = claimable.where(Job.scheduled_at <= now)
    oldest = ready.select(Job.scheduled_at).order_by(Job.scheduled_at).limit(1).first()
    age = timedelta(0) if oldest is None else max(timedelta(0), now - oldest.scheduled_at)
    return QueueHealth(
        counts_by_state=counts, ready=int(ready.count()), inflight=counts.get(JobState.RUNNING.value, 0),
        scheduled_ahead=int(claimable.where(Job.scheduled_at > now).count()), oldest_ready_age=age, sampled_at=now,
    )


@translate_db_errors
def recent_failures(db: Database, *, since: datetime | None = None, limit: int = 20) -> list[FailureView]:
    """Discarded jobs newest first, each with the error of its last attempt."""
    Job, Run = db.Job, db.JobRun
    query = _live(db).where(Job.state == JobState.DISCARDED.value, Job.finalized_at.is_null(False))
    if require_aware(since, "since") is not None:
        query = query.where(Job.finalized_at >= since)
    jobs = list(query.order_by(Job.finalized_at.desc(), Job.id.desc()).limit(max(1, limit)))
    last_runs: dict[str, Any] = {}
    if jobs:
        for run in Run.select().where(Run.job_id.in_([j.id for j in jobs])).order_by(Run.attempt):
            last_runs[run.job_id] = run
    views = []
    for job in jobs:
        run = last_runs.get(job.id)
        views.append(FailureView(
            job_id=job.id, kind=job.kind, queue=job.queue,
            attempt=int(run.attempt if run is not None else job.attempt), finalized_at=job.finalized_at,
            error_class=(run.error_class or "") if run is not None else "",
            error_message=(run.error_message or "") if run is not None else ""))
    return views


@translate_db_errors
def list_active_by_kind(db: Database, kind: str) -> list[JobArgsView]:
    """Live jobs of ``kind`` with their args decoded."""
    Job = db.Job
    query = _live(db).where(Job.kind == kind, Job.state.in_(_ACTIVE)).order_by(Job.id)
    return [JobArgsView(id=r.id, kind=r.kind, state=r.state, args=dict(r.args or {})) for r in query]


@translate_db_errors
def count_active_jobs(db: Database) -> int:
    """Jobs in a non-terminal state."""
    return int(_live(db).where(db.Job.state.in_(_ACTIVE)).count())


@translate_db_errors
def count_runs(db: Database) -> int:
    """Rows in ``job_runs``."""
    return int(db.JobRun.select().count())


@translate_db_errors
def cancel_job(db: Database, job_id: str) -> JobView:
    """Cancel a live job for good. A running attempt is not interrupted, but it is fenced and told.

    ``JobTerminal`` when the job has already finished, ``JobNotFound`` when there is none.
    """
    check_text(job_id, "job_id")
    Job = db.Job
    now = clock.now()
    with db.atomic():
        changed = Job.update(
            state=JobState.CANCELLED.value, finalized_at=now, updated_at=now, leased_until=None, lease_token=None
        ).where(Job.id == job_id, Job.state.in_(_ACTIVE)).execute()
        if not changed:
            _raise_missing_or_terminal(db, job_id)
    return find_job(db, job_id)


@translate_db_errors
def retry_job(db: Database, job_id: str) -> JobView:
    """Make a job claimable now with at least one attempt left, whatever its state.

    A running attempt loses its claim (its outcome is fenced) and its run is closed now as
    ``crashed``, so the attempt that replaces it never overlaps it and a job keeps one
    success at most. ``JobNotFound`` when there is none.
    """
    check_text(job_id, "job_id")
    Job, Run = db.Job, db.JobRun
    now = clock.now()
    with db.atomic():
        changed = Job.update(
            state=JobState.AVAILABLE.value, scheduled_at=now, updated_at=now, finalized_at=None,
            leased_until=None, lease_token=None,
            max_attempts=peewee.Case(None, [(Job.max_attempts <= Job.attempt, Job.attempt + 1)], Job.max_attempts),
        ).where(Job.id == job_id).execute()
        if not changed:
            raise JobNotFound(job_id)
        Run.update(outcome=RunOutcome.CRASHED.value, finished_at=now,
                   error_message="jobs: the job was retried while this attempt ran; its outcome is fenced").where(
            Run.job_id == job_id, Run.outcome == RunOutcome.STARTED.value).execute()
        db.driver.notify(db, {Job.get_by_id(job_id).queue})
    return find_job(db, job_id)


def _raise_missing_or_terminal(db: Database, job_id: str) -> None:
    row = _live(db).where(db.Job.id == job_id).first()
    if row is None:
        raise JobNotFound(job_id)
    raise JobTerminal(job_id, row.state)


@translate_db_errors
def delete_finished_jobs(db: Database, older_than: datetime, *, batch_size: int = RETENTION_BATCH) -> int:
    """Delete terminal jobs finalised before ``older_than`` with their runs, in bounded batches.

    One transaction per batch (runs first, then jobs); a live job is never touched. Each
    batch takes the oldest finalised jobs through the ``jobs_finalized`` index, so no
    batch scans or sorts the table. Returns the number of jobs deleted.

    Where the database has row locks the batch is locked as it is selected (``FOR UPDATE SKIP
    LOCKED``): a ``retry_job`` racing the batch either waits for it (and finds the job gone)
    or holds the row first (and the batch skips it), so a revived job never loses its runs.
    Both deletes re-check that the job is still terminal.
    """
    require_aware(older_than, "older_than")
    Job, Run = db.Job, db.JobRun
    deleted = 0
    while True:
        with db.atomic():
            query = Job.select(Job.id).where(
                Job.finalized_at.is_null(False), Job.finalized_at < older_than, Job.state.in_(_TERMINAL)
            ).order_by(Job.finalized_at).limit(batch_size)
            if db.driver.capabilities.row_locks:
                query = query.for_update(skip_locked=True)
            ids = [r[0] for r in query.tuples()]
            if not ids:
                return deleted
            still_terminal = Job.select(Job.id).where(Job.id.in_(ids), Job.state.in_(_TERMINAL))
            Run.delete().where(Run.job_id.in_(still_terminal)).execute()
            deleted += int(Job.delete().where(Job.id.in_(ids), Job.state.in_(_TERMINAL)).execute())
        if len(ids) < batch_size:
            return deleted

