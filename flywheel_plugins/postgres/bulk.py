"""Rows as text for bulk inserts: COPY's text format, and the value conversions of a ``VALUES`` list."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import peewee

#: From this many rows, ``insert_jobs`` streams them with COPY (see :meth:`PostgresDriver.insert_jobs`).
COPY_MIN_ROWS = 200
#: Rows per COPY message.
COPY_PIECE = 10_000


def _default(field: peewee.Field) -> Any:
    default = field.default
    return default() if callable(default) else default


def _timestamp_text(value: Any) -> Any:
    """An instant as ISO text (naive means UTC); PostgreSQL casts it to timestamptz."""
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo is not None else value.isoformat() + "+00:00"
    return value


def _json_text(value: Any) -> Any:
    """JSON text for a ``jsonb`` column (a ``str`` is already JSON, as in the models' JSONField)."""
    return value if value is None or isinstance(value, str) else json.dumps(value, separators=(",", ":"))


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: Sequence[dict[str, Any]], columns: list[tuple[str, str, str, bool]]) -> tuple[list[str], str]:
    """``rows`` in COPY's text format, built column by column (no call per value).

    A nullable column that is NULL in every row is left out (it defaults to NULL). Text is
    escaped only in the columns where a backslash, tab or line break occurs at all.
    """
    names: list[str] = []
    cells: list[list[str]] = []
    for column, name, field_type, nullable in columns:
        values: list[Any] = [row[name] for row in rows]
        if nullable and values.count(None) == len(values):
            continue
        if field_type == "TIMESTAMPTZ":
            values = [v if v is None or type(v) is str  # noqa: E721 - exact type on the hot path
                      else v.isoformat() if v.tzinfo is not None else v.isoformat() + "+00:00" for v in values]
        elif field_type == "JSON":
            values = [v if v is None or type(v) is str  # noqa: E721
                      else json.dumps(v, separators=(",", ":")) for v in values]
        else:
            values = [v if v is None or type(v) is str else str(v) for v in values]  # noqa: E721
        present = [v for v in values if v is not None] if None in values else values
        joined = "".join(present)
        if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
            values = [None if v is None else v.translate(_TSV_ESCAPES) for v in values]
        if present is not values or None in values:
            values = ["\\N" if v is None else v for v in values]
        names.append(column)
        cells.append(values)
    return names, "".join([line + "\n" for line in map("\t".join, zip(*cells, strict=True))])


#: Value conversion by peewee ``field_type`` (the others go to psycopg2 as they are).
_CONVERTERS: dict[str, Callable[[Any], Any]] = {"TIMESTAMPTZ": _timestamp_text, "JSON": _json_text}
