"""Portable SQL for the hot path: enqueue, claim and finalise.

peewee's query builder costs ~0.1–0.8 ms a row to render, more than SQLite takes to run
the statement, so the few statements every job goes through are written out here once,
in SQL that SQLite (3.35+) and PostgreSQL both accept, and rendered with the database's
own placeholder. Values are converted to their stored form with the models' own helpers.

The claim spells its state list as literals: SQLite uses a partial index only when the
query's WHERE clause provably implies the index's, and bound parameters prove nothing.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flywheel.storage.models import CLAIMABLE_SQL, to_db_time

JOB_COLUMNS = (
    "id", "created_at", "updated_at", "metadata", "kind", "queue", "args", "priority", "state", "attempt",
    "max_attempts", "timeout_ms", "scheduled_at", "leased_until", "lease_token", "unique_key", "unique_active_key",
    "parent_job_id", "executor_class", "finalized_at", "tags", "deleted_at",
)
RUN_STUB_COLUMNS = ("id", "job_id", "attempt", "executor_class", "executor_id", "started_at", "outcome",
                    "enqueued_children", "created_at")
CLAIM_RETURNING = ("id", "kind", "queue", "args", "attempt", "max_attempts", "timeout_ms", "parent_job_id", "tags",
                   "scheduled_at", "metadata", "executor_class", "priority")


def db_value(value: Any) -> Any:
    """A Python value in the form the columns store: UTC text for instants, text for JSON."""
    if isinstance(value, datetime):
        return to_db_time(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


@functools.lru_cache(maxsize=64)
def insert_jobs(param: str, rows: int, returning: bool) -> str:
    """A multi-row insert of whole ``jobs`` rows that skips unique collisions.

    With ``returning`` it names the rows that landed (a skipped row returns nothing).
    """
    one = "(" + ", ".join([param] * len(JOB_COLUMNS)) + ")"
    sql = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES {', '.join([one] * rows)} ON CONFLICT DO NOTHING"
    return sql + " RETURNING id" if returning else sql


_JOB_TIMES = frozenset({"created_at", "updated_at", "scheduled_at", "leased_until", "finalized_at", "deleted_at"})
_ROW = operator.itemgetter(*JOB_COLUMNS)
#: The columns whose values may need converting: instants, and JSON a caller passed as an object.
_CONVERTED = tuple(i for i, c in enumerate(JOB_COLUMNS) if c in _JOB_TIMES or c in ("metadata", "args", "tags"))


def job_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The values of each row in :data:`JOB_COLUMNS` order, stored form, in one pass: the columns
    are picked in C and only the few that can hold an instant or a JSON object are looked at
    (rows from ``build_job_row`` carry JSON as text already; a batch's shared instants are
    rendered once)."""
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
    """The parameters of :func:`insert_jobs`: :func:`job_rows` flattened."""
    params: list[Any] = []
    for values in job_rows(rows):
        params += values
    return params


@functools.lru_cache(maxsize=64)
def insert_run_stubs(param: str, rows: int) -> str:
    one = "(" + ", ".join([param] * len(RUN_STUB_COLUMNS)) + ")"
    return f"INSERT INTO job_runs ({', '.join(RUN_STUB_COLUMNS)}) VALUES {', '.join([one] * rows)}"


@functools.lru_cache(maxsize=64)
def claim(param: str, queues: int, by_class: bool) -> str:
    """Lease the due jobs picked by the subquery; used where the write lock is exclusive (SQLite)."""
    routing = f" AND executor_class IN ({param}, '')" if by_class else ""
    return (
        f"UPDATE jobs SET state = 'running', attempt = attempt + 1, leased_until = {param},"
        f" lease_token = {param}, updated_at = {param}"
        f" WHERE id IN (SELECT id FROM jobs"
        f" WHERE state IN ({CLAIMABLE_SQL}) AND deleted_at IS NULL"
        f" AND queue IN ({', '.join([param] * queues)}) AND scheduled_at <= {param}{routing}"
        f" ORDER BY priority, scheduled_at, id LIMIT {param})"
        f" RETURNING {', '.join(CLAIM_RETURNING)}"
    )


@functools.lru_cache(maxsize=8)
def finalize_job(param: str, set_scheduled: bool, set_finalized: bool, bump: bool) -> str:
    """Move one job out of ``running``, fenced by its lease token (0 rows: superseded)."""
    sets = [f"state = {param}", f"updated_at = {param}", "leased_until = NULL", "lease_token = NULL"]
    if set_scheduled:
        sets.append(f"scheduled_at = {param}")
    if set_finalized:
        sets.append(f"finalized_at = {param}")
    if bump:
        sets.append("max_attempts = max_attempts + 1")
    return (f"UPDATE jobs SET {', '.join(sets)}"
            f" WHERE id = {param} AND state = 'running' AND lease_token = {param}")


@functools.lru_cache(maxsize=4)
def finalize_run(param: str, only_if_started: bool) -> str:
    """Record an attempt's outcome on its own run row."""
    guard = " AND outcome = 'started'" if only_if_started else ""
    return (
        f"UPDATE job_runs SET outcome = {param}, finished_at = {param}, duration_ms = {param},"
        f" cost_micros = {param}, enqueued_children = {param}, error_class = {param}, error_message = {param},"
        f" error_payload = {param}, output = {param} WHERE id = {param}{guard}"
    )


@functools.lru_cache(maxsize=64)
def renew_leases(param: str, ids: int) -> str:
    return (f"UPDATE jobs SET leased_until = {param}, updated_at = {param}"
            f" WHERE id IN ({', '.join([param] * ids)}) AND state = 'running' AND lease_token = {param}"
            f" RETURNING id")
