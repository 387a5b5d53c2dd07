"""Stdlib logging for the ``flywheel`` command, from ``[log] level`` and ``format``.

One function so that a logging plugin can own the formatter: ``configure_logging`` is the
only place the CLI touches the root logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


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
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level_number(level, verbose), handlers=[handler], force=True)
