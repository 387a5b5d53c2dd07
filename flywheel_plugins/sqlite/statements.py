"""The SQLite driver's hand-written SQL: enqueue, claim, renewal and finalisation.

peewee's query builder costs ~0.1–0.8 ms a row to render, more than SQLite takes to run
the statement, so the statements every job goes through are written out here once and
cached per shape. Their column lists come from :mod:`flywheel.storage.schema`.

Every statement here relies on the driver's locking: each write transaction is
``BEGIN IMMEDIATE``, so it holds SQLite's single write lock from its first statement and
nothing another connection does can interleave with it. That is what makes the claim's
pick-then-update safe; a database with row-level concurrency needs ``SKIP LOCKED`` or the
like instead (see ``flywheel_plugins.postgres.statements``).
"""

from __future__ import annotations

import functools
from typing import Any

from flywheel.storage.driver import CLAIM_RETURNING, FinalizePlan
from flywheel.storage.models import CLAIMABLE_SQL
from flywheel.storage.schema import JOB_COLUMNS, RUN_STUB_COLUMNS, db_value

#: SQLite's placeholder.
P = "?"


@functools.lru_cache(maxsize=64)
def insert_jobs(rows: int, returning: bool) -> str:
    """A multi-row insert of whole ``jobs`` rows that skips unique collisions.

    One statement per chunk: 500-row VALUES lists insert ~1.5x faster than a prepared
    single-row INSERT run by ``executemany`` (SQLite 3.40, Python 3.11). With ``returning``
    it names the rows that landed (a skipped row returns nothing).
    """
    one = "(" + ", ".join([P] * len(JOB_COLUMNS)) + ")"
    sql = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES {', '.join([one] * rows)} ON CONFLICT DO NOTHING"
    return sql + " RETURNING id" if returning else sql


@functools.lru_cache(maxsize=64)
def insert_run_stubs(rows: int) -> str:
    """The ``started`` run rows of a claim, in :data:`~flywheel.storage.schema.RUN_STUB_COLUMNS` order."""
    one = "(" + ", ".join([P] * len(RUN_STUB_COLUMNS)) + ")"
    return f"INSERT INTO job_runs ({', '.join(RUN_STUB_COLUMNS)}) VALUES {', '.join([one] * rows)}"


@functools.lru_cache(maxsize=64)
def claim(queues: int, by_class: bool) -> str:
    """Lease the due jobs the subquery picks, returning what a ClaimedJob needs.

    The pick and the update are one statement in a write transaction that excludes every
    other writer, so no row lock is needed. The state list is spelled as literals: SQLite
    uses the partial ``jobs_ready`` index only when the query's WHERE provably implies the
    index's predicate, and bound parameters prove nothing. ``RETURNING`` comes back in no
    particular order; the driver sorts the rows into claim order.
    """
    routing = f" AND executor_class IN ({P}, '')" if by_class else ""
    return (
        f"UPDATE jobs SET state = 'running', attempt = attempt + 1, leased_until = {P},"
        f" lease_token = {P}, updated_at = {P}"
        f" WHERE id IN (SELECT id FROM jobs"
        f" WHERE state IN ({CLAIMABLE_SQL})"
        f" AND queue IN ({', '.join([P] * queues)}) AND scheduled_at <= {P}{routing}"
        f" ORDER BY priority, scheduled_at, id LIMIT {P})"
        f" RETURNING {', '.join(CLAIM_RETURNING)}"
    )


@functools.lru_cache(maxsize=64)
def renew_leases(ids: int) -> str:
    """Extend the leases of ``ids`` jobs held under one token; returns the ids still held."""
    return (f"UPDATE jobs SET leased_until = {P}, updated_at = {P}"
            f" WHERE id IN ({', '.join([P] * ids)}) AND state = 'running' AND lease_token = {P}"
            f" RETURNING id")


@functools.lru_cache(maxsize=8)
def finalize_job(set_scheduled: bool, set_finalized: bool, bump: bool) -> str:
    """Move one job out of ``running``, fenced by its lease token (0 rows: superseded).

    Only the columns the plan changes are set, so the statement has few shapes to cache.
    """
    sets = [f"state = {P}", f"updated_at = {P}", "leased_until = NULL", "lease_token = NULL"]
    if set_scheduled:
        sets.append(f"scheduled_at = {P}")
    if set_finalized:
        sets.append(f"finalized_at = {P}")
    if bump:
        sets.append("max_attempts = max_attempts + 1")
    return f"UPDATE jobs SET {', '.join(sets)} WHERE id = {P} AND state = 'running' AND lease_token = {P}"


def finalize_job_params(plan: FinalizePlan) -> list[Any]:
    """The parameters of :func:`finalize_job` for ``plan``."""
    params: list[Any] = [plan.state.value, db_value(plan.finished_at)]
    if plan.scheduled_at is not None:
        params.append(db_value(plan.scheduled_at))
    if plan.finalized_at is not None:
        params.append(db_value(plan.finalized_at))
    return [*params, plan.job_id, plan.lease_token]


@functools.lru_cache(maxsize=4)
def finalize_run(only_if_started: bool) -> str:
    """Record an attempt's outcome on its own run row.

    ``only_if_started`` (a superseded attempt): a verdict already recorded, the sweep's or a
    release's ``crashed``, is kept, so a job has one success row at most.
    """
    guard = " AND outcome = 'started'" if only_if_started else ""
    return (
        f"UPDATE job_runs SET outcome = {P}, finished_at = {P}, duration_ms = {P},"
        f" cost_micros = {P}, enqueued_children = {P}, error_class = {P}, error_message = {P},"
        f" error_payload = {P}, output = {P} WHERE id = {P}{guard}"
    )


def finalize_run_params(plan: FinalizePlan, children: int) -> list[Any]:
    """The parameters of :func:`finalize_run` for ``plan``."""
    payload = None if plan.error_message is None else db_value({"message": plan.error_message})
    return [plan.outcome.value, db_value(plan.finished_at), plan.duration_ms, plan.cost_micros, children,
            plan.error_class, plan.error_message, payload, plan.output_json, plan.run_id]
