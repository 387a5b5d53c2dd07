"""The SQL of the claim, lease renewal, finalisation and the sweep, and the small functions that
fill in their parameters and read their rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flywheel.storage.driver import CLAIM_RETURNING, ClaimRequest, FinalizePlan
from flywheel.storage.models import CLAIMABLE_SQL, to_db_time
from flywheel.storage.schema import JOB_COLUMNS, JOB_FIELD_TYPES, RUN_STUB_COLUMNS
from flywheel_plugins.postgres.listener import CHANNEL_SQL

#: PostgreSQL's type for each peewee field type of the models (the rest are ``text``).
_PG_TYPES = {"TIMESTAMPTZ": "timestamptz", "JSON": "jsonb", "BIGINT": "bigint"}
#: The parameter types of the prepared single-job insert, column by column (:data:`JOB_COLUMNS`).
_JOB_TYPES = [_PG_TYPES.get(JOB_FIELD_TYPES[column], "text") for column in JOB_COLUMNS]
#: One job and its wake-up in one statement, prepared once per connection: the row is inserted
#: (a unique collision skips it) and, only if it landed, its queue's channel is notified (at
#: commit). Returns the id when the row landed, nothing otherwise.
ENQUEUE_ONE_PREPARE = (
    f"PREPARE flywheel_enqueue_one ({', '.join(_JOB_TYPES)}) AS\n"
    f"WITH ins AS (INSERT INTO jobs ({', '.join(JOB_COLUMNS)})\n"
    f"    VALUES ({', '.join(f'${i}' for i in range(1, len(JOB_COLUMNS) + 1))})\n"
    f"    ON CONFLICT DO NOTHING RETURNING id, queue)\n"
    f"SELECT id, pg_notify({CHANNEL_SQL.format(q='queue')}, '') FROM ins"
)
ENQUEUE_ONE_EXECUTE = f"EXECUTE flywheel_enqueue_one ({', '.join(['%s'] * len(JOB_COLUMNS))})"


#: The claim, in one round trip. ``{due}`` is :data:`_DUE_ONE_QUEUE` or
#: :data:`_DUE_QUEUES`, completed by :func:`claim_sql`; every value is a bound parameter.
CLAIM_SQL = """
WITH due AS ({due}
), claimed AS (
    -- Lease them: one token for the whole batch (every later write is fenced by id AND token).
    UPDATE jobs
    SET state = 'running', attempt = jobs.attempt + 1, leased_until = {lease_until},
        lease_token = %(token)s, updated_at = %(now)s::timestamptz
    FROM due WHERE jobs.id = due.id
    RETURNING {returned}
), numbered AS (
    -- UPDATE ... RETURNING comes back in no particular order: number the rows in claim order
    -- and pair the n-th with the n-th run id the kernel minted.
    SELECT claimed.*, run.id AS run_id
    FROM (SELECT *, row_number() OVER (ORDER BY priority, scheduled_at, id) AS n FROM claimed) AS claimed
    JOIN unnest(%(run_ids)s::text[]) WITH ORDINALITY AS run (id, n) ON run.n = claimed.n
), runs AS (
    -- The attempts' 'started' audit rows, in the same statement (and so the same commit);
    -- the values follow schema.RUN_STUB_COLUMNS.
    INSERT INTO job_runs ({run_stub_columns})
    SELECT run_id, id, attempt, %(executor_class)s, %(executor_id)s, %(now)s::timestamptz, 'started',
           0, %(now)s::timestamptz
    FROM numbered
)
SELECT * FROM numbered ORDER BY n
"""

#: The due rows of one queue, in claim order. The predicate repeats the jobs_ready index's
#: own (state IN claimable), so the planner can use that partial
#: index; its key (queue, priority, scheduled_at, id) yields the rows already in claim order,
#: so LIMIT stops after n entries and an empty poll is one index probe. The executor class
#: is a cheap filter on the rows, deliberately not an index column. SKIP LOCKED steps over
#: rows another claimer holds: claimers never wait on one another, never take the same row.
_DUE_ONE_QUEUE = """
    SELECT id FROM jobs
    WHERE state IN ({claimable})
      AND queue = %(queue)s AND scheduled_at <= {due_at}{class_filter}
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED"""

#: Several queues: ``queue = ANY(...)`` would scan every ready row of those queues and sort
#: them. Instead, the same ordered, locking index scan runs once per queue (LATERAL) and the
#: best n of the candidates are kept. Candidates beyond the n stay locked only until this
#: statement commits; other claimers skip them meanwhile, which is harmless.
_DUE_QUEUES = """
    SELECT candidate.id FROM unnest(%(queues)s::text[]) AS q (queue)
    CROSS JOIN LATERAL (
        SELECT id, priority, scheduled_at FROM jobs
        WHERE state IN ({claimable})
          AND queue = q.queue AND scheduled_at <= {due_at}{class_filter}
        ORDER BY priority, scheduled_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS candidate
    ORDER BY candidate.priority, candidate.scheduled_at, candidate.id
    LIMIT %(limit)s"""


#: "Now" and a lease's end on the database's clock (:func:`claim_sql` with ``db_clock``): every
#: node compares leases and due times with the one clock they share, whatever its own says.
_DB_NOW = "now()"
_DB_LEASE_END = "now() + %(lease_s)s * interval '1 second'"
_NODE_NOW = "%(now)s::timestamptz"


def claim_sql(request: ClaimRequest, *, db_clock: bool = False) -> tuple[str, dict[str, Any]]:
    """The claim statement and its parameters for ``request`` (also used by the EXPLAIN test).

    With ``db_clock`` the jobs due are those due by the database's clock and the lease ends
    ``request.lease_until - request.now`` after it; otherwise both come from ``request``.
    """
    queues = list(dict.fromkeys(request.queues))
    class_filter = "" if request.claim_any_class else "\n          AND executor_class IN (%(executor_class)s, '')"
    due = (_DUE_ONE_QUEUE if len(queues) == 1 else _DUE_QUEUES).format(
        claimable=CLAIMABLE_SQL, class_filter=class_filter, due_at=_DB_NOW if db_clock else _NODE_NOW)
    sql = CLAIM_SQL.format(due=due, returned=", ".join(f"jobs.{c}" for c in CLAIM_RETURNING),
                            run_stub_columns=", ".join(RUN_STUB_COLUMNS),
                            lease_until=_DB_LEASE_END if db_clock else "%(lease_until)s::timestamptz")
    params = {
        "queue": queues[0] if queues else None,
        "queues": queues,
        "now": to_db_time(request.now),
        # never lease more rows than there are run ids for (a row without one would be orphaned)
        "limit": min(request.limit, len(request.run_ids)),
        "lease_until": to_db_time(request.lease_until),
        "lease_s": (request.lease_until - request.now).total_seconds(),
        "token": request.lease_token,
        "run_ids": list(request.run_ids[: request.limit]),
        "executor_class": request.executor_class,
        "executor_id": request.executor_id,
    }
    return sql, params


#: Lease renewal; ``{until}`` is the node's ``%(until)s`` or, on the database's clock, ``now()``
#: plus the lease (see :func:`renew_sql`).
_RENEW_SQL = """
UPDATE jobs SET leased_until = {until}, updated_at = %(now)s::timestamptz
FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS lease (id, token)
WHERE jobs.id = lease.id AND jobs.state = 'running' AND jobs.lease_token = lease.token
RETURNING jobs.id
"""


def renew_sql(*, db_clock: bool) -> str:
    """The renewal statement: the lease ends ``%(lease_s)s`` after the database's now, or at ``%(until)s``."""
    return _RENEW_SQL.format(until=_DB_LEASE_END if db_clock else "%(until)s::timestamptz")

#: Fenced finalisation of a group of attempts. ``plan`` unnests the arrays of
#: :func:`plan_arrays`; the ``jobs`` update only touches rows still running under the
#: attempt's own lease token, and returns the ids it changed (the others were superseded:
#: cancelled, retried or swept while the attempt ran). Superseded attempts still write their
#: own run row. Matches the SQLite driver's ``fence_jobs``/``record_runs`` column for column.
_PLAN_CTE = """
plan AS (
    SELECT * FROM unnest(
        %(job_id)s::text[], %(run_id)s::text[], %(lease_token)s::text[], %(state)s::text[],
        %(scheduled_at)s::timestamptz[], %(finalized_at)s::timestamptz[], %(bump)s::boolean[],
        %(outcome)s::text[], %(finished_at)s::timestamptz[], %(duration_ms)s::bigint[],
        %(error_class)s::text[], %(error_message)s::text[], %(output)s::text[], %(cost_micros)s::bigint[],
        %(children)s::bigint[], %(current)s::boolean[]
    ) AS p (job_id, run_id, lease_token, state, scheduled_at, finalized_at, bump, outcome, finished_at,
            duration_ms, error_class, error_message, output, cost_micros, children, current)
)"""
_FENCE_SQL = """
    UPDATE jobs
    SET state = plan.state, updated_at = plan.finished_at, leased_until = NULL, lease_token = NULL,
        scheduled_at = coalesce(plan.scheduled_at, jobs.scheduled_at),
        finalized_at = coalesce(plan.finalized_at, jobs.finalized_at),
        max_attempts = jobs.max_attempts + CASE WHEN plan.bump THEN 1 ELSE 0 END
    FROM plan
    WHERE jobs.id = plan.job_id AND jobs.state = 'running' AND jobs.lease_token = plan.lease_token
    RETURNING jobs.id"""
_RUNS_SQL = """
    UPDATE job_runs
    SET outcome = plan.outcome, finished_at = plan.finished_at, duration_ms = plan.duration_ms,
        cost_micros = plan.cost_micros, enqueued_children = plan.children,
        error_class = plan.error_class, error_message = plan.error_message,
        error_payload = CASE WHEN plan.error_message IS NULL THEN NULL
                             ELSE jsonb_build_object('message', plan.error_message) END,
        output = plan.output::jsonb
    FROM plan
    -- a superseded attempt keeps a verdict already recorded (the sweep's or a release's 'crashed')
    WHERE job_runs.id = plan.run_id AND (job_runs.outcome = 'started' OR {current})"""
#: No follow-ups: fence the jobs and write the runs in one statement (one round trip, and
#: autocommit makes it one commit).
FINALIZE_SQL = (f"WITH {_PLAN_CTE.strip()},\nfenced AS ({_FENCE_SQL}\n),\n"
                 f"runs AS ({_RUNS_SQL.format(current='plan.job_id IN (SELECT id FROM fenced)')}\n)\n"
                 "SELECT id FROM fenced")
#: With follow-ups: fence first, insert the follow-ups of the attempts that were current, then
#: write the runs with their children counts (``plan.current`` says which were not superseded).
FENCE_ONLY_SQL = f"WITH {_PLAN_CTE.strip()}\n{_FENCE_SQL.strip()}"
RUNS_ONLY_SQL = f"WITH {_PLAN_CTE.strip()}\n{_RUNS_SQL.format(current='plan.current').strip()}"

#: The sweep's batch of expired leases, locked; ``{at}`` is the node's ``%(now)s`` or the
#: database's ``now()``, which the statement also returns (see :func:`sweep_sql`).
_SWEEP_SQL = """
SELECT id, attempt, max_attempts, {at} AS swept_at FROM jobs
WHERE state = 'running' AND leased_until < {at}
ORDER BY leased_until
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""


def sweep_sql(*, db_clock: bool) -> str:
    """The sweep's select: leases expired by the database's clock, or by the node's ``%(now)s``."""
    return _SWEEP_SQL.format(at=_DB_NOW if db_clock else _NODE_NOW)


def plan_arrays(
    plans: Sequence[FinalizePlan], children: dict[str, int], current: set[str] | None = None
) -> dict[str, list[Any]]:
    def ts(value: datetime | None) -> str | None:
        return None if value is None else to_db_time(value)

    return {
        "job_id": [p.job_id for p in plans],
        "run_id": [p.run_id for p in plans],
        "lease_token": [p.lease_token for p in plans],
        "state": [p.state.value for p in plans],
        "scheduled_at": [ts(p.scheduled_at) for p in plans],
        "finalized_at": [ts(p.finalized_at) for p in plans],
        "bump": [bool(p.bump_max_attempts) for p in plans],
        "outcome": [p.outcome.value for p in plans],
        "finished_at": [ts(p.finished_at) for p in plans],
        "duration_ms": [p.duration_ms for p in plans],
        "error_class": [p.error_class for p in plans],
        "error_message": [p.error_message for p in plans],
        "output": [p.output_json for p in plans],
        "cost_micros": [p.cost_micros for p in plans],
        "children": [children.get(p.run_id, 0) for p in plans],
        "current": [current is not None and p.job_id in current for p in plans],
    }
