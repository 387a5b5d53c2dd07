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
from collections.abc import Sequence
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


#: Plans per finalisation statement at most (7 and 11 parameters a plan stay far below
#: SQLite's 32,766); a group is padded to a power of two so there are few statement shapes.
FINALIZE_CHUNK = 64


def padded(count: int) -> int:
    """The rows a finalisation statement for ``count`` plans carries: the next power of two."""
    return 1 << max(0, count - 1).bit_length()


@functools.lru_cache(maxsize=16)
def fence_jobs(rows: int) -> str:
    """Move a group of jobs out of ``running``, each fenced by its lease token; returns the ids moved.

    One statement for the group: the plans come in as a ``VALUES`` list (SQLite 3.35+:
    ``UPDATE … FROM`` and ``RETURNING``), each probing ``jobs`` by primary key. A job not
    returned was superseded (cancelled, retried or swept while its attempt ran). Padding
    rows carry a NULL id and match nothing.
    """
    values = ", ".join([f"({P}, {P}, {P}, {P}, {P}, {P}, {P})"] * rows)
    return (
        f"WITH plan (job_id, lease_token, state, finished_at, scheduled_at, finalized_at, bump) AS (VALUES {values})"
        " UPDATE jobs SET state = plan.state, updated_at = plan.finished_at, leased_until = NULL,"
        " lease_token = NULL, scheduled_at = coalesce(plan.scheduled_at, jobs.scheduled_at),"
        " finalized_at = coalesce(plan.finalized_at, jobs.finalized_at),"
        " max_attempts = jobs.max_attempts + plan.bump"
        " FROM plan WHERE jobs.id = plan.job_id AND jobs.state = 'running' AND jobs.lease_token = plan.lease_token"
        " RETURNING jobs.id"
    )


def fence_jobs_params(plans: Sequence[FinalizePlan], rows: int) -> list[Any]:
    """The parameters of :func:`fence_jobs` for ``plans``, padded to ``rows``."""
    params: list[Any] = []
    for plan in plans:
        finished = db_value(plan.finished_at)
        finalized = None if plan.finalized_at is None else (
            finished if plan.finalized_at == plan.finished_at else db_value(plan.finalized_at))
        params += [plan.job_id, plan.lease_token, plan.state.value, finished, db_value(plan.scheduled_at),
                   finalized, 1 if plan.bump_max_attempts else 0]
    return params + [None] * (7 * (rows - len(plans)))


@functools.lru_cache(maxsize=16)
def record_runs(rows: int) -> str:
    """Record a group of attempts' outcomes on their own run rows.

    A superseded attempt (``current`` 0) keeps a verdict already recorded, the sweep's or a
    release's ``crashed``, so a job has one success row at most. Padding rows match nothing.
    """
    values = ", ".join([f"({P}, {P}, {P}, {P}, {P}, {P}, {P}, {P}, {P}, {P}, {P})"] * rows)
    return (
        "WITH plan (run_id, outcome, finished_at, duration_ms, cost_micros, children, error_class,"
        f" error_message, error_payload, output, current) AS (VALUES {values})"
        " UPDATE job_runs SET outcome = plan.outcome, finished_at = plan.finished_at,"
        " duration_ms = plan.duration_ms, cost_micros = plan.cost_micros, enqueued_children = plan.children,"
        " error_class = plan.error_class, error_message = plan.error_message,"
        " error_payload = plan.error_payload, output = plan.output"
        " FROM plan WHERE job_runs.id = plan.run_id AND (plan.current OR job_runs.outcome = 'started')"
    )


def record_runs_params(plans: Sequence[FinalizePlan], current: set[str], children: dict[str, int],
                       rows: int) -> list[Any]:
    """The parameters of :func:`record_runs`: ``current`` names the jobs whose fence held."""
    params: list[Any] = []
    for plan in plans:
        payload = None if plan.error_message is None else db_value({"message": plan.error_message})
        params += [plan.run_id, plan.outcome.value, db_value(plan.finished_at), plan.duration_ms, plan.cost_micros,
                   children.get(plan.run_id, 0), plan.error_class, plan.error_message, payload, plan.output_json,
                   1 if plan.job_id in current else 0]
    return params + [None] * (11 * (rows - len(plans)))
