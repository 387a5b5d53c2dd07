"""The wire vocabulary: job states, run outcomes and error classes.

Their string values are what the database stores, so they are a stable contract
shared with go-flywheel.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A job's lifecycle state (the ``jobs.state`` column)."""

    AVAILABLE = "available"
    RUNNING = "running"
    RETRYABLE = "retryable"
    SCHEDULED = "scheduled"
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"


class RunOutcome(StrEnum):
    """What one attempt ended as (the ``job_runs.outcome`` column)."""

    STARTED = "started"
    SUCCESS = "success"
    ERROR = "error"
    SNOOZE = "snooze"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    CRASHED = "crashed"


class ErrorClass(StrEnum):
    """How a failed attempt is treated: transient and timeout retry, the others discard."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    VALIDATION = "validation"
    TIMEOUT = "timeout"

    @property
    def retries(self) -> bool:
        return self in (ErrorClass.TRANSIENT, ErrorClass.TIMEOUT)


#: The wildcard executor class: a job carrying it may be claimed by any runner.
ANY_CLASS = ""

CLAIMABLE_STATES: tuple[JobState, ...] = (JobState.AVAILABLE, JobState.RETRYABLE, JobState.SCHEDULED)
ACTIVE_STATES: tuple[JobState, ...] = (*CLAIMABLE_STATES, JobState.RUNNING)
TERMINAL_STATES: tuple[JobState, ...] = (JobState.SUCCEEDED, JobState.CANCELLED, JobState.DISCARDED)


def non_terminal_states() -> list[JobState]:
    """The states from which a job may still progress."""
    return list(ACTIVE_STATES)


def terminal_states() -> list[JobState]:
    """The states a job can no longer progress from."""
    return list(TERMINAL_STATES)
