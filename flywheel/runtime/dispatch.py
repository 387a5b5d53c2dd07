"""Running one claimed attempt: decode, call the worker, classify, and plan its finalisation.

Everything that can fail on bad data (decoding args, serialising output and follow-ups)
happens here, before the finalisation transaction, so a bad job ends as a recorded
failure instead of a transaction that can never commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import cattrs

from flywheel import clock
from flywheel.api.client import build_job_row, kind_of
from flywheel.context import request_id_scope
from flywheel.durations import to_timedelta
from flywheel.enums import ErrorClass, JobState, RunOutcome
from flywheel.errors import FlywheelError, UnknownKind, ValidationError
from flywheel.events import JobEvent
from flywheel.jobs import Cancel, FollowUp, InsertOpts, Job, Permanent, Result, Snooze
from flywheel.plugins import classify_error, emit
from flywheel.runtime import transitions
from flywheel.serde import dump_args, dumps_json, load_args, normalise_json_payload
from flywheel.storage.driver import ClaimedJob, FinalizePlan
from flywheel.storage.sanitize import clean_error

if TYPE_CHECKING:
    import pluggy

    from flywheel.registry import Registered, Registry
    from flywheel.runtime.leases import Lease, LeaseKeeper
    from flywheel.runtime.workerpool import EventLoop
    from flywheel.storage.db import Database

ERROR_MESSAGE_LIMIT = 4096
job_logger = logging.getLogger("flywheel.jobs")


class InvalidJob(FlywheelError):
    """The job cannot be run as stored: unknown or missing kind, or args that do not decode."""


@attrs.frozen(kw_only=True)
class AttemptServices:
    """What running and finalising an attempt needs from its runner, built once per run.

    Dispatch and finalisation read these instead of reaching back into the runner, so
    what an attempt depends on is written down in one place.
    """

    db: Database
    registry: Registry
    pm: pluggy.PluginManager
    #: the run's lease keeper (a runner starts a fresh one per run)
    leases: LeaseKeeper
    #: the runner's event loop for ``async def`` workers, started on first use
    event_loop: Callable[[], EventLoop]
    log: logging.Logger
    lease: timedelta
    default_timeout: timedelta | None
    retry_backoff_base: timedelta
    max_retry_backoff: timedelta


@attrs.frozen(kw_only=True)
class Attempt:
    """A finished attempt waiting to be finalised."""

    claimed: ClaimedJob
    plan: FinalizePlan
    lease: Lease
    error_class: ErrorClass | None
    error: BaseException | None
    retry_delay: timedelta | None
    duration: timedelta
    started: float


def execute(services: AttemptServices, claimed: ClaimedJob, lease: Lease, started_at: datetime) -> Attempt:
    """Run one attempt to its end and return what its finalisation must write.

    ``started_at`` is when the attempt began (its claim, or later for a prefetched one):
    its timeout and recorded duration count from it.
    """
    started = time.monotonic()
    entry = services.registry.find(claimed.kind) if claimed.kind else None
    job: Job[Any] | None = None
    result: Result | None = None
    error: BaseException | None = None
    try:
        worker, args = _resolve(entry, claimed)
        job = _job(claimed, args, lease)
        deadline = _deadline(services, worker, job, claimed, started_at)
        if deadline is not None:
            job = attrs.evolve(job, deadline=deadline)
            services.leases.set_deadline(lease, deadline)
        emit(services.pm, "flywheel_on_start", event=job_event(claimed))
        result = _call(services, worker, job, deadline)
    except BaseException as exc:  # every failure of a worker is an attempt outcome
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = exc  # SystemExit too: a worker calling sys.exit() ends its attempt, not the runner
    finished_at = clock.now()
    if error is None and lease.timed_out:
        error = JobTimeout(f"job ran past its timeout (deadline {lease.deadline})")
    return _plan(services, entry, claimed, job, result, error, lease, started_at, finished_at, started)


def _resolve(entry: Registered | None, claimed: ClaimedJob) -> tuple[Registered, Any]:
    """The worker registered for ``claimed``'s kind (``entry``, which must exist) and the args decoded for it."""
    if not claimed.kind:
        raise InvalidJob("jobs: the job has no kind")
    if entry is None:
        raise InvalidJob(str(UnknownKind(claimed.kind)))
    try:
        return entry, load_args(claimed.args, entry.args_type)
    except Exception as exc:
        raise InvalidJob(f"jobs: decode args for kind {claimed.kind!r}: {describe_decode_error(exc)}") from exc


