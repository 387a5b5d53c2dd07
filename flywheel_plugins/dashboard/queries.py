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
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from flywheel import clock
from flywheel.enums import JobState
from flywheel.storage.models import CLAIMABLE_SQL, from_db_time, to_db_time

if TYPE_CHECKING:
    from flywheel.storage.db import Database

log = logging.getLogger("flywheel.dashboard")

#: Below this many rows a count is exact; at it, PostgreSQL's estimate takes over.
EXACT_CAP = 1000
#: Minutes of history in the throughput chart.
CHART_MINUTES = 60
#: Age of the chart's cached minutes after which a background thread reads the hour again.
CHART_REFRESH = timedelta(minutes=5)
#: Jobs a queue-filtered page looks through past its cursor (see :meth:`PortableQueries.jobs`).
SEARCH_WINDOW = 20_000
#: States whose jobs an index finds by state (the claim index, the running index): no search window.
_INDEXED_STATES = frozenset({JobState.AVAILABLE.value, JobState.RETRYABLE.value, JobState.SCHEDULED.value,
                             JobState.RUNNING.value})
#: How long the jobs page's filter menus (kinds, queues) are reused.
MENU_TTL_S = 30.0
#: The final states a job reaches, in the chart's stacking order.
OUTCOMES = (JobState.SUCCEEDED.value, JobState.DISCARDED.value, JobState.CANCELLED.value)
STATES = tuple(s.value for s in JobState)
_LIST_COLUMNS = ("id", "kind", "queue", "state", "attempt", "max_attempts", "priority", "created_at",
                 "scheduled_at", "finalized_at")
_READY = f"state IN ({CLAIMABLE_SQL})"


