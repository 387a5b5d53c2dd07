"""Stress: 2,000 jobs, operators retrying running jobs, 1 s leases and workers outliving them.

Two runners drain the queue while a thread calls ``retry_job`` on random running jobs and
the sweep runs every 100 ms; some workers run for several lease lengths, so only their
heartbeat keeps them from being reclaimed. Afterwards no two runs of one job overlap and
every job has exactly one success; the sweep reclaimed nothing (heartbeats held every
lease), so each job has one run plus one per retry.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any, ClassVar

import attrs

import flywheel
from tests.test_attempt_identity import LEASE_S, assert_no_overlap, running, sweeping

JOBS = 2000
LONG_EVERY = 100  # one job in a hundred runs for four leases
RETRIES = 150


@attrs.frozen
class Stress:
    kind: ClassVar[str] = "stress"
    n: int
    long: bool


def _retry_if_running(db: flywheel.Database, job_id: str) -> bool:
    """retry_job only while the job still runs (a finished job would be re-run: a second success)."""
    Job = db.Job
    with db.atomic():
        query = Job.select(Job.state).where(Job.id == job_id)
        if db.dialect == "postgres":
            query = query.for_update()
        row = query.first()
        if row is None or row.state != "running":
            return False
        flywheel.retry_job(db, job_id)
        return True


def test_stress_retries_and_long_workers_never_overlap_and_every_job_succeeds_once(
        db: flywheel.Database, registry: flywheel.Registry) -> None:
    rng = random.Random(7)

    @registry.worker("stress")
    def work(job: flywheel.Job[Stress]) -> flywheel.Result:
        if job.args.long:
            time.sleep(4 * LEASE_S)  # the heartbeat must hold the lease
        elif job.args.n % 7 == 0:
            time.sleep(0.01)
        return flywheel.Result(output=job.attempt)

    client = flywheel.Client(db)
    ids = client.insert_many([Stress(n=n, long=n % LONG_EVERY == 0) for n in range(JOBS)])
    long_ids = {job_id for n, job_id in enumerate(ids) if n % LONG_EVERY == 0}
    stop_retrying = threading.Event()
    retried: list[str] = []

    def retry_random_running() -> None:  # each job at most once, or the long ones would never end
        Job, Run = db.Job, db.JobRun
        while not stop_retrying.wait(0.02) and len(retried) < RETRIES:
            running_ids = [r[0] for r in Job.select(Job.id).where(Job.state == "running").tuples()
                           if r[0] not in retried]
            if rng.random() < 0.5:  # a long job well into its run: the retried attempt outlives its successor's start
                since = flywheel.clock.now() - timedelta(seconds=1.5 * LEASE_S)
                running_ids = [r[0] for r in Run.select(Run.job_id).where(
                    Run.outcome == "started", Run.started_at < since).tuples()
                    if r[0] in long_ids and r[0] not in retried]
            if running_ids and _retry_if_running(db, job_id := rng.choice(running_ids)):
                retried.append(job_id)

    runners = [flywheel.Runner(db, registry, concurrency=16, lease=LEASE_S, poll_interval=0.02) for _ in range(2)]
    started = time.monotonic()
    retrier = threading.Thread(target=retry_random_running, daemon=True)
    with running(runners[0]), running(runners[1]), sweeping(db):
        retrier.start()
        while flywheel.count_active_jobs(db) and time.monotonic() - started < 120:
            time.sleep(0.2)
        stop_retrying.set()
        retrier.join(10)
        while flywheel.count_active_jobs(db) and time.monotonic() - started < 150:  # the last retried ones
            time.sleep(0.1)
        for runner in runners:
            assert runner.wait_idle(30)

    assert flywheel.count_active_jobs(db) == 0
    assert len(retried) >= 20, "the stress did not retry enough running jobs to mean anything"
    Run = db.JobRun
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in Run.select().dicts():
        runs[row["job_id"]].append(row)
    states = {r[0]: r[1] for r in db.Job.select(db.Job.id, db.Job.state).tuples()}
    for job_id in ids:
        assert states[job_id] == "succeeded", (job_id, states[job_id], runs[job_id])
        assert sum(r["outcome"] == "success" for r in runs[job_id]) == 1, runs[job_id]
        assert_no_overlap(runs[job_id])
    # Heartbeats held every lease: the sweep reclaimed nothing, each retry cost one run.
    swept = [r for rows in runs.values() for r in rows if "lease expired" in (r["error_message"] or "")]
    assert swept == []
    for job_id in ids:
        assert len(runs[job_id]) == 1 + (job_id in retried), runs[job_id]
    assert set(retried) & long_ids, "no long job was retried while it ran"
