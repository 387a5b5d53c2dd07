"""Inspection and operations: the read projections and their JSON names."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import ClassVar

import attrs
import pytest

import flywheel


@attrs.frozen
class Task:
    kind: ClassVar[str] = "task"
    fail: bool = False


@pytest.fixture
def worker(registry):
    @registry.worker("task")
    def task(job: flywheel.Job[Task]) -> flywheel.Result:
        if job.args.fail:
            raise flywheel.Permanent("it failed")
        return flywheel.Result(output={"ok": True})


def test_find_list_and_count(db, client, make_runner, worker, clock):
    ok = client.insert(Task())
    bad = client.insert(Task(fail=True))
    clock.advance(1)
    later = client.insert(Task(), schedule_at=clock.now() + timedelta(hours=1))
    make_runner().run_available()

    view = flywheel.find_job(db, ok)
    assert (view.state, view.attempt, view.parent_job_id, view.kind) == ("succeeded", 1, "", "task")
    assert set(view.to_json()) >= {"id", "kind", "state", "parent_job_id", "enqueued_at", "attempt"}
    assert json.dumps(view.to_json())  # JSON-able as is
    with pytest.raises(flywheel.JobNotFound):
        flywheel.find_job(db, "missing")

    assert [j.id for j in flywheel.list_jobs(db)] == [later, bad, ok]  # newest first
    assert [j.id for j in flywheel.list_jobs(db, state="discarded")] == [bad]
    assert [j.id for j in flywheel.list_jobs(db, kind="task", limit=1)] == [later]
    assert flywheel.overview(db).to_json() == {
        "counts_by_state": {"succeeded": 1, "discarded": 1, "available": 1}, "total": 3}
    assert flywheel.overview(db, kind="other").total == 0
    assert flywheel.count_active_jobs(db) == 1 and flywheel.count_runs(db) == 2
    assert [(a.id, a.state, a.args) for a in flywheel.list_active_by_kind(db, "task")] == [
        (later, "available", {"fail": False})]


def test_runs_and_failures(db, client, make_runner, worker, clock):
    bad = client.insert(Task(fail=True))
    make_runner().run_available()
    [run] = flywheel.list_runs(db, bad)
    as_json = run.to_json()
    assert as_json["outcome"] == "error" and as_json["error"].endswith("it failed")
    assert {"id", "outcome", "executor_class", "started_at", "finished_at"} <= set(as_json)
    assert "output" not in as_json  # omitted when empty, as in go-flywheel
    [failure] = flywheel.recent_failures(db)
    assert failure.to_json() == {
        "job_id": bad, "kind": "task", "queue": "default", "attempt": 1,
        "finalized_at": clock.now().isoformat().replace("+00:00", "Z"), "error_class": "permanent",
        "error_message": "Permanent: it failed"}
    assert flywheel.recent_failures(db, since=clock.now() + timedelta(seconds=1)) == []


def test_list_runs_pages_newest_first(db, registry, client, make_runner, clock):
    @registry.worker("task")
    def flaky(job: flywheel.Job[Task]) -> None:
        clock.advance(10)
        if job.attempt < 3:
            raise RuntimeError("again")

    job_id = client.insert(Task())
    runner = make_runner(retry_backoff_base=1, max_retry_backoff=1)
    for _ in range(3):
        runner.run_available()
        clock.advance(2)
    runs = flywheel.list_runs(db, job_id)
    assert [r.attempt for r in runs] == [3, 2, 1]
    assert [r.attempt for r in flywheel.list_runs(db, job_id, limit=1)] == [3]
    assert [r.attempt for r in flywheel.list_runs(db, job_id, before=runs[0].started_at)] == [2, 1]


def test_queue_health_snapshot(db, client, clock):
    client.insert(Task())
    clock.advance(30)
    client.insert(Task())
    client.insert(Task(), schedule_at=clock.now() + timedelta(minutes=5))
    health = flywheel.queue_health(db)
    assert (health.ready, health.inflight, health.scheduled_ahead) == (2, 0, 1)
    assert health.oldest_ready_age == timedelta(seconds=30)
    assert health.sampled_at == clock.now()
    assert health.to_json()["oldest_ready_age"] == 30_000_000_000  # nanoseconds, as in go-flywheel


def test_delete_finished_jobs_keeps_live_jobs(db, client, make_runner, worker, clock):
    done = [client.insert(Task()) for _ in range(5)]
    make_runner().run_available()
    live = client.insert(Task())
    clock.advance(timedelta(days=2))
    assert flywheel.delete_finished_jobs(db, clock.now() - timedelta(days=1), batch_size=2) == 5
    assert [j.id for j in flywheel.list_jobs(db)] == [live]
    assert flywheel.count_runs(db) == 0
    assert all(db.JobRun.select().where(db.JobRun.job_id == j).count() == 0 for j in done)


def test_json_strings_round_trip_through_the_views(db, registry, client, make_runner):
    @registry.worker("task")
    def task(job: flywheel.Job[Task]) -> flywheel.Result:
        return flywheel.Result(output="done")

    job_id = client.insert(Task())
    make_runner().run_until_idle(timeout=10)
    assert flywheel.list_runs(db, job_id)[0].output == "done"
    assert flywheel.find_job(db, job_id).args == {"fail": False}
