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
LEVELS = ("debug", "info", "warning", "error", "critical")


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
        data: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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
    """``2026-01-01 12:00:00,000 INFO    flywheel.node: message``, for a person reading a terminal."""

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


def level_number(level: str, verbose: int = 0) -> int:
    """The stdlib level of a ``[log] level`` name; ``-v`` lowers it to INFO, ``-vv`` to DEBUG."""
    number = logging.getLevelName("WARNING" if level.lower() == "warn" else level.upper())
    number = number if isinstance(number, int) else logging.INFO
    if verbose:
        number = min(number, logging.DEBUG if verbose > 1 else logging.INFO)
    return number


def configure_logging(level: str = "warning", fmt: str = "text", *, verbose: int = 0,
                      stream: IO[str] | None = None) -> None:
    """Send the root logger to stderr at ``level`` in ``fmt`` (``text`` or ``json``), replacing earlier setup."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    logging.basicConfig(level=level_number(level, verbose), handlers=[handler], force=True)
