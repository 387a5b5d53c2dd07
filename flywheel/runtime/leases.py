"""The lease keeper: one thread per runner that renews the leases of its in-flight attempts.

Everything is keyed by the attempt (its run id), never by the job: after an operator's
``retry_job`` or a sweep, one runner can hold two attempts of the same job at once, the
old one fenced and the new one live, and finishing the old one must not touch the new
one's lease. An attempt's lease is renewed from its claim until its finalisation has
committed, so a slow commit cannot let the sweep reclaim work that already finished.

A prefetched attempt (claimed ahead of a free slot) is tracked and renewed from its claim
like a running one; :meth:`LeaseKeeper.begin` decides, atomically with a release, whether
its worker may still start it.

A renewal that finds its lease gone (an operator cancelled or retried the job, or the
sweep reclaimed it) sets the attempt's ``cancelled`` event and stops renewing; so does a
sync job past its deadline, whose lease then lapses unless it returns.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import attrs

from flywheel import clock

if TYPE_CHECKING:
    from flywheel.storage.db import Database

logger = logging.getLogger("flywheel.runner")
T = TypeVar("T")


class CancelEvent(threading.Event):
    """A ``threading.Event`` (``job.cancelled``) whose lock is made on first use.

    Every attempt carries one, but few are ever set or waited on; ``is_set`` reads only the
    flag, so most attempts never build the condition and lock an event costs.
    """

    _made = threading.Lock()

    def __init__(self) -> None:  # not super().__init__(), which builds the condition at once
        self._flag = False
        self._lazy: threading.Condition | None = None

    @property
    def _cond(self) -> threading.Condition:
        if self._lazy is None:
            with CancelEvent._made:
                if self._lazy is None:
                    self._lazy = threading.Condition(threading.Lock())
        return self._lazy


@attrs.define(eq=False)
class Lease:
    """An in-flight attempt's claim as the keeper tracks it (``run_id`` names the attempt)."""

    job_id: str
    token: str
    cancelled: threading.Event
    run_id: str = ""
    deadline: datetime | None = None
    renew: bool = True
    timed_out: bool = False
    lost: bool = False
    #: the worker began (a prefetched attempt is tracked, and renewed, before it starts)
    started: bool = False
    #: the worker returned; the attempt waits for (or is in) its finalisation
    returned: bool = False
    #: handed back to the queue (drain or timeout): whatever the worker returns is dropped
    released: bool = False
    #: ``time.monotonic()`` when the lease was last known held (claimed or renewed)
    renewed: float = attrs.field(factory=time.monotonic)

    @property
    def key(self) -> str:
        return self.run_id or f"{self.job_id}/{self.token}"


