"""Observer events: single frozen objects so they can gain fields without breaking plugins."""

from __future__ import annotations

from datetime import timedelta

import attrs

from flywheel.enums import ErrorClass, JobState, RunOutcome


@attrs.frozen(kw_only=True)
class ClaimEvent:
    """A non-empty batch of jobs was claimed."""

    executor_class: str
    queues: tuple[str, ...]
    claimed: int
    duration: timedelta


@attrs.frozen(kw_only=True)
class JobEvent:
    """An attempt is about to run its worker."""

    job_id: str
    run_id: str
    kind: str
    queue: str
    attempt: int


@attrs.frozen(kw_only=True)
class FinishEvent:
    """An attempt was finalised and moved its job on; ``outcome`` is what its run row records.

    ``state`` is the job's state after this attempt (``discarded`` when it failed for good).
    An attempt that had lost its lease gets a :class:`SupersedeEvent` instead, never both.
    """

    job_id: str
    run_id: str
    kind: str
    queue: str
    attempt: int
    outcome: RunOutcome
    error_class: ErrorClass | None
    error: BaseException | None
    duration: timedelta
    finalize_duration: timedelta
    state: JobState | None = None


@attrs.frozen(kw_only=True)
class RetryEvent:
    """A failed attempt was scheduled for another try (a subset of finishes)."""

    job_id: str
    run_id: str
    kind: str
    queue: str
    attempt: int
    next_attempt: int
    delay: timedelta
    error_class: ErrorClass


@attrs.frozen(kw_only=True)
class SupersedeEvent:
    """An attempt ended after losing its lease, so its outcome did not change the job.

    The sweep, an operator (cancel, retry) or a node's release moved the job on while the
    worker ran; ``outcome`` is what the worker really did (kept on its own run row).
    Sent instead of :class:`FinishEvent`: every attempt gets exactly one of the two.
    """

    job_id: str
    run_id: str
    kind: str
    queue: str
    attempt: int
    outcome: RunOutcome
    error_class: ErrorClass | None
    error: BaseException | None
    duration: timedelta
    finalize_duration: timedelta


@attrs.frozen(kw_only=True)
class SweepEvent:
    """A lease-sweep pass ended: ``reclaimed`` expired leases recovered, ``discarded`` of them for good.

    Sent after every pass, an empty or failed one included (``error`` is then the exception).
    """

    reclaimed: int
    discarded: int
    duration: timedelta
    error: BaseException | None = None