def _job(claimed: ClaimedJob, args: Any, lease: Lease) -> Job[Any]:
    request_id = claimed.metadata.get("request_id")
    extra = {"job_id": claimed.id, "kind": claimed.kind, "attempt": claimed.attempt, "run_id": claimed.run_id,
             "request_id": request_id}
    return Job(
        id=claimed.id, kind=claimed.kind, queue=claimed.queue, args=args, attempt=claimed.attempt,
        max_attempts=claimed.max_attempts, parent_job_id=claimed.parent_job_id, enqueued_at=claimed.scheduled_at,
        tags=claimed.tags, run_id=claimed.run_id, request_id=request_id,
        logger=logging.LoggerAdapter(job_logger, extra), cancelled=lease.cancelled,
        executor_class=claimed.executor_class,
    )


def _deadline(services: AttemptServices, entry: Registered, job: Job[Any], claimed: ClaimedJob,
              started_at: datetime) -> datetime | None:
    if claimed.timeout_ms:
        timeout: timedelta | None = timedelta(milliseconds=claimed.timeout_ms)
    else:
        timeout = to_timedelta(entry.call("timeout", job), field="timeout") or services.default_timeout
    if timeout is None or timeout.total_seconds() <= 0:
        return None
    return started_at + timeout


def _call(services: AttemptServices, entry: Registered, job: Job[Any],
          deadline: datetime | None) -> Result | None:
    with request_id_scope(job.request_id):
        if not entry.is_async:
            outcome = entry.worker.work(job)
        else:
            seconds = None if deadline is None else max(0.0, (deadline - clock.now()).total_seconds())
            outcome = services.event_loop().run(_with_timeout(entry.worker.work(job), seconds, job.request_id))
            if isinstance(outcome, _Exited):
                raise outcome.error
    if outcome is not None and not isinstance(outcome, Result):
        raise TypeError(f"work() must return a flywheel.Result or None, not {type(outcome).__name__}")
    return outcome


@attrs.frozen
class _Exited:
    """A ``SystemExit`` raised by an async worker, carried out of the event loop as a value."""

    error: SystemExit


async def _catch_exit(coro: Any) -> Any:
    # A task raising SystemExit stops the loop running it (every later async job would hang).
    try:
        return await coro
    except SystemExit as exc:
        return _Exited(exc)


async def _with_timeout(coro: Any, seconds: float | None, request_id: str | None) -> Any:
    with request_id_scope(request_id):
        try:
            return await asyncio.wait_for(_catch_exit(coro), seconds)
        except TimeoutError as exc:
            raise JobTimeout(f"async job cancelled after its {seconds:.3f}s timeout") from exc


class JobTimeout(TimeoutError):
    """An attempt ran past its timeout."""


def classify(services: AttemptServices, entry: Registered | None, job: Job[Any] | None, error: BaseException,
             lease: Lease) -> ErrorClass:
    """Permanent and invalid jobs first, then the worker's ``classify``, then plugins, then transient."""
    if isinstance(error, InvalidJob):
        return ErrorClass.VALIDATION
    if isinstance(error, Permanent):
        return ErrorClass.PERMANENT
    if isinstance(error, JobTimeout) or lease.timed_out:
        return ErrorClass.TIMEOUT
    for source in ("worker", "plugins"):
        try:
            if source == "worker":
                verdict = None if entry is None else entry.call("classify", error)
            else:
                verdict = None if job is None else classify_error(services.pm, error, job)
            if verdict is not None:
                return ErrorClass(verdict)
        except Exception:  # a broken classifier must not leave the attempt unfinalised
            services.log.exception("jobs: the %s classifier failed for job %s; trying the next", source,
                                   None if job is None else job.id)
    return ErrorClass.TRANSIENT


