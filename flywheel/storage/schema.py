"""The shape of the tables as the hot-path SQL sees it, derived from the models.

Drivers write the statements every job goes through by hand (a query builder costs more
to render them than the database takes to run them). The column lists those statements
name, the types of their parameters and the rendering of values to their stored form all
come from here, and so from :mod:`flywheel.storage.models`: the schema is described once.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flywheel.storage.models import Job, JobRun, to_db_time

#: Every ``jobs`` column, in the models' order: the column list of a whole-row insert.
JOB_COLUMNS: tuple[str, ...] = tuple(field.column_name for field in Job._meta.sorted_fields)
#: Each ``jobs`` column's peewee field type (``TEXT``, ``BIGINT``, ``TIMESTAMPTZ``, ``JSON``…),
#: from which a driver names its parameter types.
JOB_FIELD_TYPES: dict[str, str] = {field.column_name: field.field_type for field in Job._meta.sorted_fields}
#: The columns of a ``started`` run row written by a claim: exactly the ``job_runs`` columns
#: that cannot be NULL (the outcome's columns stay empty until the attempt is finalised).
RUN_STUB_COLUMNS: tuple[str, ...] = tuple(field.column_name for field in JobRun._meta.sorted_fields
                                          if not field.null)


def db_value(value: Any) -> Any:
    """A Python value in the form the columns store: UTC text for instants, text for JSON."""
    if isinstance(value, datetime):
        return to_db_time(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


_ROW = operator.itemgetter(*JOB_COLUMNS)
#: The columns whose values may need converting: instants, and JSON a caller passed as an object.
_CONVERTED = tuple(i for i, column in enumerate(JOB_COLUMNS) if JOB_FIELD_TYPES[column] in ("TIMESTAMPTZ", "JSON"))


def job_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The values of each row in :data:`JOB_COLUMNS` order, stored form, in one pass.

    The columns are picked in C and only the few that can hold an instant or a JSON object
    are looked at (rows from ``build_job_row`` carry JSON as text already; a batch's shared
    instants are rendered once).
    """
    rendered: dict[datetime, str] = {}
    out: list[list[Any]] = []
    append = out.append
    for row in rows:
        values = list(_ROW(row))
        for i in _CONVERTED:
            value = values[i]
            if value is not None and value.__class__ is not str:
                if isinstance(value, datetime):
                    text = rendered.get(value)
                    if text is None:
                        text = rendered[value] = to_db_time(value)
                    values[i] = text
                else:
                    values[i] = db_value(value)
        append(values)
    return out


def job_params(rows: Sequence[dict[str, Any]]) -> list[Any]:
    """:func:`job_rows` flattened: the parameters of one multi-row insert."""
    params: list[Any] = []
    for values in job_rows(rows):
        params += values
    return params
