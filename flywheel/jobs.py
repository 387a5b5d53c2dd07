"""What workers receive and return: Job, Result, FollowUp, InsertOpts and the signal exceptions."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import attrs

from flywheel.durations import to_timedelta
from flywheel.errors import ValidationError
from flywheel.storage.sanitize import require_aware

A = TypeVar("A")

DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 100
DEFAULT_MAX_ATTEMPTS = 25


def check_unique_key(value: object, option: str = "unique_key") -> None:
    """Refuse an empty or blank key: it would look like "no key" to some paths and collide on others."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValidationError("unique_key", f"{option} must be a non-empty string, not {value!r} "
                                            "(leave it out for no key)")


@attrs.frozen(kw_only=True)
class Job(Generic[A]):
    """One attempt of a job, as its worker sees it.

    ``cancelled`` is set when the attempt should stop early: its timeout passed, an
    operator cancelled the job, or the lease was lost. ``deadline`` is the instant the
    timeout expires (None without a timeout).
    """

    id: str
    kind: str
    queue: str
    args: A
    attempt: int
    max_attempts: int
    parent_job_id: str | None
    enqueued_at: datetime
    tags: list[str]
    run_id: str
    request_id: str | None
    logger: logging.LoggerAdapter[logging.Logger]
    cancelled: threading.Event = attrs.field(factory=threading.Event, eq=False, repr=False)
    deadline: datetime | None = None
    executor_class: str = ""


# attrs converters are named functions, not lambdas, so mypy knows what ``__init__`` accepts.
def _timeout(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="timeout")


def _snooze(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="snooze")


@attrs.frozen(kw_only=True)
class InsertOpts:
    """Options of one insert; None means "not set" so layers (worker defaults, call) can merge."""

    queue: str | None = None
    unique_key: str | None = None
    unique_active_key: str | None = None
    schedule_at: datetime | None = attrs.field(default=None, validator=lambda _, a, v: require_aware(v, a.name))
    parent: str | None = None
    priority: int | None = None
    executor_class: str | None = None
    max_attempts: int | None = None
    timeout: timedelta | None = attrs.field(default=None, converter=_timeout)
    request_id: str | None = None
    tags: list[str] | None = None

    def overlay(self, other: InsertOpts | None) -> InsertOpts:
        """These options with every field that ``other`` sets taking precedence."""
        if other is None:
            return self
        changes = {f.name: getattr(other, f.name) for f in attrs.fields(InsertOpts)
                   if getattr(other, f.name) is not None}
        return attrs.evolve(self, **changes)


class FollowUp:
    """A child job enqueued in the same transaction as its parent's successful finalisation.

    ``FollowUp(SomeArgs(...))`` or ``FollowUp("kind", {"json": "args"})``. With ``parent=True``
    (the default) the child records the spawning job as its parent. A unique collision is
    skipped, not fatal. Follow-ups are validated with the result, after ``work`` returns: a bad
    one (unstorable args, a naive ``schedule_at``) fails the attempt as ``permanent``, so it
    is not retried only to fail the same way.
    """

    __slots__ = (
        "args",
        "executor_class",
        "kind",
        "max_attempts",
        "parent",
        "priority",
        "queue",
        "schedule_at",
        "unique_key",
    )

    def __init__(
        self,
        target: str | object,
        args: Any = None,
        *,
        parent: bool = True,
        unique_key: str | None = None,
        schedule_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        executor_class: str | None = None,
        max_attempts: int | None = None,
    ) -> None:
        if isinstance(target, str):
            self.kind: str | None = target
            self.args: Any = {} if args is None else args
        else:
            self.kind = None  # taken from the args object's ``kind`` at finalisation
            self.args = target
        check_unique_key(unique_key)
        self.parent = parent
        self.unique_key = unique_key
        self.schedule_at = schedule_at
        self.priority = priority
        self.queue = queue
        self.executor_class = executor_class
        self.max_attempts = max_attempts

    def __repr__(self) -> str:
        return f"FollowUp(kind={self.kind!r}, args={self.args!r}, parent={self.parent})"


@attrs.frozen(kw_only=True)
class Result:
    """What a worker may return. None from ``work`` means plain success.

    Precedence when several are set: cancel, then snooze, then success.
    """

    output: Any = None
    snooze: timedelta | None = attrs.field(default=None, converter=_snooze)
    cancel: bool = False
    follow_ups: list[FollowUp] = attrs.field(factory=list)
    cost_micros: int = 0


class Permanent(Exception):
    """Raise from ``work`` to fail the attempt and discard the job without retrying."""


class Snooze(Exception):
    """Raise from ``work`` to run the job again after ``delay`` without using an attempt."""

    def __init__(self, delay: timedelta | float) -> None:
        self.delay = to_timedelta(delay, field="snooze") or timedelta(0)
        super().__init__(f"snoozed for {self.delay}")


class Cancel(Exception):
    """Raise from ``work`` to stop the job for good (state ``cancelled``)."""
