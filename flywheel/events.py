"""Observer events: single frozen objects so they can gain fields without breaking plugins."""

from __future__ import annotations

from datetime import timedelta

import attrs

from flywheel.enums import ErrorClass, RunOutcome


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
    """An attempt was finalised; ``outcome`` is what was persisted on its run row.

    ``superseded`` is True when the attempt had lost its lease (the sweep, an operator or
    another claim moved the job on), so its outcome did not change the job.
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
    superseded: bool = False


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
