"""What the built-in workers share: their failure type, config-table parsing, the env allowlist.

A worker failure carries its error class (so a missing file is ``validation``, a listed
exit code ``permanent``) and its output (so the run row keeps the exit code and captured
streams even when the attempt failed; the kernel stores an exception's ``output``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Protocol, TypeVar

import attrs

from flywheel import clock
from flywheel.config import DEFAULT_ENV_ALLOWLIST as DEFAULT_ENV_ALLOWLIST  # re-exported
from flywheel.durations import duration_value
from flywheel.enums import ErrorClass
from flywheel.errors import ValidationError
from flywheel.jobs import Job, Snooze


class WorkerFailure(Exception):
    """A failed attempt of a built-in worker, with its class and what it produced."""

    def __init__(self, message: str, *, error_class: ErrorClass = ErrorClass.TRANSIENT, output: Any = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.output = output


class RetryLater(Snooze):
    """A snooze (the server asked us to come back later) that keeps the attempt's output."""

    def __init__(self, delay: timedelta, *, output: Any = None) -> None:
        super().__init__(delay)
        self.output = output


def classify(exc: BaseException) -> ErrorClass | None:
    """The class of a built-in worker's failure; None for anything else (left to the kernel)."""
    if isinstance(exc, WorkerFailure):
        return exc.error_class
    if isinstance(exc, ValidationError):
        return ErrorClass.VALIDATION
    return None


def env_allowlist(config: Any) -> tuple[str, ...]:
    """``config.runtime.env_allowlist`` when a config gives one, else the default list."""
    names = getattr(getattr(config, "runtime", None), "env_allowlist", None)
    return DEFAULT_ENV_ALLOWLIST if names is None else tuple(names)


def timeout_delta(seconds: float) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds and seconds > 0 else None


def time_left(job: Job[Any], seconds: float, default: float | None = None) -> float | None:
    """The job's own limit (``timeout_seconds``), cut short by the runner's deadline if that is sooner."""
    limits = [float(seconds)] if seconds and seconds > 0 else []
    if job.deadline is not None:
        limits.append(max(0.001, (job.deadline - clock.now()).total_seconds()))
    return min(limits) if limits else default


# ---------------------------------------------------------------------------
# Field converters: go-flywheel serialises empty slices and maps as null.
# ---------------------------------------------------------------------------


def strings(value: Any) -> list[str]:
    return [] if value is None else list(value)


def string_map(value: Any) -> dict[str, str]:
    return {} if value is None else dict(value)


def ints(value: Any) -> list[int]:
    return [] if value is None else list(value)


def seconds(value: Any) -> float:
    """A whole number stays an int, so the stored JSON reads ``30`` as go-flywheel writes it."""
    number = float(value or 0)
    return int(number) if number.is_integer() else number


# ---------------------------------------------------------------------------
# Config tables: ``[schedules.<worker>]`` → args, validated at load time.
# ---------------------------------------------------------------------------


class TableArgs(attrs.AttrsInstance, Protocol):
    """What a ``[schedules.<worker>]`` table becomes: an attrs class naming its kind that validates itself."""

    kind: ClassVar[str]

    def validate(self) -> None: ...


T = TypeVar("T", bound=TableArgs)


def args_from_table(cls: type[T], table: Mapping[str, Any]) -> T:
    """Build ``cls`` from a config table; a bad, unknown or missing key raises ``ValidationError``.

    ``timeout`` takes a duration (``"30s"``) and sets ``timeout_seconds``.
    """
    kind = cls.kind
    if not isinstance(table, Mapping):
        raise ValidationError(kind, f"must be a table of {kind} settings, not {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in attrs.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "timeout" and "timeout_seconds" in names:
            if "timeout_seconds" in table:
                raise ValidationError("timeout", "and timeout_seconds both set; use one")
            values["timeout_seconds"] = _duration_seconds(value)
            continue
        if key not in names:
            known = ", ".join(sorted([*names, "timeout"] if "timeout_seconds" in names else names))
            raise ValidationError(key, f"is not a {kind} setting (known: {known})")
        if not _conforms(value, hints[key]):
            raise ValidationError(key, f"must be {_describe(hints[key])}, not {value!r}")
        values[key] = value
    args = cls(**values)
    args.validate()
    return args


def _duration_seconds(value: Any) -> float:
    seconds = duration_value(value, field="timeout").total_seconds()
    if seconds < 0:
        raise ValidationError("timeout", f"must not be negative, not {value!r}")
    return seconds


_UNIONS = (typing.Union, types.UnionType)


def _conforms(value: Any, hint: Any) -> bool:
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        return any(_conforms(value, p) for p in params if p is not type(None))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, params[0]) for v in value)
    if origin is dict:
        return isinstance(value, Mapping) and all(isinstance(k, str) and _conforms(v, params[1])
                                                  for k, v in value.items())
    return True


_NAMES = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
          float: ("a non-negative number", "numbers"), str: ("a string", "strings")}


def _describe(hint: Any) -> str:
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        return " or ".join(_describe(p) for p in params if p is not type(None))
    if origin is list:
        return f"a list of {_NAMES.get(params[0], ('', str(params[0])))[1]}"
    if origin is dict:
        return f"a table of {_NAMES.get(params[1], ('', str(params[1])))[1]}"
    return _NAMES.get(hint, (str(hint), ""))[0]