def _plan(services: AttemptServices, entry: Registered | None, claimed: ClaimedJob, job: Job[Any] | None,
          result: Result | None, error: BaseException | None, lease: Lease, started_at: datetime,
          finished_at: datetime, started: float) -> Attempt:
    if error is None and result is None:  # work() returned None: transitions.succeeded, spelled out (hot path)
        plan = FinalizePlan(
            job_id=claimed.id, run_id=claimed.run_id, lease_token=claimed.lease_token, state=JobState.SUCCEEDED,
            scheduled_at=None, finalized_at=finished_at, bump_max_attempts=False, outcome=RunOutcome.SUCCESS,
            finished_at=finished_at, duration_ms=max(0, int((finished_at - started_at).total_seconds() * 1000)),
            error_class=None, error_message=None, output_json=None, cost_micros=0,
        )
        return Attempt(claimed=claimed, plan=plan, lease=lease, error_class=None, error=None, retry_delay=None,
                       duration=timedelta(seconds=time.monotonic() - started), started=started)
    output_json = follow_ups = None
    output = result.output if result is not None else failure_output(error)
    if output is not None or result is not None:
        try:
            output_json = None if output is None else dumps_json(output, field="output")
            if error is None and result is not None:
                follow_ups = tuple(_follow_up_rows(claimed, result.follow_ups, finished_at))
        except Exception as exc:  # a worker bug: it returned something unstorable
            output_json = None
            if error is None:
                error = Permanent(f"the worker's result cannot be stored: {exc}")
    error_class = retry_delay = None
    if isinstance(error, Cancel) or (error is None and result is not None and result.cancel):
        transition = transitions.cancelled(finished_at)
    elif isinstance(error, Snooze) or (error is None and result is not None and result.snooze is not None):
        delay = error.delay if isinstance(error, Snooze) else result.snooze  # type: ignore[union-attr]
        transition = transitions.snoozed(finished_at, delay or timedelta(0))
    elif error is not None:
        error_class = classify(services, entry, job, error, lease)
        retry_delay = _retry_delay(services, entry, job, claimed, error)
        transition = transitions.failed(finished_at, attempt=claimed.attempt, max_attempts=claimed.max_attempts,
                                        error_class=error_class, retry_delay=retry_delay)
    else:
        transition = transitions.succeeded(finished_at)
    failure = error if error is not None and not isinstance(error, (Snooze,)) else None
    message = None if failure is None else error_text(failure)
    plan = FinalizePlan(
        job_id=claimed.id, run_id=claimed.run_id, lease_token=claimed.lease_token, state=transition.state,
        scheduled_at=transition.scheduled_at, finalized_at=transition.finalized_at,
        bump_max_attempts=transition.bump_max_attempts, outcome=transition.outcome, finished_at=finished_at,
        duration_ms=max(0, int((finished_at - started_at).total_seconds() * 1000)),
        error_class=None if error_class is None else error_class.value, error_message=message,
        output_json=output_json, cost_micros=0 if result is None else int(result.cost_micros),
        follow_ups=follow_ups if transition.state is JobState.SUCCEEDED and follow_ups else (),
    )
    return Attempt(claimed=claimed, plan=plan, lease=lease, error_class=error_class, error=failure,
                   retry_delay=retry_delay if transition.state is JobState.RETRYABLE else None,
                   duration=timedelta(seconds=time.monotonic() - started), started=started)


