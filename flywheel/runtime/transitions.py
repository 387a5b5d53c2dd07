"""The state machine: what one attempt's result does to its job (go-flywheel §3.5).

Pure functions, no I/O, so every transition is testable on its own. Precedence when a
worker signals several things: cancel, then snooze, then error, then success.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import attrs

from flywheel.enums import ErrorClass, JobState, RunOutcome


@attrs.frozen(kw_only=True)
class Transition:
    """The job columns and the run outcome an attempt's result leads to."""

    state: JobState
    outcome: RunOutcome
    scheduled_at: datetime | None = None
    finalized_at: datetime | None = None
    bump_max_attempts: bool = False


def succeeded(finished_at: datetime) -> Transition:
    return Transition(state=JobState.SUCCEEDED, outcome=RunOutcome.SUCCESS, finalized_at=finished_at)


def cancelled(finished_at: datetime) -> Transition:
    return Transition(state=JobState.CANCELLED, outcome=RunOutcome.CANCELLED, finalized_at=finished_at)


def snoozed(finished_at: datetime, delay: timedelta) -> Transition:
    """Run again after ``delay``; ``max_attempts`` grows by one so the snooze costs no attempt."""
    return Transition(
        state=JobState.SCHEDULED, outcome=RunOutcome.SNOOZE,
        scheduled_at=finished_at + max(delay, timedelta(0)), bump_max_attempts=True,
    )


def failed(
    finished_at: datetime, *, attempt: int, max_attempts: int, error_class: ErrorClass, retry_delay: timedelta
) -> Transition:
    """An error: retry after ``retry_delay`` while the class retries and attempts remain."""
    outcome = RunOutcome.TIMEOUT if error_class is ErrorClass.TIMEOUT else RunOutcome.ERROR
    if error_class.retries and attempt < max_attempts:
        return Transition(state=JobState.RETRYABLE, outcome=outcome, scheduled_at=finished_at + retry_delay)
    return Transition(state=JobState.DISCARDED, outcome=outcome, finalized_at=finished_at)


def backoff(attempt: int, base: timedelta, ceiling: timedelta, *, rng: random.Random | None = None) -> timedelta:
    """The delay before retrying after failed attempt ``attempt`` (1-based).

    ``min(base * 2^(attempt-1), ceiling)``, then ±25 % jitter (applied after the cap, so
    retries of many jobs that failed together spread out).
    """
    exponent = max(0, attempt - 1)
    seconds = base.total_seconds()
    rung = seconds if exponent == 0 else min(seconds * 2.0 ** min(exponent, 64), ceiling.total_seconds())
    jitter = (rng or random).uniform(0.75, 1.25)
    return timedelta(seconds=rung * jitter)
