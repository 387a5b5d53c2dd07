"""The runner: claims jobs, runs them on a bounded pool, and finalises their attempts.

Threads, per runner: the claim loop (the caller of ``run``), ``concurrency`` worker
threads, one finaliser that commits finished attempts in small groups, one lease keeper,
and an event loop thread for ``async def`` workers (started on first use). Worker
threads never touch the database for bookkeeping, so a runner needs three connections
whatever its concurrency. A worker is free for its next job as soon as its worker
returns; the finaliser commits what the slots finished meanwhile in one transaction.

Prefetch: the claim loop keeps up to ``prefetch`` jobs claimed beyond the busy workers,
claiming in batches once half of that buffer has been used, so a slot's next job is
already leased when it frees. It prefetches only as many as its workers would start within
:data:`PREFETCH_HORIZON` at their recent pace (none before its first job returned), so
fast jobs are batched and slow ones stay in the queue for any runner. Prefetched attempts
hold a lease that the keeper renews from the claim; workers take them in priority order;
one whose lease was last confirmed too long ago (or is lost) is handed back unstarted, and
at shutdown or a node's drain
every unstarted one is handed back at once without using up an attempt
(:meth:`~flywheel.storage.driver.Driver.unclaim`).

All in-process bookkeeping (lease, deadline, cancel flag, release) belongs to the attempt
(:class:`~flywheel.runtime.leases.Lease`, keyed by run id), never to the job id: one runner may
hold a fenced attempt and a live attempt of the same job at once.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from flywheel import clock
from flywheel.durations import remaining, require_timedelta, to_timedelta
from flywheel.enums import JobState
from flywheel.errors import ValidationError, one_line
from flywheel.events import (
    ClaimEvent,
    FinishEvent,
    RetryEvent,
    SupersedeEvent,
)
from flywheel.ids import new_id, new_ids
from flywheel.plugins import emit, has_observers, resolve
from flywheel.runtime.defaults import (  # re-exported: the runner's defaults
    DEFAULT_CONCURRENCY as DEFAULT_CONCURRENCY,
    DEFAULT_PREFETCH as DEFAULT_PREFETCH,
    MAX_DEFAULT_CONCURRENCY as MAX_DEFAULT_CONCURRENCY,
    default_concurrency as default_concurrency,
)
from flywheel.runtime.dispatch import Attempt, AttemptServices, execute
from flywheel.runtime.finalize import persist
from flywheel.runtime.leases import CancelEvent, Lease, LeaseKeeper
from flywheel.runtime.workerpool import EventLoop, WorkerPool
from flywheel.storage.driver import ClaimedJob, ClaimRequest

if TYPE_CHECKING:
    import pluggy

    from flywheel.registry import Registry
    from flywheel.storage.db import Database

FINALIZE_GROUP = 64
#: a runner prefetches only the jobs its workers are expected to start within this long
#: at their recent pace, so slow jobs are never hoarded away from other runners
PREFETCH_HORIZON = 0.1  # seconds

MAX_POLL_BACKOFF = timedelta(seconds=30)
#: at most this long (or one lease) to commit attempts that returned before a deadline
FINALIZE_GRACE = timedelta(seconds=5)


class Runner:
    """Claims and runs jobs of ``queues``; see the module docstring for its threads."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = DEFAULT_CONCURRENCY,
        prefetch: int = DEFAULT_PREFETCH,
        executor_class: str = "",
        claim_any_class: bool = False,
        lease: timedelta | float = timedelta(seconds=30),
        poll_interval: timedelta | float = timedelta(milliseconds=250),
        retry_backoff_base: timedelta | float = timedelta(seconds=1),
        max_retry_backoff: timedelta | float = timedelta(hours=1),
        default_timeout: timedelta | float | None = None,
        heartbeat_interval: timedelta | float | None = None,
        max_poll_backoff: timedelta | float = MAX_POLL_BACKOFF,
        logger: logging.Logger | None = None,
        pm: pluggy.PluginManager | None = None,
    ) -> None:
        if isinstance(queues, str):
            queues = (queues,)
        if not queues or not all(isinstance(q, str) and q.strip() for q in queues):
            raise ValidationError("queue", f"a runner needs at least one non-empty queue name, not {queues!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError("concurrency", f"must be a positive integer, not {concurrency!r}")
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 0:
            raise ValidationError("prefetch", f"must be a non-negative integer, not {prefetch!r}")
        self.db = db
        self.registry = registry
        self.pm = resolve(pm) if pm is not None else db.pm
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.executor_class = executor_class or ""
        self.claim_any_class = claim_any_class
        self.lease = require_timedelta(lease, field="lease")
        self.poll_interval = require_timedelta(poll_interval, field="poll_interval")
        interval = to_timedelta(heartbeat_interval, field="heartbeat_interval")
        interval = self.lease / 3 if interval is None else interval
        check_timing(self.lease, self.poll_interval, interval)
        self.retry_backoff_base = require_timedelta(retry_backoff_base, field="retry_backoff_base")
        self.max_retry_backoff = require_timedelta(max_retry_backoff, field="max_retry_backoff")
        self.default_timeout = to_timedelta(default_timeout, field="default_timeout")
        self.max_poll_backoff = max(require_timedelta(max_poll_backoff, field="max_poll_backoff"),
                                    2 * self.poll_interval)
        self.log = logger or logging.getLogger("flywheel.runner")
        self.executor_id = f"{socket.gethostname() or 'unknown'}:{os.getpid()}"
        self.leases = LeaseKeeper(db, self.lease, interval)
        #: a prefetched attempt starts only if its lease was confirmed less than this long ago
        self.start_margin = (self.lease - interval).total_seconds()
        self._stop = threading.Event()
        self._slots = threading.Condition()
        self._inflight = 0  # claimed and not yet finalised
        self._executing = 0  # claimed and not returned: running or prefetched
        self._draining = False  # shutting down: prefetched attempts are not started
        self._pace: float | None = None  # moving average of a worker's seconds per job
        self._spare_run_ids: list[str] = []
        self._runs_written = 0
        self._finished: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()  # a new one per start
        self._pool: WorkerPool | None = None
        self._services = self._attempt_services()  # rebuilt by each start (its lease keeper is new)
        self._finalizer: threading.Thread | None = None
        self._loop: EventLoop | None = None
        self._loop_lock = threading.Lock()
        self._context: contextvars.Context | None = None
        self._poll_failures = 0
        #: jobs the last claim returned: the next asks for at most twice as many (at least
        #: ``concurrency``), so a deep queue is claimed in big batches within a few round
        #: trips while an idle runner's claims (each job's wake-up) stay small
        self._last_claimed = 0
        self._running = False

    # -- public API --------------------------------------------------------------

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Claim and run jobs until ``stop_event`` (or :meth:`stop`) is set, then drain in-flight work."""
        stop = stop_event or threading.Event()
        self._start()
        try:
            while not (stop.is_set() or self._stop.is_set()):
                try:
                    self._step(stop)
                except Exception as exc:  # never die with the database away or a plugin broken
                    self.log.exception("jobs: runner loop failed; backing off")
                    self._poll_failed(exc, stop)
        finally:
            self._shutdown()

    def run_until_idle(self, timeout: timedelta | float | None = None) -> int:
        """Run until no job of this runner's queues is left non-terminal; return the run rows written.

        Retry and snooze delays are waited out. With ``timeout`` every wait is bounded by
        one deadline: when it passes, attempts whose worker still runs are released (their
        jobs go back to the queue with a ``crashed`` run), attempts that already returned
        get a short grace to commit, and ``TimeoutError`` is raised.
        """
        limit = to_timedelta(timeout, field="timeout")
        deadline = None if limit is None else time.monotonic() + limit.total_seconds()
        stop = threading.Event()
        self._start()
        before = self._runs_written
        try:
            while not self._stop.is_set():
                if remaining(deadline) == 0:
                    raise TimeoutError(f"run_until_idle: work remains in {list(self.queues)} after {limit}")
                if self._step(stop, idle_check=True, deadline=deadline):
                    break
        finally:
            self._shutdown(deadline)
        return self._runs_written - before

    def run_available(self) -> int:
        """Run the jobs that are due now until none is left due; return the run rows written.

        Unlike :meth:`run_until_idle` it never waits for jobs scheduled later (retries,
        snoozes), so it suits cron-style invocations and tests driven by a fixed clock.
        """
        stop = threading.Event()
        self._start()
        before = self._runs_written
        try:
            while not self._stop.is_set() and not self._step(stop, until_empty=True):
                pass
        finally:
            self._shutdown()
        return self._runs_written - before

    def stop(self) -> None:
        """Stop claiming; ``run`` returns once in-flight work is finalised."""
        self._stop.set()
        self.db.driver.interrupt_waits()
        with self._slots:
            self._slots.notify_all()

    @property
    def running(self) -> bool:
        """True from the start of ``run`` (or ``run_until_idle``) until it has drained (observe: /readyz)."""
        return self._running

    @property
    def in_flight(self) -> int:
        """Jobs claimed and not yet finalised."""
        with self._slots:
            return self._inflight

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight; False if ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._slots:
            while self._inflight:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._slots.wait(left if left is not None else 0.5)
        return True

    def release_in_flight(self) -> int:
        """Hand the attempts whose worker still runs back to the queue at once; return how many.

        Meant for a runner that stopped claiming (a node past its drain deadline). Prefetched
        attempts not started yet go back as by :meth:`release_prefetched`. Attempts whose
        worker already returned are not released: the finaliser commits them (wait
        with :meth:`wait_idle`). What a released worker returns later is dropped.
        """
        running = self.leases.take_running()
        if not running:
            return 0
        self._forget_taken(running)
        started = [(lease.job_id, lease.token) for lease in running if lease.started]
        unstarted = [lease for lease in running if not lease.started]
        released = self._unclaim(unstarted) if unstarted else 0
        if started:
            with self.leases.write_lock:  # not while a renewal locks the same rows
                released += self.db.driver.release_leases(self.db, started, clock.now())
        return released

    def release_prefetched(self) -> int:
        """Hand the prefetched attempts that have not started back at once; return how many.

        They go back to ``available`` with their attempt unused and their ``started`` run
        row removed (:meth:`~flywheel.storage.driver.Driver.unclaim`): they never ran.
        """
        taken = self.leases.take_running(unstarted_only=True)
        if not taken:
            return 0
        try:
            return self._unclaim(taken)
        finally:
            self._forget_taken(taken)

    def _forget_taken(self, leases: list[Lease]) -> None:
        with self._slots:
            self._inflight -= len(leases)
            self._executing -= len(leases)
            self._slots.notify_all()

    def _unclaim(self, leases: list[Lease]) -> int:
        attempts = [(lease.job_id, lease.token, lease.run_id) for lease in leases]
        with self.leases.write_lock:
            released = self.db.driver.unclaim(self.db, attempts, clock.now())
        with self._slots:
            self._runs_written -= released
        return released

    def event_loop(self) -> EventLoop:
        """The runner's event loop for ``async def`` workers, started on first use."""
        with self._loop_lock:
            if self._loop is None:
                assert self._context is not None
                self._loop = EventLoop(self._context.copy())
            return self._loop

    # -- the claim loop ----------------------------------------------------------

    def _step(self, stop: threading.Event, *, idle_check: bool = False, until_empty: bool = False,
              deadline: float | None = None) -> bool:
        """One pass of the claim loop; True when ``idle_check``/``until_empty`` finds nothing left.

        No wait in it outlasts ``deadline`` (a ``time.monotonic()`` instant).
        """
        free = self._wait_for_slot(stop, deadline)
        if free == 0:
            return False
        try:
            claimed = self._claim(min(free, max(self.concurrency, 2 * self._last_claimed)))
        except Exception as exc:
            self._poll_failed(exc, stop, deadline)
            return False
        self._poll_recovered()
        if claimed:
            self._dispatch(claimed)
            return False
        if until_empty:
            self.wait_idle()
            return self.in_flight == 0 and not self._claim_would_find_work()
        if not idle_check:
            self.db.driver.wait_for_work(self.db, self.queues, self.poll_interval.total_seconds())
            return False
        return self._idle_or_wait(deadline)

    def _wait_for_slot(self, stop: threading.Event, deadline: float | None = None) -> int:
        # A slot frees when its worker returns, so the next claim overlaps the finaliser's
        # commit; finished attempts awaiting that commit are capped at ``concurrency`` (or
        # the prefetch target, if larger) more. With prefetch, claims wait until half the
        # buffer is used, so each claims a batch.
        with self._slots:
            while not (stop.is_set() or self._stop.is_set()):
                free = self._claimable()
                if free:
                    return free
                left = remaining(deadline)
                if left == 0:
                    return 0
                self._slots.wait(0.5 if left is None else min(0.5, left))
            return 0

    def _claimable(self) -> int:
        """How many jobs the claim loop should claim now (0: wait); called holding ``_slots``."""
        ahead = self._prefetch_target()
        held = self.concurrency + ahead
        free = min(held - self._executing, held + max(self.concurrency, ahead) - self._inflight)
        if free >= max(1, (ahead + 1) // 2) or (free > 0 and self._executing == 0):
            return free
        return 0

    def _slots_changed(self) -> None:
        """Wake the waiters on ``_slots`` if what they wait for holds; called holding it.

        Workers and the finaliser change the counts once or twice per job; waking the
        claim loop each time to find it has nothing to claim yet would cost a thread
        switch per change.
        """
        if self._inflight == 0 or self._claimable():
            self._slots.notify_all()

    def _prefetch_target(self) -> int:
        """Jobs to hold beyond the busy workers now: those they would start within the horizon."""
        if not self.prefetch or self._pace is None:
            return 0
        if self._pace <= 0:
            return self.prefetch
        return min(self.prefetch, int(self.concurrency * PREFETCH_HORIZON / self._pace))

    def _claim(self, limit: int) -> list[tuple[ClaimedJob, Lease]]:
        started = time.monotonic()
        now = clock.now()
        request = ClaimRequest(
            queues=self.queues, executor_class=self.executor_class, claim_any_class=self.claim_any_class,
            limit=limit, now=now, lease_until=now + self.lease, lease_token=new_id(),
            executor_id=self.executor_id, run_ids=self._run_ids(limit),
        )
        claimed = self.db.driver.claim(self.db, request)
        self._last_claimed = len(claimed)
        self._spare_run_ids.extend(request.run_ids[len(claimed):])  # unused: keep them for the next claim
        pairs = [(job, Lease(job_id=job.id, token=job.lease_token, run_id=job.run_id, cancelled=CancelEvent()))
                 for job in claimed]
        if claimed:
            with self._slots:
                self._inflight += len(claimed)
                self._executing += len(claimed)
                self._runs_written += len(claimed)
            self.leases.track([lease for _, lease in pairs])
            if has_observers(self.pm, "flywheel_on_claim"):
                emit(self.pm, "flywheel_on_claim", event=ClaimEvent(
                    executor_class=self.executor_class, queues=self.queues, claimed=len(claimed),
                    duration=timedelta(seconds=time.monotonic() - started)))
        return pairs

    def _run_ids(self, count: int) -> tuple[str, ...]:
        """Pre-minted run ids for a claim; an empty claim's ids are reused, so an idle runner mints none."""
        spare = self._spare_run_ids
        taken = spare[:count]
        del spare[:count]
        return (*taken, *new_ids(count - len(taken))) if count > len(taken) else tuple(taken)

    def _dispatch(self, claimed: list[tuple[ClaimedJob, Lease]]) -> None:
        assert self._pool is not None
        self._pool.submit([((job.priority, job.scheduled_at), self._execute, (job, lease)) for job, lease in claimed])

    def _execute(self, job: ClaimedJob, lease: Lease) -> None:
        if self._draining or self._stop.is_set():
            return  # left unstarted: the shutdown hands it back (release_prefetched)
        verdict = self.leases.begin(lease, self.start_margin)
        if verdict != "start":
            if verdict == "drop":  # its lease may lapse before it is done: hand it back unstarted
                self._hand_back(lease)
            return
        # its timeout and duration count from now, not from its claim (it may have been prefetched)
        started_at = clock.now() if self.prefetch else job.started_at
        try:
            attempt = execute(self._services, job, lease, started_at)
        except BaseException:  # never lose a slot: an unexpected bug leaves the job to the sweep
            self.log.exception("jobs: dispatch of job %s failed; the sweep will recover it", job.id)
            if self.leases.returned(lease):
                lease.renew = False
                self._work_done()
                self._release([lease])
            return
        if not self.leases.returned(lease):  # released (drain or timeout): its verdict is recorded
            return
        self._finished.put(attempt)
        self._work_done(attempt.duration.total_seconds())

    def _hand_back(self, lease: Lease) -> None:
        self.log.warning("jobs: prefetched job %s was not started: its lease %s; handing it back", lease.job_id,
                         "was lost" if lease.lost else "was last renewed too long ago")
        try:
            self._unclaim([lease])
        except Exception as exc:  # the sweep recovers it once its lease expires
            self.log.warning("jobs: handing back job %s failed; the sweep will recover it: %s", lease.job_id,
                             one_line(exc))
        finally:  # only now: a runner waiting for idle sees the job back in the queue
            self._forget_taken([lease])

    def _work_done(self, seconds: float | None = None) -> None:
        with self._slots:
            if seconds is not None:
                self._pace = seconds if self._pace is None else 0.8 * self._pace + 0.2 * seconds
            self._executing -= 1
            self._slots_changed()

    def _claim_would_find_work(self) -> bool:
        executor = None if self.claim_any_class else self.executor_class
        next_due = self.db.driver.next_due(self.db, self.queues, executor)
        return next_due is not None and next_due <= clock.now()

    def _idle_or_wait(self, deadline: float | None = None) -> bool:
        if not self.wait_idle(remaining(deadline)):
            return False
        executor = None if self.claim_any_class else self.executor_class
        try:
            active = self.db.driver.count_active(self.db, self.queues, executor)
            if active == 0:
                return True
            next_due = self.db.driver.next_due(self.db, self.queues, executor)
        except Exception as exc:
            self._poll_failed(exc, self._stop, deadline)
            return False
        wait = self.poll_interval.total_seconds()
        if next_due is not None:
            wait = min(wait, max(0.001, (next_due - clock.now()).total_seconds()))
        if (left := remaining(deadline)) is not None:
            wait = min(wait, left)
        if wait > 0:
            self.db.driver.wait_for_work(self.db, self.queues, wait)
        return False

    def _poll_failed(self, exc: Exception, stop: threading.Event, deadline: float | None = None) -> None:
        self._poll_failures += 1
        n = self._poll_failures
        cap = self.max_poll_backoff.total_seconds()
        rung = min(self.poll_interval.total_seconds() * 2 ** min(n - 1, 30), cap)
        climbing = self.poll_interval.total_seconds() * 2 ** min(n - 2, 30) < cap
        if n == 1 or climbing or n % 10 == 0:  # one line per backoff step, then one in ten at the cap
            self.log.warning("jobs: poll failed (%d in a row), retrying in %.2fs: %s", n, rung, one_line(exc))
        self.db.driver.reset_connection(self.db)
        pause = rung * random.uniform(0.75, 1.25)
        stop.wait(pause if (left := remaining(deadline)) is None else min(pause, left))

    def _poll_recovered(self) -> None:
        if self._poll_failures:
            self.log.warning("jobs: database reachable again after %d failed polls", self._poll_failures)
            self._poll_failures = 0

    # -- finalisation ------------------------------------------------------------

    def _finalize_loop(self, finished: queue.SimpleQueue[Attempt | None]) -> None:
        while True:
            first = finished.get()
            if first is None:
                return
            group = [first]
            while len(group) < FINALIZE_GROUP:
                try:
                    more = finished.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    finished.put(None)
                    break
                group.append(more)
            self._finalize(group)

    def _finalize(self, group: list[Attempt]) -> None:
        # The group's leases are renewed until its commit: a slow or retried commit
        # must not let the sweep hand finished work to another runner.
        started = time.monotonic()
        results = persist(self._services, group)
        elapsed = timedelta(seconds=time.monotonic() - started)
        for _attempt, result in zip(group, results, strict=True):
            if result is not None:
                final, outcome = result
                self._report(final, outcome.superseded, elapsed)
        self._release([attempt.lease for attempt in group])

    def _report(self, attempt: Attempt, superseded: bool, finalize_duration: timedelta) -> None:
        claimed, plan = attempt.claimed, attempt.plan
        # observe: exactly one of on_finish / on_supersede per finalised attempt (issue 9).
        if superseded:
            if has_observers(self.pm, "flywheel_on_supersede"):
                emit(self.pm, "flywheel_on_supersede", event=SupersedeEvent(
                    job_id=claimed.id, run_id=claimed.run_id, kind=claimed.kind, queue=claimed.queue,
                    attempt=claimed.attempt, outcome=plan.outcome, error_class=attempt.error_class,
                    error=attempt.error, duration=attempt.duration, finalize_duration=finalize_duration))
            return
        if has_observers(self.pm, "flywheel_on_finish"):
            emit(self.pm, "flywheel_on_finish", event=FinishEvent(
                job_id=claimed.id, run_id=claimed.run_id, kind=claimed.kind, queue=claimed.queue,
                attempt=claimed.attempt, outcome=plan.outcome, error_class=attempt.error_class,
                error=attempt.error, duration=attempt.duration, finalize_duration=finalize_duration,
                state=plan.state))
        if plan.state is JobState.RETRYABLE and attempt.retry_delay is not None:
            emit(self.pm, "flywheel_on_retry", event=RetryEvent(
                job_id=claimed.id, run_id=claimed.run_id, kind=claimed.kind, queue=claimed.queue,
                attempt=claimed.attempt, next_attempt=claimed.attempt + 1, delay=attempt.retry_delay,
                error_class=attempt.error_class))  # type: ignore[arg-type]

    def _release(self, leases: list[Lease]) -> None:
        self.leases.forget(leases)
        with self._slots:
            self._inflight -= len(leases)
            self._slots_changed()

    # -- lifecycle ---------------------------------------------------------------

    def _start(self) -> None:
        if self._running:
            raise RuntimeError("this runner is already running")
        self._running = True
        self._draining = False
        self._stop.clear()
        self._context = contextvars.copy_context()
        self._services = self._attempt_services()
        self._pool = WorkerPool(self.concurrency, self._context)
        self._finished = queue.SimpleQueue()
        self._finalizer = threading.Thread(target=self._context.copy().run, args=(self._finalize_loop, self._finished),
                                           name="flywheel-finalizer", daemon=True)
        self._finalizer.start()
        self.leases.start(self._context.copy())

    def _attempt_services(self) -> AttemptServices:
        return AttemptServices(
            db=self.db, registry=self.registry, pm=self.pm, leases=self.leases, event_loop=self.event_loop,
            log=self.log, lease=self.lease, default_timeout=self.default_timeout,
            retry_backoff_base=self.retry_backoff_base, max_retry_backoff=self.max_retry_backoff,
        )

    def _shutdown(self, deadline: float | None = None) -> None:
        """Wait for in-flight work (up to ``deadline``), then stop the runner's threads.

        Past the deadline, attempts still running are released and those that returned
        get :data:`FINALIZE_GRACE` (at most a lease) to commit.
        """
        grace = None
        self._draining = True
        try:
            self.release_prefetched()
        except Exception as exc:  # the sweep recovers them once their lease expires
            self.log.warning("jobs: handing back the prefetched jobs failed: %s", one_line(exc))
        if not self.wait_idle(remaining(deadline)):
            try:
                released = self.release_in_flight()
            except Exception as exc:  # the sweep recovers them once their lease expires
                self.log.warning("jobs: releasing the jobs still running failed: %s", one_line(exc))
                released = 0
            if released:
                self.log.warning("jobs: deadline passed with jobs still running; released %d", released)
            grace = min(FINALIZE_GRACE, self.lease).total_seconds()
            self.wait_idle(grace)
        self._finished.put(None)
        if self._finalizer is not None:
            self._finalizer.join(grace)
        self.leases.stop()
        self.leases = LeaseKeeper(self.db, self.lease, timedelta(seconds=self.leases.interval))
        if self._pool is not None:
            self._pool.shutdown()
        with self._loop_lock:
            if self._loop is not None:
                self._loop.close()
                self._loop = None
        self._running = False


def check_timing(lease: timedelta, poll_interval: timedelta, heartbeat_interval: timedelta | None) -> None:
    """Reject timings a runner cannot work with (a lease renewed no sooner than it expires...)."""
    if lease.total_seconds() <= 0:
        raise ValidationError("lease", f"must be positive, not {lease}")
    if poll_interval.total_seconds() <= 0:
        raise ValidationError("poll_interval", f"must be positive, not {poll_interval}")
    if heartbeat_interval is not None and not timedelta(0) < heartbeat_interval < lease:
        raise ValidationError("heartbeat_interval",
                              f"must be positive and shorter than the lease ({lease}), not {heartbeat_interval}")
