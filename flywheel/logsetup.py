"""Stdlib logging for flywheel: the text and JSON line formats, and the CLI's set-up.

The formatters live in the kernel (stdlib only) so the CLI and the ``logging`` plugin share
one definition; ``configure_logging`` is the only place the CLI touches the root logger.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import IO, Any

#: attributes every LogRecord has; anything else on a record came from ``extra``
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "warn", "error", "critical")  # "warn" is the stdlib's alias


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record was given through ``extra``."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, then the ``extra`` fields.

    Never a line break inside an object (a traceback goes in ``exc_info`` as one string;
    non-ASCII characters are escaped), and values JSON cannot hold are written as their
    ``str()`` (a timedelta as seconds).
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds")
        data: dict[str, Any] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            data.setdefault(key, value)
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        # ASCII only: U+2028 and its kin would otherwise split a line for some readers
        return json.dumps(data, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class TextFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,000 INFO    flywheel.runtime.node: message``, for a person reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``[log] format``: ``"text"`` or ``"json"``."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"log.format: must be one of {', '.join(FORMATS)}, not {fmt!r}")


def parse_level(level: str | int) -> int:
    """``"info"``/``"INFO"``/``20`` → 20; anything else raises ``ValueError`` naming ``log.level``."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str) and level.strip().lower() in LEVELS:
        return int(logging.getLevelName(level.strip().upper()))
    raise ValueError(f"log.level: must be one of {', '.join(LEVELS)}, not {level!r}")


def level_number(level: str | int, verbose: int = 0) -> int:
    """The stdlib level of a ``[log] level`` name; ``-v`` lowers it to INFO, ``-vv`` to DEBUG."""
    number = parse_level(level)
    if verbose:
        number = min(number, logging.DEBUG if verbose > 1 else logging.INFO)
    return number


class FlywheelHandler(logging.StreamHandler[IO[str]]):
    """The handler :func:`install_handler` adds (a class of its own, so setting up again replaces it, and only it)."""


def install_handler(level: str | int = "info", fmt: str = "text", *, stream: IO[str] | None = None,
                    logger_name: str = "") -> logging.Handler:
    """Send ``logger_name``'s records (the root's by default) at ``level`` and up to ``stream`` as ``fmt``.

    The one set-up behind the CLI's ``[log]`` and the ``logging`` plugin's ``configure``:
    a bad level or format raises ``ValueError`` naming ``log.level`` / ``log.format``; the
    handler from an earlier call is replaced, other handlers (an app's own) are left alone.
    """
    numeric = parse_level(level)
    handler = FlywheelHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    target = logging.getLogger(logger_name or None)
    for old in [h for h in target.handlers if isinstance(h, FlywheelHandler)]:
        target.removeHandler(old)
    target.addHandler(handler)
    target.setLevel(numeric)
    return handler


def configure_logging(level: str = "warning", fmt: str = "text", *, verbose: int = 0,
                      stream: IO[str] | None = None) -> logging.Handler:
    """The CLI's set-up: the root logger to stderr at ``level`` (lowered by ``-v``) in ``fmt``."""
    return install_handler(level_number(level, verbose), fmt, stream=stream)
