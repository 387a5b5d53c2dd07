"""The scheduler: periodic firing, crash recovery (the lease sweep), retention and a health pulse.

``Scheduler.run`` keeps four independent activities, one thread each, on their own
intervals: ``tick`` (fire due periodic schedules), ``sweep`` (recover jobs whose lease
expired), ``prune_retention`` (delete old finished jobs) and ``sample_health`` (log one
queue-health line). An activity never overlaps itself; an error in one is logged and the
others carry on. The first pass of each runs one interval after start.

With several nodes on one database, tick, sweep and retention run only in the process
holding the driver's maintenance lock (``Driver.singleton(db, "flywheel-scheduler")``:
a session advisory lock on PostgreSQL, a file lock on SQLite); the others stand by and
one of them takes over within an interval when the holder dies. Calling ``tick()``,
``sweep()`` or ``prune_retention()`` directly does the work without asking for the lock;
they are safe to run concurrently anyway (periodic fires dedupe on their unique key).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flywheel import clock
from flywheel.api.client import build_job_row
from flywheel.api.ops import delete_finished_jobs, queue_health
from flywheel.durations import format_duration, require_timedelta
from flywheel.errors import ValidationError
from flywheel.events import SweepEvent
from flywheel.jobs import InsertOpts
from flywheel.plugins import emit, has_observers, resolve
from flywheel.scheduling.schedules import cadence_of
from flywheel.serde import normalise_json_payload
from flywheel.storage.driver import Singleton, SweepResult

if TYPE_CHECKING:
    import pluggy

    from flywheel.api.views import QueueHealth
    from flywheel.storage.db import Database

SINGLETON_NAME = "flywheel-scheduler"
DEFAULT_BACKFILL_CAP = 10


class _Raced(Exception):
    """Another scheduler moved a definition's cursor first: roll this fire back."""


