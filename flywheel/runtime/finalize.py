"""Persisting finished attempts: the finaliser's commits, and what it does when one fails.

A group of attempts commits in one driver call, each job named once per call. When a
call fails, the plans are retried alone so one bad plan holds up no other. Only
transient database errors (connection lost, lock timeout, serialization failure, a busy
SQLite) are retried stubbornly, last, and only while the attempt's lease holds; the
lease keeper renews it until the commit. A plan refused for any other reason is recorded
as an ``error`` attempt naming the refusal (:func:`~flywheel.runtime.dispatch.unstorable`), so a
poison outcome can neither block the finaliser nor leave its job ``running``.
"""

from __future__ import annotations

import time
from typing import Any

from flywheel.errors import one_line
from flywheel.runtime.dispatch import Attempt, AttemptServices, unstorable
from flywheel.runtime.leases import distinct_jobs

#: tries of one driver call (a group or a single plan) on transient errors before moving on
FINALIZE_TRIES = 4

Persisted = tuple[Attempt, Any] | None  # (the attempt as recorded, its FinalizeResult), None: given up


def persist(services: AttemptServices, group: list[Attempt]) -> list[Persisted]:
    """Commit ``group``; what fails is retried alone, after the rest committed."""
    results: dict[int, Persisted] = {}
    failed: list[tuple[int, BaseException]] = []
    for batch in distinct_jobs(list(range(len(group))), lambda i: group[i].claimed.id):
        try:
            committed = commit(services, [group[i] for i in batch])
        except Exception as exc:
            failed += [(i, exc) for i in batch]
            continue
        results.update((i, (group[i], result)) for i, result in zip(batch, committed, strict=True))
    stubborn: list[int] = []
    for i, first in failed:
        error = first
        if len(failed) > 1:  # alone now: the others' plans do not hold it up
            try:
                results[i] = (group[i], commit(services, [group[i]])[0])
                continue
            except Exception as again:
                error = again
        if services.db.driver.is_transient(error):
            stubborn.append(i)
        else:
            results[i] = _persist_unstorable(services, group[i], error)
    for i in stubborn:
        results[i] = _persist_stubborn(services, group[i])
    return [results.get(i) for i in range(len(group))]


def commit(services: AttemptServices, attempts: list[Attempt], tries: int = FINALIZE_TRIES) -> list[Any]:
    """One driver finalisation, retried a few times (short pauses) on transient errors."""
    db = services.db
    for attempt in range(tries):
        try:
            with services.leases.write_lock:  # no renewal runs meanwhile; committed leases are not renewed
                results = list(db.driver.finalize(db, [a.plan for a in attempts]))
                services.leases.forget([committed.lease for committed in attempts])
                return results
        except Exception as exc:
            if not db.driver.is_transient(exc) or attempt == tries - 1:
                raise
            db.driver.reset_connection(db)
            time.sleep(min(1.0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")


def _persist_stubborn(services: AttemptServices, attempt: Attempt) -> Persisted:
    """A finalisation failing transiently (database busy or away): retry while its lease holds.

    The lease keeper renews it meanwhile; once a renewal finds it gone, or none has
    succeeded for a lease (it expired), the sweep owns the job and this gives up.
    """
    lease, delay = attempt.lease, 0.2
    while True:
        try:
            return attempt, commit(services, [attempt], tries=1)[0]
        except Exception as exc:
            if not services.db.driver.is_transient(exc):
                return _persist_unstorable(services, attempt, exc)
            if lease.lost or time.monotonic() - lease.renewed >= services.lease.total_seconds():
                services.log.error("jobs: finalize of job %s failed; the sweep will recover it: %s",
                                 attempt.claimed.id, one_line(exc))
                return None
            services.db.driver.reset_connection(services.db)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _persist_unstorable(services: AttemptServices, attempt: Attempt, failure: BaseException) -> Persisted:
    """Record an attempt the database refuses as an ``error`` naming the refusal."""
    services.log.error("jobs: the outcome of job %s (run %s) cannot be stored; recording an error instead: %s",
                     attempt.claimed.id, attempt.claimed.run_id, one_line(failure))
    services.db.driver.reset_connection(services.db)
    fallback = unstorable(attempt, failure)
    try:
        return fallback, commit(services, [fallback])[0]
    except Exception as exc:
        services.log.error("jobs: recording the error of job %s failed too; the sweep will recover it: %s",
                         attempt.claimed.id, one_line(exc))
        return None
