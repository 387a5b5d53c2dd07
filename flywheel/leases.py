"""The lease keeper: one thread per runner that renews the leases of its in-flight jobs.

A renewal that finds its lease gone (an operator cancelled or retried the job, or the
sweep reclaimed it) sets the job's ``cancelled`` event and stops renewing; so does a sync
job past its deadline, whose lease then lapses unless it returns.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from flywheel import clock

if TYPE_CHECKING:
    from flywheel.db import Database

logger = logging.getLogger("flywheel.runner")


@attrs.define(eq=False)
class Lease:
    """An in-flight job's claim as the keeper tracks it."""

    job_id: str
    token: str
    cancelled: threading.Event
    deadline: datetime | None = None
    renew: bool = True
    timed_out: bool = False
    lost: bool = False


class LeaseKeeper:
    """Renews every tracked lease each ``interval`` and enforces sync deadlines."""

    def __init__(self, db: Database, lease: timedelta, interval: timedelta) -> None:
        self.db = db
        self.lease = lease
        self.interval = max(interval.total_seconds(), 0.01)
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def track(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease.job_id] = lease

    def set_deadline(self, job_id: str, deadline: datetime | None) -> None:
        with self._lock:
            if (tracked := self._leases.get(job_id)) is not None:
                tracked.deadline = deadline
        self._wake.set()

    def forget(self, job_id: str) -> Lease | None:
        with self._lock:
            return self._leases.pop(job_id, None)

    def all(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def held(self) -> list[Lease]:
        with self._lock:
            return [lease for lease in self._leases.values() if lease.renew]

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
        with self._lock:
            deadlines = [lease.deadline for lease in self._leases.values() if lease.deadline and not lease.timed_out]
        if deadlines:
            wait = min(wait, max(0.0, (min(deadlines) - now).total_seconds()))
        return max(wait, 0.001)

    def _expire_deadlines(self) -> None:
        now = clock.now()
        with self._lock:
            for lease in self._leases.values():
                if lease.deadline is not None and not lease.timed_out and now >= lease.deadline:
                    lease.timed_out = True
                    lease.renew = False
                    lease.cancelled.set()

    def _renew(self) -> None:
        leases = self.held()
        if not leases:
            return
        now = clock.now()
        try:
            held = self.db.driver.renew_leases(self.db, [(lease.job_id, lease.token) for lease in leases],
                                               now + self.lease, now)
        except Exception as exc:  # the database is busy or away: keep the leases, try next tick
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:
                logger.warning("jobs: lease renewal failed (%d in a row): %s", self._failures, exc)
            self.db.driver.reset_connection(self.db)
            return
        self._failures = 0
        for lease in leases:
            if lease.job_id not in held and lease.renew:  # not renew: its attempt is being finalised
                lease.renew = False
                lease.lost = True
                lease.cancelled.set()
                logger.warning("jobs: lease claim lost; this attempt's result will not change job %s", lease.job_id)