def _where(conditions: list[str]) -> str:
    """`` WHERE a AND b`` for ``conditions``, or nothing when there are none."""
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


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
    searched: int | None = None  # set when the page is short because only this many jobs were searched


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
        self._lock = threading.Lock()
        self._chart_lock = threading.Lock()
        self._refreshing = False
        self._chart: tuple[datetime, dict[str, dict[str, int]]] | None = None
        self._menus: tuple[float, tuple[list[str], list[str]]] | None = None

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.db.pw.execute_sql(sql, params).fetchall())

    # -- counts ------------------------------------------------------------------

    def counts(self, conditions: list[tuple[str, tuple[Any, ...]]]) -> list[Count]:
        """Rows of ``jobs`` matching each ``(where, params)``: exact below the cap, else :meth:`estimates`.

        All the capped counts run as one statement (one round trip, however many there are).
        """
        if not conditions:
            return []
        sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {where} LIMIT {EXACT_CAP}) c{i})"
                                    for i, (where, _) in enumerate(conditions))
        values = [int(v) for v in self._rows(sql, [p for _, params in conditions for p in params])[0]]
        capped = [i for i, v in enumerate(values) if v >= EXACT_CAP]
        found = [Count(value=v) for v in values]
        for i, estimate in zip(capped, self.estimates([conditions[i] for i in capped]), strict=True):
            found[i] = estimate
        return found

    def count(self, where: str, params: tuple[Any, ...] = ()) -> Count:
        return self.counts([(where, params)])[0]

    def estimates(self, conditions: list[tuple[str, tuple[Any, ...]]]) -> list[Count]:
        """What to show for counts at the cap. SQLite has no cheap estimate: count them exactly."""
        if not conditions:
            return []
        sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM jobs WHERE {where})" for where, _ in conditions)
        return [Count(value=int(v)) for v in self._rows(sql, [p for _, params in conditions for p in params])[0]]

    def state_counts(self) -> dict[str, Count]:
        return dict(zip(STATES, self.counts(self._state_conditions()), strict=True))

    @staticmethod
    def _state_conditions() -> list[tuple[str, tuple[Any, ...]]]:
        # One literal per state: the partial indexes (jobs_ready, jobs_running_leased) are used
        # only where the WHERE clause proves their predicate, and only a literal does.
        return [(f"state = '{state}'", ()) for state in STATES]

    # -- overview ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now = clock.now()
        found = self.counts([*self._state_conditions(), (f"{_READY} AND scheduled_at <= {self.p}", (to_db_time(now),))])
        states = dict(zip(STATES, found, strict=False))
        lags = self.lags(now)
        return Snapshot(states=states, ready=found[-1], inflight=states[JobState.RUNNING.value],
                        lag=max(lags.values(), default=timedelta(0)), throughput=self.throughput(now), sampled_at=now)

    def lags(self, now: datetime) -> dict[str, timedelta]:
        """Per queue with ready jobs, how long its oldest ready job has waited past its scheduled time."""
        sql = f"SELECT queue, min(scheduled_at) FROM jobs WHERE {_READY} AND scheduled_at <= {self.p} GROUP BY queue"
        return {queue: max(timedelta(0), now - _instant(oldest))
                for queue, oldest in self._rows(sql, (to_db_time(now),))}

    def minute(self, column: str) -> str:
        """SQL truncating a stored instant to its minute; the value's text starts ``YYYY-MM-DD HH:MM``."""
        return f"substr({column}, 1, 16)"

    def throughput(self, now: datetime) -> list[tuple[datetime, dict[str, int]]]:
        """Jobs finalised per minute by final state over the last :data:`CHART_MINUTES` minutes, oldest first.

        Read from ``jobs.finalized_at`` (indexed) rather than ``job_runs``, which has no index on
        time. The minutes that have ended are cached: a request reads only the rows finalised
        since the cache was filled, a few hundred instead of an hour's worth. Once the cache is
        older than :data:`CHART_REFRESH` a background thread reads the hour again, so no request
        waits for that; only the first one (or the first after an idle hour) reads it in line.
        """
        end = now.replace(second=0, microsecond=0)
        start = end - timedelta(minutes=CHART_MINUTES - 1)
        with self._chart_lock:  # concurrent first requests share one full read
            cached = self._chart
            if cached is None or not start <= cached[0] <= end:
                cached = self._chart = (end, self._buckets(start, end))
            elif now - cached[0] > CHART_REFRESH and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh_chart, args=(start, end), daemon=True,
                                 name="flywheel-dashboard-chart").start()
        buckets = {**cached[1], **self._buckets(cached[0], None)}
        series = []
        for i in range(CHART_MINUTES):
            at = start + timedelta(minutes=i)
            series.append((at, buckets.get(at.strftime("%Y-%m-%d %H:%M"), {})))
        return series

    def _refresh_chart(self, start: datetime, end: datetime) -> None:
        try:
            fresh = (end, self._buckets(start, end))
            with self._chart_lock:
                self._chart = fresh
        except Exception:  # the next request tries again; the page keeps the older minutes meanwhile
            log.exception("flywheel: dashboard chart refresh failed")
        finally:
            self._refreshing = False
            if not self.db.pw.is_closed():
                self.db.pw.close()  # this thread's own connection

    def _buckets(self, start: datetime, end: datetime | None) -> dict[str, dict[str, int]]:
        """Counts by minute and state of the jobs finalised in ``[start, end)``."""
        bucket = self.minute("finalized_at")
        sql = f"SELECT {bucket}, state, count(*) FROM jobs WHERE finalized_at IS NOT NULL AND finalized_at >= {self.p}"
        params = [to_db_time(start)]
        if end is not None:
            sql += f" AND finalized_at < {self.p}"
            params.append(to_db_time(end))
        buckets: dict[str, dict[str, int]] = {}
        for minute, state, n in self._rows(sql + " GROUP BY 1, 2", params):
            # PostgreSQL's date_trunc gives an instant (in UTC once converted), SQLite the text
            key = _instant(minute).strftime("%Y-%m-%d %H:%M") if isinstance(minute, datetime) else str(minute)[:16]
            buckets.setdefault(key, {})[state] = int(n)
        return buckets

    # -- queues ------------------------------------------------------------------

    def ready_queues(self) -> list[str]:
        """Queues with claimable jobs: a skip scan over the claim index (one probe per queue)."""
        sql = (f"WITH RECURSIVE q(name) AS ("
               f" SELECT min(queue) FROM jobs WHERE {_READY}"
               f" UNION ALL SELECT (SELECT min(queue) FROM jobs WHERE {_READY} AND queue > q.name)"
               f" FROM q WHERE q.name IS NOT NULL)"
               f" SELECT name FROM q WHERE name IS NOT NULL")
        return [r[0] for r in self._rows(sql)]

    def running_by_queue(self) -> dict[str, int]:
        """Running jobs per queue (few: at most the runners' total concurrency)."""
        return {r[0]: int(r[1]) for r in self._rows("SELECT queue, count(*) FROM jobs WHERE state = 'running'"
                                                     " GROUP BY queue")}

    def queues(self) -> list[QueueRow]:
        """Every queue with claimable or running jobs."""
        now = clock.now()
        ts, p = to_db_time(now), self.p
        running = self.running_by_queue()
        names = sorted(set(self.ready_queues()) | set(running))
        found = self.counts([c for name in names for c in (
            (f"{_READY} AND queue = {p} AND scheduled_at <= {p}", (name, ts)),
            (f"{_READY} AND queue = {p} AND scheduled_at > {p}", (name, ts)))])
        lags = self.lags(now)
        return [QueueRow(queue=name, ready=found[2 * i], scheduled_ahead=found[2 * i + 1],
                         running=Count(value=running.get(name, 0)), lag=lags.get(name, timedelta(0)))
                for i, name in enumerate(names)]

    # -- jobs --------------------------------------------------------------------

    def jobs(self, *, state: str | None = None, kind: str | None = None, queue: str | None = None,
             before: str | None = None, after: str | None = None, limit: int = 50) -> JobPage:
        """A page of live jobs newest first; ``before``/``after`` are id cursors (exclusive).

        No index leads with ``queue`` outside the claim index, so a queue filter over finished
        jobs would walk the whole table to find a rare queue. Such a page looks at most
        :data:`SEARCH_WINDOW` jobs past its cursor; when that window holds too few matches the
        page is short and ``searched`` says so, and the cursor continues after the window.
        """
        p = self.p
        filters: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("kind", kind), ("queue", queue)):
            if value:
                filters.append(f"{column} = {p}")
                params.append(value)
        backwards = after is not None and before is None
        order = "ASC" if backwards else "DESC"
        cursor: list[str] = []
        cursor_params: list[Any] = []
        if before is not None or after is not None:
            cursor.append(f"id {'>' if backwards else '<'} {p}")
            cursor_params.append(after if backwards else before)
        cols, window = ", ".join(_LIST_COLUMNS), SEARCH_WINDOW
        windowed = bool(queue) and state not in _INDEXED_STATES
        if windowed:
            sql = (f"SELECT {cols} FROM (SELECT {cols} FROM jobs{_where(cursor)}"
                   f" ORDER BY id {order} LIMIT {window}) w WHERE {' AND '.join(filters)}"
                   f" ORDER BY id {order} LIMIT {int(limit) + 1}")
            params = cursor_params + params
        else:
            sql = (f"SELECT {cols} FROM jobs{_where(cursor + filters)}"
                   f" ORDER BY id {order} LIMIT {int(limit) + 1}")
            params = cursor_params + params
        found = [_job_row(r) for r in self._rows(sql, params)]
        more, found = len(found) > limit, found[:limit]
        edge = None  # the last job a short windowed page looked at, when jobs remain past it
        if windowed and not more:
            row = self._rows(f"SELECT id FROM jobs{_where(cursor)} ORDER BY id {order}"
                             f" LIMIT 1 OFFSET {window - 1}", cursor_params)
            edge = row[0][0] if row else None
        searched = window if edge else None
        if not backwards:
            newer = (found[0].id if found else before) if before is not None else None
            return JobPage(rows=found, older=found[-1].id if more else edge, newer=newer, searched=searched)
        found.reverse()
        return JobPage(rows=found, older=found[-1].id if found else after, newer=found[0].id if more else edge,
                       searched=searched)

    def kinds_and_queues(self) -> tuple[list[str], list[str]]:
        """Kinds and queues for the filter menus: those of the newest jobs and the queues with work,
        reused for :data:`MENU_TTL_S` seconds."""
        with self._lock:
            menus = self._menus
        if menus is not None and time.monotonic() - menus[0] < MENU_TTL_S:
            return menus[1]
        recent = self._rows("SELECT kind, queue FROM jobs ORDER BY id DESC LIMIT 500")
        kinds = sorted({r[0] for r in recent})
        queues = sorted({r[1] for r in recent} | set(self.ready_queues()))
        with self._lock:
            self._menus = (time.monotonic(), (kinds, queues))
        return kinds, queues