class Scheduler:
    """Fires periodic schedules and keeps the queue healthy; see the module docstring."""

    def __init__(
        self,
        db: Database,
        *,
        tick_interval: timedelta | float = timedelta(seconds=1),
        sweep_interval: timedelta | float = timedelta(seconds=30),
        backfill_cap: int = DEFAULT_BACKFILL_CAP,
        retention: timedelta | float | None = None,
        retention_interval: timedelta | float = timedelta(hours=1),
        health_sample_interval: timedelta | float | None = None,
        logger: logging.Logger | None = None,
        pm: pluggy.PluginManager | None = None,
    ) -> None:
        self.db = db
        self.pm = resolve(pm) if pm is not None else db.pm
        self.tick_interval = _positive(tick_interval, "tick_interval")
        self.sweep_interval = _positive(sweep_interval, "sweep_interval")
        if not isinstance(backfill_cap, int) or isinstance(backfill_cap, bool) or backfill_cap < 1:
            raise ValidationError("backfill_cap", f"must be a positive integer, not {backfill_cap!r}")
        self.backfill_cap = backfill_cap
        self.retention = None if retention is None else _positive(retention, "retention")
        self.retention_interval = _positive(retention_interval, "retention_interval")
        self.health_sample_interval = (
            None if health_sample_interval is None else _positive(health_sample_interval, "health_sample_interval"))
        self.log = logger or logging.getLogger("flywheel.scheduler")
        self._stop = threading.Event()
        self._singleton: Singleton | None = None
        self._singleton_lock = threading.Lock()
        self._leading: bool | None = None
        self._running = False

    # -- the activities, one pass each -------------------------------------------

    def tick(self) -> int:
        """Enqueue every due fire of every active schedule; return the jobs enqueued.

        Each schedule is fired in its own transaction, which also advances its cursor, so
        a crash never leaves fired buckets behind an old cursor. A schedule that fails is
        logged and left as it was; the others still fire.
        """
        now = clock.now()
        Periodic = self.db.JobPeriodic
        due = list(Periodic.select(Periodic.id, Periodic.slug).where(
            Periodic.is_active == True,  # noqa: E712 - a peewee expression, not a comparison
            Periodic.next_run_at <= now).order_by(Periodic.slug).tuples())
        enqueued = 0
        for periodic_id, slug in due:
            try:
                enqueued += self._fire(periodic_id, now)
            except _Raced:
                continue
            except Exception:
                self.log.exception("jobs: periodic %s failed to fire; its cursor was left unchanged", slug,
                                   extra={"action": "periodic_failed", "slug": slug})
                self.db.driver.reset_connection(self.db)
        return enqueued

    def sweep(self) -> int:
        """Recover jobs whose lease expired; return how many (re-queued plus discarded)."""
        started = time.monotonic()
        try:
            result = self.db.driver.sweep(self.db, clock.now())
        except Exception as exc:  # observe: a failed pass is observed too (issue 9), then re-raised
            self._observe_sweep(SweepResult(reclaimed=0, discarded=0), started, exc)
            raise
        self._observe_sweep(result, started, None)  # observe: the logging plugin logs a reclaiming pass at INFO
        return result.reclaimed + result.discarded

    def _observe_sweep(self, result: SweepResult, started: float, error: Exception | None) -> None:
        """observe: send ``flywheel_on_sweep`` (issue 9)."""
        if has_observers(self.pm, "flywheel_on_sweep"):
            emit(self.pm, "flywheel_on_sweep", event=SweepEvent(
                reclaimed=result.reclaimed + result.discarded, discarded=result.discarded,
                duration=timedelta(seconds=time.monotonic() - started), error=error))

    def prune_retention(self) -> int:
        """Delete finished jobs older than ``retention`` (none when it is unset); return how many."""
        if self.retention is None:
            return 0
        deleted = delete_finished_jobs(self.db, clock.now() - self.retention)
        if deleted:
            self.log.info("jobs: retention sweep pruned %d finished job(s)", deleted,
                          extra={"action": "retention", "deleted": deleted})
        return deleted

    def sample_health(self) -> QueueHealth:
        """Sample queue health and log it as one line."""
        health = queue_health(self.db)
        self.log.info(
            "jobs: queue health ready=%d inflight=%d scheduled_ahead=%d oldest_ready=%s discarded=%d",
            health.ready, health.inflight, health.scheduled_ahead, format_duration(health.oldest_ready_age),
            health.discarded,
            extra={"action": "queue_health", "ready": health.ready, "inflight": health.inflight,
                   "scheduled_ahead": health.scheduled_ahead,
                   "oldest_ready_s": health.oldest_ready_age.total_seconds(), "discarded": health.discarded})
        return health

    # -- running -----------------------------------------------------------------

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Run the activities until ``stop_event`` (or :meth:`stop`) is set; return once each pass ended."""
        if self._running:
            raise RuntimeError("this scheduler is already running")
        self._running = True
        self._stop.clear()
        stop = stop_event or threading.Event()
        halt = threading.Event()
        activities: list[tuple[str, timedelta, Callable[[], Any], bool]] = [
            ("periodic", self.tick_interval, self.tick, True),
            ("sweep", self.sweep_interval, self.sweep, True),
        ]
        if self.retention is not None:
            activities.append(("retention", self.retention_interval, self.prune_retention, True))
        if self.health_sample_interval is not None:
            activities.append(("health", self.health_sample_interval, self.sample_health, False))
        context = contextvars.copy_context()
        threads = [
            threading.Thread(target=context.copy().run, args=(self._activity, name, interval, work, gated, halt),
                             name=f"flywheel-scheduler-{name}", daemon=True)
            for name, interval, work, gated in activities
        ]
        for thread in threads:
            thread.start()
        try:
            while not (stop.wait(0.2) or self._stop.is_set()):
                pass
        finally:
            halt.set()
            for thread in threads:
                thread.join()
            self._release_singleton()
            self._running = False

    def stop(self) -> None:
        """Ask :meth:`run` to return (after the passes in progress end)."""
        self._stop.set()

    def _activity(self, name: str, interval: timedelta, work: Callable[[], Any], gated: bool,
                  halt: threading.Event) -> None:
        period = interval.total_seconds()
        next_at = time.monotonic() + period
        skips = 0
        try:
            while not halt.wait(max(0.0, next_at - time.monotonic())):
                self._pass(name, work, gated)
                next_at += period
                behind = time.monotonic() - next_at
                if behind < 0:
                    skips = 0
                    continue
                missed = int(behind // period) + 1
                skips += missed
                next_at += missed * period
                self.log.warning("jobs: maintenance tick skipped, previous pass still running",
                                 extra={"action": "maintenance_skipped", "activity": name,
                                        "consecutive_skips": skips, "interval": format_duration(interval)})
        finally:
            # This thread's connection only: db.close() would also close the driver's shared
            # connections (the runners' LISTEN connection), which the scheduler does not own.
            with contextlib.suppress(Exception):
                if not self.db.pw.is_closed():
                    self.db.pw.close()

    def _pass(self, name: str, work: Callable[[], Any], gated: bool) -> None:
        try:
            if gated and not self._lead():
                return
            work()
        except Exception:
            self.log.exception("jobs: %s failed", _FAILURE_TEXT[name])
            self.db.driver.reset_connection(self.db)

    # -- the maintenance lock ----------------------------------------------------

    def _lead(self) -> bool:
        """Whether this process holds the maintenance lock (asked before every gated pass)."""
        with self._singleton_lock:
            if self._singleton is None:
                self._singleton = self.db.driver.singleton(self.db, SINGLETON_NAME)
            leading = bool(self._singleton.acquire())
            if leading != self._leading:
                self.log.info("jobs: scheduler %s the maintenance lock",
                              "holds" if leading else "stands by: another process holds",
                              extra={"action": "scheduler_leader", "leading": leading})
                self._leading = leading
            return leading

    def _release_singleton(self) -> None:
        with self._singleton_lock:
            if self._singleton is not None:
                try:
                    self._singleton.release()
                except Exception:
                    self.log.exception("jobs: releasing the scheduler's maintenance lock failed")
                self._singleton = None
            self._leading = None

    # -- firing one schedule -----------------------------------------------------

    def _fire(self, periodic_id: str, now: datetime) -> int:
        """Enqueue one schedule's due buckets and advance its cursor, in one transaction."""
        db, Periodic = self.db, self.db.JobPeriodic
        with db.atomic():
            query = Periodic.select().where(
                Periodic.id == periodic_id,
                Periodic.is_active == True,  # noqa: E712 - a peewee expression, not a comparison
                Periodic.next_run_at <= now)
            if db.driver.capabilities.row_locks:  # another scheduler firing it now: leave it to them
                query = query.for_update(skip_locked=True)
            row = query.first()
            if row is None:
                return 0
            fires, following = cadence_of(row).fires_between(row.next_run_at, now, self.backfill_cap)
            args_json = normalise_json_payload(row.args_template, field="args")
            rows = [
                build_job_row(row.kind, args_json, InsertOpts(
                    queue=row.queue, unique_key=f"{row.slug}@{int(fire.timestamp())}", schedule_at=fire), now)
                for fire in fires
            ]
            landed = db.driver.insert_jobs(db, rows) if rows else set()
            changes: dict[str, Any] = {"next_run_at": following, "updated_at": now}
            if landed:
                changes["last_enqueued_at"] = now
            advanced = Periodic.update(**changes).where(
                Periodic.id == row.id, Periodic.next_run_at == row.next_run_at).execute()
            if advanced != 1:
                raise _Raced(row.slug)
            if landed:
                db.driver.notify(db, {row.queue})
        return len(landed)


_FAILURE_TEXT = {
    "periodic": "periodic tick", "sweep": "lease sweep", "retention": "retention sweep",
    "health": "queue health sample",
}


def _positive(value: timedelta | float, field: str) -> timedelta:
    delta = require_timedelta(value, field=field)
    if delta <= timedelta(0):
        raise ValidationError(field, f"must be positive, not {value!r}")
    return delta


__all__ = ["Scheduler"]