def unstorable(attempt: Attempt, failure: BaseException) -> Attempt:
    """The attempt recorded as an ``error`` because its outcome could not be persisted.

    A plan the database refuses for a reason that is not transient would be refused
    forever; this one carries no output, no follow-ups and the refusal as its message.
    A retry stays a retry; any other outcome discards the job (its real outcome is lost,
    and running it again would hit the same wall).
    """
    plan = attempt.plan
    text = f"jobs: the attempt's {plan.outcome.value} outcome could not be stored: {error_text(failure)}"
    text = text.replace("\x00", "\\0").encode("utf-8", "replace").decode("utf-8")[:ERROR_MESSAGE_LIMIT]
    if plan.state is JobState.RETRYABLE:
        transition = transitions.Transition(state=plan.state, outcome=RunOutcome.ERROR,
                                            scheduled_at=plan.scheduled_at)
        error_class = plan.error_class
    else:
        transition = transitions.failed(plan.finished_at, attempt=attempt.claimed.attempt, max_attempts=0,
                                        error_class=ErrorClass.PERMANENT, retry_delay=timedelta(0))
        error_class = ErrorClass.PERMANENT.value
    plan = attrs.evolve(plan, state=transition.state, scheduled_at=transition.scheduled_at,
                        finalized_at=transition.finalized_at, bump_max_attempts=False, outcome=RunOutcome.ERROR,
                        error_class=error_class, error_message=text, output_json=None, follow_ups=())
    return attrs.evolve(attempt, plan=plan, error_class=None if error_class is None else ErrorClass(error_class),
                        error=failure, retry_delay=None)


def _retry_delay(services: AttemptServices, entry: Registered | None, job: Job[Any] | None, claimed: ClaimedJob,
                 error: BaseException) -> timedelta:
    if entry is not None and job is not None:
        try:
            custom = to_timedelta(entry.call("next_retry", job, error), field="next_retry")
        except Exception:  # a broken next_retry falls back to the runner's backoff
            services.log.exception("jobs: next_retry failed for job %s; using the default backoff", job.id)
            custom = None
        if custom is not None and custom.total_seconds() > 0:
            return custom
    return transitions.backoff(claimed.attempt, services.retry_backoff_base, services.max_retry_backoff)


def _follow_up_rows(parent: ClaimedJob, follow_ups: list[FollowUp], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for follow_up in follow_ups:
        if not isinstance(follow_up, FollowUp):
            raise ValidationError("follow_ups", f"must hold FollowUp objects, not {type(follow_up).__name__}")
        if follow_up.kind is None:
            kind, args_json = kind_of(follow_up.args), dump_args(follow_up.args)
        else:
            kind, args_json = follow_up.kind, normalise_json_payload(follow_up.args, field="args")
        opts = InsertOpts(
            queue=follow_up.queue, unique_key=follow_up.unique_key, schedule_at=follow_up.schedule_at,
            parent=parent.id if follow_up.parent else None, priority=follow_up.priority,
            executor_class=follow_up.executor_class, max_attempts=follow_up.max_attempts,
            request_id=parent.metadata.get("request_id"),
        )
        rows.append(build_job_row(kind, args_json, opts, now))
    return rows


def failure_output(error: BaseException | None) -> Any:
    """The ``output`` an exception raised from ``work`` carries, stored on its failed run.

    A worker that fails after producing something worth keeping (a command's exit code
    and captured streams, an HTTP status and body) raises an exception with an
    ``output`` attribute; the run row records it like a successful result's output.
    """
    return None if error is None else getattr(error, "output", None)


def describe_decode_error(exc: BaseException) -> str:
    """cattrs' nested errors as one line naming each bad field."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return f"{type(exc).__name__}: {exc}"


def error_text(error: BaseException) -> str:
    """``Type: message``, made storable and bounded with a marker (:func:`flywheel.storage.sanitize.clean_error`)."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, InvalidJob):
        text = str(error)
    return clean_error(text) or ""


def job_event(claimed: ClaimedJob) -> JobEvent:
    """The ``flywheel_on_start`` event of ``claimed``'s attempt."""
    return JobEvent(job_id=claimed.id, run_id=claimed.run_id, kind=claimed.kind, queue=claimed.queue,
                    attempt=claimed.attempt)
