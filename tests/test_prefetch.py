"""Prefetch: jobs claimed ahead of a free worker hold a lease, are renewed, start in priority
order, never start on a lease that may have lapsed, and go back unstarted at a drain or a kill."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peewee
import pytest

import flywheel
from flywheel import Node, RunnerConfig
from flywheel.runtime.runner import DEFAULT_CONCURRENCY, default_concurrency
from tests.helpers import in_thread, job_row, run_rows, wait_for

REPO = Path(__file__).resolve().parents[1]


def running(db: flywheel.Database) -> int:
    return db.Job.select().where(db.Job.state == "running").count()


def warm_up(runner: flywheel.Runner, client: flywheel.Client, registry: flywheel.Registry) -> None:
    """Run a few fast jobs: a runner prefetches only once it has seen how fast its jobs are."""
    registry.worker("warm")(lambda job: None)
    for _ in range(3):
        client.enqueue("warm", {})
    runner.run_until_idle(timeout=30)


def blocker(registry: flywheel.Registry, started: list[str] | None = None) -> threading.Event:
    """A ``block`` worker that holds its slot until the returned event is set."""
    release = threading.Event()

    @registry.worker("block")
    def block(job: Any) -> None:
        if started is not None:
            started.append("block")
        release.wait(30)

    return release


def test_prefetched_jobs_start_in_priority_order(db: flywheel.Database, registry: flywheel.Registry,
                                                 client: flywheel.Client,
                                                 make_runner: Callable[..., flywheel.Runner]) -> None:
    order: list[str] = []
    release = blocker(registry, order)
    registry.worker("mark")(lambda job: order.append(job.args["name"]))
    runner = make_runner(concurrency=1, prefetch=4)
    warm_up(runner, client, registry)
    client.enqueue("block", {})
    stop = threading.Event()
    thread = in_thread(runner.run, stop)
    wait_for(lambda: order == ["block"], what="the blocker to start")
    # three separate claims, the most urgent last: all wait in the runner's buffer
    for count, (name, priority) in enumerate([("low", 3), ("mid", 2), ("high", 1)], start=2):
        client.enqueue("mark", {"name": name}, priority=priority)
        wait_for(lambda count=count: running(db) == count, what=f"{name} to be prefetched")
    release.set()
    wait_for(lambda: len(order) == 4, what="the prefetched jobs to run")
    stop.set()
    thread.join(60)
    assert order == ["block", "high", "mid", "low"]


def test_a_drain_hands_prefetched_jobs_back_at_once_without_using_an_attempt(
        db: flywheel.Database, registry: flywheel.Registry, client: flywheel.Client) -> None:
    started: list[str] = []
    release = blocker(registry, started)
    registry.worker("noop")(lambda job: None)
    warm = [client.enqueue("noop", {}) for _ in range(3)]  # run first, one by one: then it prefetches
    blocked = client.enqueue("block", {})
    waiting = [client.enqueue("noop", {}) for _ in range(4)]
    node = Node(db, registry, runners=[RunnerConfig(concurrency=1, prefetch=4, poll_interval=0.02)],
                scheduler=None)
    thread = in_thread(node.run)
    wait_for(lambda: started == ["block"] and running(db) == 5, what="the blocker and 4 prefetched jobs")
    node.stop()
    # the blocker still runs; the prefetched jobs are back in the queue as if never claimed
    wait_for(lambda: all(job_row(db, j)["state"] == "available" for j in waiting), what="prefetched jobs released")
    assert job_row(db, blocked)["state"] == "running"
    assert all(job_row(db, j)["state"] == "succeeded" for j in warm)
    for job_id in waiting:
        row = job_row(db, job_id)
        assert (row["attempt"], row["lease_token"], row["leased_until"]) == (0, None, None)
        assert run_rows(db, job_id) == []
    release.set()
    thread.join(30)
    assert not thread.is_alive()
    assert job_row(db, blocked)["state"] == "succeeded"
    assert [r["outcome"] for r in run_rows(db, blocked)] == ["success"]
    # and they run normally afterwards, as attempt 1
    flywheel.Runner(db, registry, concurrency=2, poll_interval=0.02).run_until_idle(timeout=60)
    for job_id in waiting:
        assert [(r["attempt"], r["outcome"]) for r in run_rows(db, job_id)] == [(1, "success")]


def test_renewal_covers_prefetched_jobs(db: flywheel.Database, registry: flywheel.Registry,
                                       client: flywheel.Client, make_runner: Callable[..., flywheel.Runner]) -> None:
    started: list[str] = []
    release = blocker(registry, started)
    registry.worker("noop")(lambda job: None)
    runner = make_runner(concurrency=1, prefetch=2, lease=0.6, heartbeat_interval=0.1)
    warm_up(runner, client, registry)
    client.enqueue("block", {})
    waiting = client.enqueue("noop", {})
    thread = in_thread(runner.run_until_idle, 60)
    wait_for(lambda: started == ["block"] and job_row(db, waiting)["state"] == "running", what="prefetch")
    first = job_row(db, waiting)["leased_until"]
    wait_for(lambda: job_row(db, waiting)["leased_until"] != first, what="the prefetched lease to be renewed")
    threading.Event().wait(1.0)  # longer than a lease: only renewals keep it
    assert flywheel.Scheduler(db).sweep() == 0
    release.set()
    thread.join(60)
    runs = run_rows(db, waiting)
    assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "success")]
    assert job_row(db, waiting)["state"] == "succeeded"


def test_a_prefetched_job_whose_lease_may_have_lapsed_does_not_start(
        db: flywheel.Database, registry: flywheel.Registry, client: flywheel.Client,
        make_runner: Callable[..., flywheel.Runner], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    started: list[str] = []
    release = blocker(registry, started)
    ran: list[Any] = []
    registry.worker("noop")(lambda job: ran.append(job.attempt))

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise peewee.OperationalError("database unreachable (test)")

    runner = make_runner(concurrency=1, prefetch=2, lease=1.0, heartbeat_interval=0.2)
    warm_up(runner, client, registry)
    monkeypatch.setattr(db.driver, "renew_leases", unreachable)
    blocked = client.enqueue("block", {})
    waiting = client.enqueue("noop", {})
    caplog.set_level(logging.WARNING, logger="flywheel.runner")
    thread = in_thread(runner.run_until_idle, 60)
    wait_for(lambda: started == ["block"] and job_row(db, waiting)["state"] == "running", what="prefetch")
    threading.Event().wait(1.2)  # no renewal got through: the prefetched lease has lapsed
    release.set()
    thread.join(60)
    assert not thread.is_alive()
    assert "was not started" in caplog.text
    # the stale claim was undone, so the job ran once, on a fresh claim after the blocker ended
    runs = run_rows(db, waiting)
    assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "success")]
    assert ran == [1]
    assert runs[0]["started_at"] >= run_rows(db, blocked)[0]["finished_at"]


SIGKILL_RUNNER = textwrap.dedent("""
    import sys, time
    import flywheel
    db = flywheel.connect(sys.argv[1])
    registry = flywheel.Registry()
    registry.worker("hang")(lambda job: time.sleep(600))
    registry.worker("noop")(lambda job: None)
    flywheel.Runner(db, registry, concurrency=1, prefetch=8, lease=1.0, poll_interval=0.05).run()
