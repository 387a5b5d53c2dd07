"""The dashboard's own reads: the ones the kernel's inspection functions cannot answer fast on a big table.

The kernel's ``overview`` and ``queue_health`` count every row, which takes far longer
than a page may on a million jobs. Here counts are *capped*: an index-only scan stops
after :data:`EXACT_CAP` rows, so small numbers (running, ready, discarded today) are
exact, and a count at the cap is replaced by the planner's estimate on PostgreSQL
(shown as "≈"). Lists are keyset-paginated by id (ids are UUIDv7, so id order is
insertion order) and never use ``OFFSET``. Every statement is written so SQLite and
PostgreSQL accept it; the two differences (minute buckets, estimates) are methods that
:class:`PostgresQueries` overrides.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from flywheel import clock
from flywheel.enums import JobState
from flywheel.models import CLAIMABLE_SQL, from_db_time, to_db_time

if TYPE_CHECKING:
    from flywheel.db import Database

#: Below this many rows a count is exact; at it, PostgreSQL's estimate takes over.
EXACT_CAP = 1000
#: Minutes of history in the throughput chart.
CHART_MINUTES = 60
#: The final states a job reaches, in the chart's stacking order.
OUTCOMES = (JobState.SUCCEEDED.value, JobState.DISCARDED.value, JobState.CANCELLED.value)
STATES = tuple(s.value for s in JobState)
_LIST_COLUMNS = ("id", "kind", "queue", "state", "attempt", "max_attempts", "priority", "created_at",
                 "scheduled_at", "finalized_at")
_READY = f"state IN ({CLAIMABLE_SQL}) AND deleted_at IS NULL"


@attrs.frozen(kw_only=True)
class Count:
    """A row count; ``exact`` is False when it is the planner's estimate."""

    value: int
    exact: bool = True


@attrs.frozen(kw_only=True)
class JobRow:
    """One line of the jobs list (no args: a list never decodes payloads)."""

    id: str
    kind: str
    queue: str
    state: str
    attempt: int
    max_attempts: int
    priority: int
    created_at: datetime
    scheduled_at: datetime | None
    finalized_at: datetime | None


@attrs.frozen(kw_only=True)
class JobPage:
    """A page of jobs and the cursors around it (None at either end)."""

    rows: list[JobRow]
    older: str | None
    newer: str | None


@attrs.frozen(kw_only=True)
class QueueRow:
    """One active queue: jobs ready now, scheduled ahead, running, and its oldest ready job's age."""

    queue: str
    ready: Count
    scheduled_ahead: Count
    running: Count
    lag: timedelta


@attrs.frozen(kw_only=True)
class Snapshot:
    """What the overview shows."""

    states: dict[str, Count]
    ready: Count
    inflight: Count
    lag: timedelta
    throughput: list[tuple[datetime, dict[str, int]]]
    sampled_at: datetime


