"""Retention: the scheduler deletes old finished jobs with their runs, and never a live one."""

from __future__ import annotations

import contextvars
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flywheel
from flywheel import Scheduler
from flywheel.storage.models import to_db_time
from tests.helpers import wait_for


def finish(db: flywheel.Database, job_id: str, state: str, at: datetime) -> None:
    db.Job.update(state=state, finalized_at=at, attempt=1).where(db.Job.id == job_id).execute()
    db.JobRun.insert(id=flywheel.new_id(), job_id=job_id, attempt=1, executor_id="test", started_at=at,
                     finished_at=at, outcome="success", created_at=at).execute()


def test_prune_retention_deletes_only_old_finished_jobs(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    client = flywheel.Client(db)
    now = clock.now()
    old = {state: client.enqueue("k", {}) for state in ("succeeded", "cancelled", "discarded")}
    for state, job_id in old.items():
        finish(db, job_id, state, now - timedelta(days=8))
    recent = client.enqueue("k", {})
    finish(db, recent, "succeeded", now - timedelta(days=6))
    waiting = client.enqueue("k", {}, schedule_at=now - timedelta(days=30))  # old, but live
    retrying = client.enqueue("k", {})
    db.Job.update(state="retryable", attempt=1).where(db.Job.id == retrying).execute()

    assert Scheduler(db).prune_retention() == 0  # retention off
    assert Scheduler(db, retention=timedelta(days=7)).prune_retention() == 3

    remaining = {row.id for row in db.Job.select()}
    assert remaining == {recent, waiting, retrying}
    assert {row.job_id for row in db.JobRun.select()} == {recent}
    assert Scheduler(db, retention=timedelta(days=7)).prune_retention() == 0


def test_retention_runs_as_an_activity(db: flywheel.Database) -> None:
    job_id = flywheel.Client(db).enqueue("k", {})
    finish(db, job_id, "succeeded", datetime.now(UTC) - timedelta(hours=2))
    scheduler = Scheduler(db, retention=timedelta(hours=1), retention_interval=0.05, tick_interval=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: db.Job.select().count() == 0, timeout=5, what="the finished job to be pruned")
    finally:
        stop.set()
        thread.join(5)
    assert db.Job.select().count() == 0


# -- under load --------------------------------------------------------------------

OLD_JOBS = 100_000

_SERIES = {
    "sqlite": "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s) AS n",
    "postgres": "(SELECT generate_series(1, {n}) AS i) AS n",
}
_TS = {"sqlite": "{p}", "postgres": "{p}::timestamptz"}
_CONCAT = {"sqlite": "printf('old-%07d', i)", "postgres": "'old-' || lpad(i::text, 7, '0')"}


def bulk_insert_finished(db: flywheel.Database, n: int, at: datetime) -> None:
    """``n`` terminal jobs finalised at ``at``, each with one run, written by two INSERT … SELECTs."""
    dialect = db.dialect
    param = "?" if dialect == "sqlite" else "%s"
    ts = _TS[dialect].format(p=param)
    series = _SERIES[dialect].format(n=n)
    ident = _CONCAT[dialect]
    state = "CASE i - 3 * (i / 3) WHEN 0 THEN 'succeeded' WHEN 1 THEN 'discarded' ELSE 'cancelled' END"
    with db.atomic():
        db.pw.execute_sql(
            "INSERT INTO jobs (id, created_at, updated_at, metadata, kind, queue, args, priority, state, attempt, "
            "max_attempts, scheduled_at, executor_class, finalized_at, tags) "
            f"SELECT {ident}, {ts}, {ts}, '{{}}', 'old', 'default', '{{}}', 100, {state}, 1, 25, {ts}, '', {ts}, '[]' "
            f"FROM {series}", [to_db_time(at)] * 4)
        db.pw.execute_sql(
            "INSERT INTO job_runs (id, job_id, attempt, executor_class, executor_id, started_at, finished_at, "
            "outcome, enqueued_children, created_at) "
            f"SELECT 'run-' || {ident}, {ident}, 1, '', 'bulk', {ts}, {ts}, 'success', 0, {ts} FROM {series}",
            [to_db_time(at)] * 3)
    if dialect == "postgres":  # a table that grew to this size has statistics (autovacuum analyses it)
        db.pw.execute_sql("ANALYZE jobs")
        db.pw.execute_sql("ANALYZE job_runs")


@pytest.mark.slow
def test_deleting_100k_finished_jobs_under_load_leaves_live_work_untouched(db: flywheel.Database) -> None:
    now = datetime.now(UTC)
    started = time.monotonic()
    bulk_insert_finished(db, OLD_JOBS, now - timedelta(days=30))
    insert_s = time.monotonic() - started
    assert db.Job.select().where(db.Job.kind == "old").count() == OLD_JOBS

    registry = flywheel.Registry()

    @registry.worker("work")
    def work(job: flywheel.Job[Any]) -> None:
        time.sleep(0.002)

    client = flywheel.Client(db)
    live = [client.enqueue("work", {"n": n}) for n in range(300)]
    later = client.enqueue("work", {}, schedule_at=now + timedelta(hours=1))  # stays available throughout
    runner = flywheel.Runner(db, registry, concurrency=4, poll_interval=0.02, lease=5)
    stop = threading.Event()
    thread = threading.Thread(target=contextvars.copy_context().run, args=(runner.run, stop), daemon=True)
    thread.start()
    wait_for(lambda: flywheel.overview(db, kind="work").counts_by_state.get("succeeded", 0) >= 20,
             what="the runner to get going")
    for n in range(300, 600):  # keep work arriving while the prune runs
        live.append(client.enqueue("work", {"n": n}))

    done_before = flywheel.overview(db, kind="work").counts_by_state.get("succeeded", 0)
    started = time.monotonic()
    deleted = Scheduler(db, retention=timedelta(days=1)).prune_retention()
    prune_s = time.monotonic() - started
    done_during = flywheel.overview(db, kind="work").counts_by_state.get("succeeded", 0) - done_before
    wait_for(lambda: flywheel.count_active_jobs(db) <= 1, timeout=120, what="the live work to finish")
    stop.set()
    thread.join(30)
    print(f"\n{db.dialect}: bulk insert {OLD_JOBS} finished jobs + runs {insert_s:.2f}s; "
          f"prune {prune_s:.2f}s while the runner finished {done_during} jobs")

    assert deleted == OLD_JOBS
    assert done_during > 0  # the runner kept working while the batches were deleted
    assert db.Job.select().where(db.Job.kind == "old").count() == 0
    assert db.JobRun.select().where(db.JobRun.executor_id == "bulk").count() == 0
    jobs = {row.id: row for row in db.Job.select()}
    assert set(jobs) == {*live, later}
    assert jobs[later].state == "available"
    assert all(jobs[job_id].state == "succeeded" for job_id in live)
    runs = list(db.JobRun.select())
    assert sorted(r.job_id for r in runs) == sorted(live)
    assert {r.outcome for r in runs} == {"success"}
