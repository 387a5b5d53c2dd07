"""How the commands print: aligned tables for people, JSON for machines, times in local time with the zone."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import click


def local_time(value: datetime | None, *, seconds: bool = True) -> str:
    """``2026-01-02 15:04:05 CET``: the instant in this machine's zone, with the zone shown; ``-`` for None."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def age(value: timedelta | None) -> str:
    """A duration rounded for people: ``none``, ``850ms``, ``42s``, ``3m12s``, ``5h2m``, ``2d3h``."""
    if value is None or value <= timedelta(0):
        return "none"
    total = value.total_seconds()
    if total < 1:
        return f"{round(total * 1000)}ms"
    s = int(total)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size}{unit}{rest}{sub}" if rest else f"{s // size}{unit}"
    return f"{s}s"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart (the last column is not padded)."""
    cells = [list(headers)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str) -> None:
    rows = list(rows)
    click.echo(table(headers, rows) if rows else empty)


def echo_json(value: Any) -> None:
    """Indented JSON on stdout (views through their ``to_json()``)."""
    click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=False))


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1_000_000_000)
    return value


def json_option(fn: Any) -> Any:
    """The ``--json`` flag every listing takes."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def short(text: str | None, width: int = 80) -> str:
    """One line of at most ``width`` characters (an ellipsis marks a cut)."""
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"