class PortableQueries:
    """Reads in SQL both dialects accept; counts at :data:`EXACT_CAP` are reported as "at least"."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.p = db.pw.param

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.db.pw.execute_sql(sql, params).fetchall())

    # -- counts ------------------------------------------------------------------

    def count(self, where: str, params: tuple[Any, ...] = ()) -> Count:
        """Rows of ``jobs`` matching ``where``: exact below the cap, else :meth:`estimate`."""
        sql = f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {where} LIMIT {EXACT_CAP}) capped"
        value = int(self._rows(sql, params)[0][0])
        return Count(value=value) if value < EXACT_CAP else self.estimate(where, params)

    def estimate(self, where: str, params: tuple[Any, ...]) -> Count:
        """What to show for a count at the cap. SQLite has no cheap estimate: count it exactly."""
        return Count(value=int(self._rows(f"SELECT count(*) FROM jobs WHERE {where}", params)[0][0]))

    def state_counts(self) -> dict[str, Count]:
        # One literal per state: the jobs_state index is partial, and only a literal proves its predicate.
        return {state: self.count(f"state = '{state}' AND deleted_at IS NULL") for state in STATES}

    # -- overview ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now = clock.now()
        ts = to_db_time(now)
        states = self.state_counts()
        return Snapshot(
            states=states, ready=self.count(f"{_READY} AND scheduled_at <= {self.p}", (ts,)),
            inflight=states[JobState.RUNNING.value], lag=self.lag(now), throughput=self.throughput(now),
            sampled_at=now)

    def lag(self, now: datetime, queue: str | None = None) -> timedelta:
        """How long the oldest ready job (of ``queue``) has waited past its scheduled time."""
        sql = f"SELECT min(scheduled_at) FROM jobs WHERE {_READY} AND scheduled_at <= {self.p}"
        params: list[Any] = [to_db_time(now)]
        if queue is not None:
            sql += f" AND queue = {self.p}"
            params.append(queue)
        oldest = from_db_time(self._rows(sql, params)[0][0])
        return timedelta(0) if oldest is None else max(timedelta(0), now - oldest)

    def minute(self, column: str) -> str:
        """SQL truncating a stored instant to its minute (text form ``YYYY-MM-DD HH:MM``)."""
        return f"substr({column}, 1, 16)"

    def throughput(self, now: datetime) -> list[tuple[datetime, dict[str, int]]]:
        """Jobs finalised per minute by final state over the last :data:`CHART_MINUTES` minutes, oldest first.

        Read from ``jobs.finalized_at`` (indexed) rather than ``job_runs``, which has no index on time.
        """
        end = now.replace(second=0, microsecond=0)
        start = end - timedelta(minutes=CHART_MINUTES - 1)
        bucket = self.minute("finalized_at")
        sql = (f"SELECT {bucket}, state, count(*) FROM jobs WHERE finalized_at IS NOT NULL"
               f" AND finalized_at >= {self.p} GROUP BY 1, 2")
        buckets: dict[str, dict[str, int]] = {}
        for minute, state, n in self._rows(sql, (to_db_time(start),)):
            buckets.setdefault(str(minute)[:16], {})[state] = int(n)
        series = []
        for i in range(CHART_MINUTES):
            at = start + timedelta(minutes=i)
            series.append((at, buckets.get(at.strftime("%Y-%m-%d %H:%M"), {})))
        return series

    # -- queues ------------------------------------------------------------------

    def active_queues(self) -> list[str]:
        """Queues with claimable or running jobs: a skip scan over the claim index, then the running rows."""
        sql = (f"WITH RECURSIVE q(name) AS ("
               f" SELECT min(queue) FROM jobs WHERE {_READY}"
               f" UNION ALL SELECT (SELECT min(queue) FROM jobs WHERE {_READY} AND queue > q.name)"
               f" FROM q WHERE q.name IS NOT NULL)"
               f" SELECT name FROM q WHERE name IS NOT NULL")
        names = {r[0] for r in self._rows(sql)}
        names.update(r[0] for r in self._rows("SELECT DISTINCT queue FROM jobs WHERE state = 'running'"))
        return sorted(names)

    def queues(self) -> list[QueueRow]:
        now = clock.now()
        ts, p = to_db_time(now), self.p
        rows = []
        for name in self.active_queues():
            rows.append(QueueRow(
                queue=name,
                ready=self.count(f"{_READY} AND queue = {p} AND scheduled_at <= {p}", (name, ts)),
                scheduled_ahead=self.count(f"{_READY} AND queue = {p} AND scheduled_at > {p}", (name, ts)),
                running=self.count(f"state = 'running' AND queue = {p}", (name,)),
                lag=self.lag(now, name)))
        return rows

    # -- jobs --------------------------------------------------------------------

    def jobs(self, *, state: str | None = None, kind: str | None = None, queue: str | None = None,
             before: str | None = None, after: str | None = None, limit: int = 50) -> JobPage:
        """A page of live jobs newest first; ``before``/``after`` are id cursors (exclusive)."""
        p = self.p
        where, params = ["deleted_at IS NULL"], []
        for column, value in (("state", state), ("kind", kind), ("queue", queue)):
            if value:
                where.append(f"{column} = {p}")
                params.append(value)
        backwards = after is not None and before is None
        if before is not None:
            where.append(f"id < {p}")
            params.append(before)
        elif after is not None:
            where.append(f"id > {p}")
            params.append(after)
        order = "ASC" if backwards else "DESC"
        sql = (f"SELECT {', '.join(_LIST_COLUMNS)} FROM jobs WHERE {' AND '.join(where)}"
               f" ORDER BY id {order} LIMIT {int(limit) + 1}")
        found = [_job_row(r) for r in self._rows(sql, params)]
        more, found = len(found) > limit, found[:limit]
        if backwards:
            found.reverse()
        if not found:
            return JobPage(rows=[], older=None, newer=None)
        has_older = more if not backwards else True
        has_newer = (before is not None) if not backwards else more
        return JobPage(rows=found, older=found[-1].id if has_older else None,
                       newer=found[0].id if has_newer else None)

    def kinds_and_queues(self) -> tuple[list[str], list[str]]:
        """Kinds and queues for the filter menus, from the active queues and a sample of recent jobs."""
        recent = self._rows("SELECT kind, queue FROM jobs ORDER BY id DESC LIMIT 500")
        kinds = sorted({r[0] for r in recent})
        queues = sorted({r[1] for r in recent} | set(self.active_queues()))
        return kinds, queues


class PostgresQueries(PortableQueries):
    """PostgreSQL: ``date_trunc`` for minutes, and the planner's row estimate for counts at the cap."""

    def minute(self, column: str) -> str:
        return f"to_char(date_trunc('minute', {column} AT TIME ZONE 'UTC'), 'YYYY-MM-DD HH24:MI')"

    def estimate(self, where: str, params: tuple[Any, ...]) -> Count:
        plan = self._rows(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM jobs WHERE {where}", params)[0][0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        rows = int(plan[0]["Plan"]["Plan Rows"])
        return Count(value=max(rows, EXACT_CAP), exact=False)


def _job_row(row: tuple[Any, ...]) -> JobRow:
    values = dict(zip(_LIST_COLUMNS, row, strict=True))
    for name in ("created_at", "scheduled_at", "finalized_at"):
        values[name] = from_db_time(values[name])
    for name in ("attempt", "max_attempts", "priority"):
        values[name] = int(values[name])
    return JobRow(**values)


def queries_for(db: Database) -> PortableQueries:
    """The query set for ``db``'s dialect."""
    return PostgresQueries(db) if db.dialect == "postgres" else PortableQueries(db)
