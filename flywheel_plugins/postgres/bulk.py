"""Rows as text for bulk inserts: COPY's text format, and the value conversions of a ``VALUES`` list."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import peewee

#: From this many rows, ``insert_jobs`` streams them with COPY (see :meth:`PostgresDriver.insert_jobs`).
COPY_MIN_ROWS = 200
#: Rows formatted per piece of a streamed COPY (see :class:`CopyStream`).
COPY_PIECE = 2_000


def field_default(field: peewee.Field) -> Any:
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

#: (column name, row key, peewee field type, nullable) of one COPY column.
CopyColumn = tuple[str, str, str, bool]


def copy_columns(rows: Sequence[dict[str, Any]], fields: dict[str, peewee.Field]) -> list[CopyColumn]:
    """The columns to COPY for ``rows``: a nullable column that is NULL in every row is left out
    (it defaults to NULL), decided once for the whole batch so every piece has the same columns."""
    columns = []
    for name, field in fields.items():
        if name not in rows[0]:
            continue
        if field.null:
            values = list(map(operator.itemgetter(name), rows))
            if values.count(None) == len(values):
                continue
        columns.append((field.column_name, name, field.field_type, bool(field.null)))
    return columns


def _copy_lines(rows: Sequence[dict[str, Any]], columns: Sequence[CopyColumn]) -> str:
    """``rows`` in COPY's text format, built column by column (no call per value).

    Text is escaped only in the columns where a backslash, tab or line break occurs at all.
    """
    cells: list[list[str]] = []
    for _column, name, field_type, _nullable in columns:
        values: list[Any] = list(map(operator.itemgetter(name), rows))
        if field_type == "TIMESTAMPTZ":  # a batch shares its instants: render each distinct one once
            rendered = {v: _timestamp_text(v) for v in set(values) if v is not None and type(v) is not str}
            if rendered:
                values = [rendered.get(v, v) if v is not None else None for v in values]
        elif field_type == "JSON":
            values = [v if v is None or type(v) is str
                      else json.dumps(v, separators=(",", ":")) for v in values]
        elif None in values:
            values = [v if v is None or type(v) is str else str(v) for v in values]
        else:
            values = list(map(str, values))  # str() of a str is the same object
        present = [v for v in values if v is not None] if None in values else values
        joined = "".join(present)
        if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
            values = [None if v is None else v.translate(_TSV_ESCAPES) for v in values]
        if present is not values or None in values:
            values = ["\\N" if v is None else v for v in values]
        cells.append(values)
    return "\n".join(map("\t".join, zip(*cells, strict=True))) + "\n"


class CopyStream:
    """COPY text for ``rows`` as a file psycopg2's ``copy_expert`` reads, one piece per ``read``.

    Each piece is formatted only when psycopg2 asks for it, right after it sent the previous
    one, so PostgreSQL parses and inserts piece n while Python formats piece n+1 (instead of
    waiting for the whole text to be built first).
    """

    def __init__(self, rows: Sequence[dict[str, Any]], columns: Sequence[CopyColumn],
                 piece: int = COPY_PIECE) -> None:
        self._rows, self._columns, self._piece, self._next = rows, columns, piece, 0

    def read(self, size: int = -1) -> str:
        start = self._next
        if start >= len(self._rows):
            return ""
        self._next = start + self._piece
        return _copy_lines(self._rows[start : self._next], self._columns)

    readline = read


#: Value conversion by peewee ``field_type`` (the others go to psycopg2 as they are).
CONVERTERS: dict[str, Callable[[Any], Any]] = {"TIMESTAMPTZ": _timestamp_text, "JSON": _json_text}
