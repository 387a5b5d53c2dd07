"""The clock seam: the runtime reads "now" only through :func:`now`.

Tests swap the clock with ``with use_clock(FixedClock(t)):``; the runner copies the
context into its threads, so a clock in scope when ``run`` is called reaches them.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from flywheel.storage.sanitize import require_aware


class Clock(Protocol):
    """Anything with a ``now()`` returning an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told to move (``advance`` / ``set``); thread-safe."""

    def __init__(self, at: datetime) -> None:
        self._lock = threading.Lock()
        self._now = _as_utc(at)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, at: datetime) -> None:
        with self._lock:
            self._now = _as_utc(at)

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now


SYSTEM_CLOCK = SystemClock()
_current: contextvars.ContextVar[Clock] = contextvars.ContextVar("flywheel_clock", default=SYSTEM_CLOCK)


def current_clock() -> Clock:
    """The clock in scope."""
    return _current.get()


def now() -> datetime:
    """The current instant according to the clock in scope (aware, UTC)."""
    return _current.get().now()


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the source of "now" for the duration of the block."""
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)


def _as_utc(at: datetime) -> datetime:
    require_aware(at, "at")
    return at.astimezone(UTC)