class PostgresQueries(PortableQueries):
    """PostgreSQL: ``date_trunc`` for minutes, and the planner's row estimate for counts at the cap."""

    def minute(self, column: str) -> str:
        return f"date_trunc('minute', {column})"  # a timestamptz in the session's zone, UTC (the driver sets it)

    def lags(self, now: datetime) -> dict[str, timedelta]:
        """Through the claim index (queue, priority, scheduled_at, id) without reading all of it: a
        skip scan visits each (queue, priority) pair once, and the pair's first entry is its
        earliest ``scheduled_at``. Tens of index probes instead of every claimable row."""
        sql = (f"WITH RECURSIVE pairs AS ("
               f" (SELECT queue, priority FROM jobs WHERE {_READY} ORDER BY queue, priority LIMIT 1)"
               f" UNION ALL SELECT nxt.queue, nxt.priority FROM pairs CROSS JOIN LATERAL ("
               f"  SELECT queue, priority FROM jobs WHERE {_READY}"
               f"  AND (queue, priority) > (pairs.queue, pairs.priority) ORDER BY queue, priority LIMIT 1) nxt)"
               f" SELECT pairs.queue, min(head.at) FROM pairs CROSS JOIN LATERAL ("
               f"  SELECT scheduled_at AS at FROM jobs WHERE {_READY} AND queue = pairs.queue"
               f"  AND priority = pairs.priority ORDER BY scheduled_at LIMIT 1) head WHERE head.at <= %s"
               f" GROUP BY pairs.queue")
        return {queue: max(timedelta(0), now - _instant(oldest))
                for queue, oldest in self._rows(sql, (to_db_time(now),))}

    def estimates(self, conditions: list[tuple[str, tuple[Any, ...]]]) -> list[Count]:
        """The planner's row estimates: one ``EXPLAIN`` of a ``UNION ALL`` with a branch per condition
        (one round trip); one ``EXPLAIN`` each if the plan is not a plain Append of those branches."""
        if len(conditions) > 1:
            sql = " UNION ALL ".join(f"SELECT 1 FROM jobs WHERE {where}" for where, _ in conditions)
            top = self._plan(sql, [p for _, params in conditions for p in params])
            branches = top.get("Plans", [])
            if top["Node Type"] == "Append" and len(branches) == len(conditions):
                return [Count(value=max(int(b["Plan Rows"]), EXACT_CAP), exact=False) for b in branches]
        return [Count(value=max(int(self._plan(f"SELECT 1 FROM jobs WHERE {where}", params)["Plan Rows"]),
                                EXACT_CAP), exact=False) for where, params in conditions]

    def _plan(self, sql: str, params: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
        plan = self._rows(f"EXPLAIN (FORMAT JSON) {sql}", params)[0][0]
        top: dict[str, Any] = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
        return top


def _instant(value: object) -> datetime:
    """A stored instant the query guarantees is there (a ``min()`` over a non-empty group)."""
    instant = from_db_time(value)
    assert instant is not None, "the query returned no instant"
    return instant


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
