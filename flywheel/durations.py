"""Durations: the API takes ``timedelta`` (a number is seconds); config takes ``"30s"``."""

from __future__ import annotations

import re
import time
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def to_timedelta(value: timedelta | float | int | None, *, field: str = "duration") -> timedelta | None:
    """Normalise an API duration: None stays None, a number is seconds."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        from flywheel.errors import ValidationError  # here, not per call: dispatch calls this per job

        raise ValidationError(field, f"must be a timedelta or a number of seconds, not {value!r}")
    return timedelta(seconds=value)


def require_timedelta(value: timedelta | float | int, *, field: str) -> timedelta:
    """Like :func:`to_timedelta` for settings that must be present."""
    result = to_timedelta(value, field=field)
    assert result is not None
    return result


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """Parse ``"30s"``, ``"250ms"``, ``"1h30m"``, ``"14d"``; a bare number is seconds."""
    from flywheel.errors import ValidationError

    cleaned = text.strip().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return timedelta(seconds=float(cleaned))
    pos, total = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not cleaned or pos != len(cleaned):
        raise ValidationError(field, f"is not a duration: {text!r} (use e.g. 250ms, 30s, 5m, 24h, 14d)")
    return timedelta(seconds=total)


def duration_value(value: object, *, field: str = "duration") -> timedelta:
    """A duration as config gives it: ``"30s"`` (see :func:`parse_duration`), a number of seconds or a timedelta.

    Anything else (a bool, a list, …) raises ``ValidationError(field, …)``; the sign is the
    caller's to check.
    """
    from flywheel.errors import ValidationError

    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value, field=field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise ValidationError(field, f"must be a duration such as \"30s\", not {value!r}")


def format_duration(delta: timedelta) -> str:
    """Render a duration compactly, the inverse of :func:`parse_duration` for whole units."""
    ms = round(delta.total_seconds() * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def remaining(deadline: float | None, grace: float = 0.0) -> float | None:
    """Seconds left until a ``time.monotonic()`` deadline (0 once passed) plus ``grace``; None for none."""
    return None if deadline is None else max(0.0, deadline - time.monotonic()) + grace