class LeaseKeeper:
    """Renews every tracked lease each ``interval`` and enforces sync deadlines."""

    def __init__(self, db: Database, lease: timedelta, interval: timedelta) -> None:
        self.db = db
        self.lease = lease
        self.interval = max(interval.total_seconds(), 0.01)
        self._leases: dict[str, Lease] = {}
        self.lock = threading.Lock()
        #: held around every renewal and every finalisation of this runner: a renewal and a
        #: commit updating the same rows in different orders would deadlock (PostgreSQL
        #: detects it only after ``deadlock_timeout``, long enough for short leases to lapse)
        self.write_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def track(self, leases: Sequence[Lease]) -> None:
        with self.lock:
            for lease in leases:
                self._leases[lease.key] = lease

    def set_deadline(self, lease: Lease, deadline: datetime | None) -> None:
        with self.lock:
            lease.deadline = deadline
        self._wake.set()

    def returned(self, lease: Lease) -> bool:
        """Mark the attempt's worker as returned; False when it was released meanwhile (drop it).

        A returned attempt is renewed again until it commits, even past its deadline: its
        outcome is known and only the commit is left.
        """
        with self.lock:
            if lease.released:
                return False
            lease.returned = True
            if not lease.lost:
                lease.renew = True
            return True

    def begin(self, lease: Lease, max_age: float) -> str:
        """Decide whether a worker may start ``lease``'s attempt: ``start``, ``skip`` or ``drop``.

        ``skip``: it was released meanwhile (its releaser did the bookkeeping). ``drop``: its
        lease is lost, or was last confirmed more than ``max_age`` seconds ago and may lapse
        before the worker is done; it is taken out of the keeper and the caller hands it
        back. Never does an attempt start once its lease may have been lost.
        """
        with self.lock:
            if lease.released:
                return "skip"
            if lease.lost or time.monotonic() - lease.renewed > max_age:
                lease.released = True
                lease.renew = False
                lease.cancelled.set()
                if self._leases.get(lease.key) is lease:
                    del self._leases[lease.key]
                return "drop"
            lease.started = True
            return "start"

    def forget(self, leases: Sequence[Lease]) -> None:
        with self.lock:
            for lease in leases:
                if self._leases.get(lease.key) is lease:
                    del self._leases[lease.key]

    def all(self) -> list[Lease]:
        with self.lock:
            return list(self._leases.values())

    def held(self) -> list[Lease]:
        """The tracked leases still being renewed."""
        with self.lock:
            return [lease for lease in self._leases.values() if lease.renew]

    def take_running(self, *, unstarted_only: bool = False) -> list[Lease]:
        """Mark every attempt whose worker has not returned as released and return them.

        That includes prefetched attempts not started yet (``unstarted_only``: only those).
        Attempts whose worker has returned are left to the finaliser: their work is done.
        """
        with self.lock:
            running = [lease for lease in self._leases.values() if not lease.returned and not lease.released
                       and not (unstarted_only and lease.started)]
            for lease in running:
                lease.released = True
                lease.renew = False
                lease.cancelled.set()
                del self._leases[lease.key]
        return running

    def start(self, context: contextvars.Context) -> None:
        """Start renewing, in a thread that runs in ``context`` (so it sees the caller's clock)."""
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name="flywheel-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        next_renewal = 0.0
        while not self._stop.is_set():
            self._expire_deadlines()
            if time.monotonic() >= next_renewal:
                self._renew()
                next_renewal = time.monotonic() + self.interval
            self._wake.wait(self._sleep_for(next_renewal - time.monotonic()))
            self._wake.clear()

    def _sleep_for(self, until_renewal: float) -> float:
        wait = max(0.0, until_renewal)
        now = clock.now()
        with self.lock:
            deadlines = [lease.deadline for lease in self._leases.values()
                         if lease.deadline and not lease.timed_out and not lease.returned]
        if deadlines:
            wait = min(wait, max(0.0, (min(deadlines) - now).total_seconds()))
        return max(wait, 0.001)

    def _expire_deadlines(self) -> None:
        now = clock.now()
        with self.lock:
            for lease in self._leases.values():
                if (lease.deadline is not None and not lease.timed_out and not lease.returned
                        and now >= lease.deadline):
                    lease.timed_out = True
                    lease.renew = False
                    lease.cancelled.set()

    def _renew(self) -> None:
        held: set[tuple[str, str]] = set()
        try:
            with self.write_lock:  # taken first: a lease committed meanwhile is forgotten, not renewed
                with self.lock:
                    leases = [lease for lease in self._leases.values() if lease.renew]
                if not leases:
                    return
                now, renewed = clock.now(), time.monotonic()
                for batch in distinct_jobs(leases, lambda lease: lease.job_id):
                    ids = self.db.driver.renew_leases(self.db, [(lease.job_id, lease.token) for lease in batch],
                                                      now + self.lease, now)
                    held.update((lease.job_id, lease.token) for lease in batch if lease.job_id in ids)
        except Exception as exc:  # the database is busy or away: keep the leases, try next tick
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:
                logger.warning("jobs: lease renewal failed (%d in a row): %s", self._failures, exc)
            self.db.driver.reset_connection(self.db)
            return
        self._failures = 0
        with self.lock:
            for lease in leases:
                if (lease.job_id, lease.token) in held:
                    lease.renewed = renewed
                if (lease.job_id, lease.token) in held or not lease.renew:
                    continue
                lease.renew = False
                lease.lost = True
                lease.cancelled.set()
                if self._leases.get(lease.key) is lease and not lease.returned:
                    # (a returned attempt losing its row is being, or was just, finalised)
                    logger.warning("jobs: lease claim lost; this attempt's result will not change job %s",
                                   lease.job_id)


def distinct_jobs(items: Sequence[T], job_id: Callable[[T], str]) -> list[list[T]]:
    """Split ``items`` so no batch names a job twice (drivers answer with job ids).

    Two attempts of one job are rare (a retried or swept attempt still running), so this
    is almost always a single batch.
    """
    batches: list[list[T]] = []
    seen: list[set[str]] = []
    for item in items:
        key = job_id(item)
        for batch, ids in zip(batches, seen, strict=True):
            if key not in ids:
                batch.append(item)
                ids.add(key)
                break
        else:
            batches.append([item])
            seen.append({key})
    return batches