""")


def test_sigkill_of_a_runner_holding_prefetched_jobs_loses_none(db: flywheel.Database, db_url: str,
                                                                client: flywheel.Client,
                                                                registry: flywheel.Registry) -> None:
    warm = [client.enqueue("noop", {}) for _ in range(3)]  # run first, one by one: then it prefetches
    hung = client.enqueue("hang", {})
    waiting = [client.enqueue("noop", {}) for _ in range(8)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", SIGKILL_RUNNER, db_url], env=env, stderr=subprocess.PIPE)
    try:
        # the warm jobs' finalisation commits on its own thread: wait for it as well, so the
        # kill catches exactly the hung job and the prefetched ones
        wait_for(lambda: job_row(db, hung)["state"] == "running" and running(db) >= 5
                 and all(job_row(db, j)["state"] == "succeeded" for j in warm),
                 what="the child to hold the hung job and prefetched ones")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert all(job_row(db, j)["state"] == "succeeded" for j in warm)
    held = {row[0] for row in db.Job.select(db.Job.id).where(db.Job.state == "running").tuples()}
    assert hung in held and len(held) >= 5  # the hung job and at least 4 prefetched, unstarted ones
    scheduler = flywheel.Scheduler(db)
    wait_for(lambda: scheduler.sweep() >= 0 and running(db) == 0, timeout=30, what="the sweep to reclaim them")
    registry.worker("hang")(lambda job: None)
    registry.worker("noop")(lambda job: None)
    flywheel.Runner(db, registry, concurrency=2, poll_interval=0.02).run_until_idle(timeout=60)
    for job_id in [hung, *waiting]:
        assert job_row(db, job_id)["state"] == "succeeded"
        expected = ["crashed", "success"] if job_id in held else ["success"]
        assert [r["outcome"] for r in run_rows(db, job_id)] == expected


def test_prefetch_and_concurrency_are_validated_and_default_sensibly(db: flywheel.Database,
                                                                     registry: flywheel.Registry) -> None:
    assert DEFAULT_CONCURRENCY == default_concurrency() == min(32, (os.cpu_count() or 1) + 4)
    runner = flywheel.Runner(db, registry)
    assert runner.concurrency == DEFAULT_CONCURRENCY and runner.prefetch >= 0
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(flywheel.ValidationError) as caught:
            flywheel.Runner(db, registry, prefetch=bad)  # type: ignore[arg-type]
        assert caught.value.field == "prefetch"


def test_a_prefetched_job_cancelled_before_it_starts_never_runs(
        db: flywheel.Database, registry: flywheel.Registry, client: flywheel.Client,
        make_runner: Callable[..., flywheel.Runner]) -> None:
    started: list[str] = []
    release = blocker(registry, started)
    ran: list[str] = []
    registry.worker("noop")(lambda job: ran.append(job.id))
    runner = make_runner(concurrency=1, prefetch=2, lease=1.0, heartbeat_interval=0.1)
    warm_up(runner, client, registry)
    client.enqueue("block", {})
    waiting = client.enqueue("noop", {})
    thread = in_thread(runner.run_until_idle, 60)
    wait_for(lambda: started == ["block"] and job_row(db, waiting)["state"] == "running", what="prefetch")
    flywheel.cancel_job(db, waiting)
    wait_for(lambda: runner.in_flight == 2 and not any(lease.job_id == waiting and lease.renew
                                                       for lease in runner.leases.all()),
             what="the renewal to find the prefetched lease gone")
    release.set()
    thread.join(60)
    assert ran == []
    assert job_row(db, waiting)["state"] == "cancelled"
    assert [r["outcome"] for r in run_rows(db, waiting)] == ["crashed"]  # closed, never left 'started'


def test_slow_jobs_are_not_prefetched(db: flywheel.Database, registry: flywheel.Registry, client: flywheel.Client,
                                      make_runner: Callable[..., flywheel.Runner]) -> None:
    # 0.3 s per job is slower than the prefetch horizon: the runner leaves them to any runner
    registry.worker("slow")(lambda job: time.sleep(0.3))
    jobs = [client.enqueue("slow", {}) for _ in range(4)]
    runner = make_runner(concurrency=1, prefetch=32)
    thread = in_thread(runner.run_until_idle, 60)
    most = 0
    while thread.is_alive():
        most = max(most, running(db))
        threading.Event().wait(0.02)
    assert most <= 2  # the job running, and the one before it while its finalisation commits; never all 4
    assert all(job_row(db, j)["state"] == "succeeded" for j in jobs)
