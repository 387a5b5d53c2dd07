"""The runner's pool, its resilience to database errors, and its stop behaviour."""

from __future__ import annotations

import logging
import threading
import time
from typing import ClassVar

import attrs
import peewee
import pytest

import flywheel
from tests.helpers import in_thread, wait_for


@attrs.frozen
class Sleep:
    kind: ClassVar[str] = "sleep"
    seconds: float


@pytest.fixture
def sleeper(registry):
    @registry.worker("sleep")
    def sleep(job: flywheel.Job[Sleep]) -> None:
        time.sleep(job.args.seconds)


def test_one_slow_job_never_idles_the_other_slots(db, registry, client, make_runner):
    release = threading.Event()

    @registry.worker("sleep")
    def work(job: flywheel.Job[Sleep]) -> None:
        if job.args.seconds:  # the slow job: holds its slot until the fast ones are done
            assert release.wait(30)

    slow = client.insert(Sleep(seconds=1))
    fast = [client.insert(Sleep(seconds=0)) for _ in range(20)]
    ran: list[int] = []
    thread = in_thread(lambda: ran.append(make_runner(concurrency=2).run_until_idle(timeout=60)))
    try:
        # all 20 fast jobs finish on the one free slot while the slow one still holds the other
        wait_for(lambda: all(flywheel.find_job(db, j).state == "succeeded" for j in fast), what="the fast jobs")
        assert flywheel.find_job(db, slow).state == "running"
    finally:
        release.set()
        thread.join(30)
    assert ran == [21]
    finished = {j: flywheel.list_runs(db, j)[0].finished_at for j in [slow, *fast]}
    assert all(finished[j] < finished[slow] for j in fast)


def test_concurrency_runs_jobs_in_parallel_but_never_more(db, registry, client, make_runner):
    active = 0
    peak = 0
    started = 0
    lock = threading.Lock()
    gate = threading.Semaphore(0)  # the test lets the jobs finish one at a time

    @registry.worker("sleep")
    def hold(job: flywheel.Job[Sleep]) -> None:
        nonlocal active, peak, started
        with lock:
            active += 1
            started += 1
            peak = max(peak, active)
        assert gate.acquire(timeout=30)
        with lock:
            active -= 1

    client.insert_many([Sleep(seconds=0) for _ in range(24)])
    ran: list[int] = []
    thread = in_thread(lambda: ran.append(make_runner(concurrency=4).run_until_idle(timeout=60)))
    try:
        for released in range(24):
            # a slot is freed only by a release: 4 jobs run at once, each release lets one more start
            wait_for(lambda released=released: started >= min(24, 4 + released), what=f"{released + 4} jobs started")
            gate.release()
    finally:
        for _ in range(24):
            gate.release()
        thread.join(30)
    assert ran == [24]
    assert peak == 4


def test_run_until_idle_waits_out_retry_delays(db, registry, client, make_runner):
    @registry.worker("sleep")
    def flaky(job: flywheel.Job[Sleep]) -> None:
        if job.attempt < 3:
            raise RuntimeError("not yet")

    job_id = client.insert(Sleep(seconds=0))
    assert make_runner(retry_backoff_base=0.05).run_until_idle(timeout=20) == 3
    assert flywheel.find_job(db, job_id).state == "succeeded"


def test_run_until_idle_times_out_when_work_is_scheduled_far_ahead(db, client, make_runner, sleeper):
    from datetime import timedelta

    client.insert(Sleep(seconds=0), schedule_at=flywheel.clock.now() + timedelta(hours=1))
    with pytest.raises(TimeoutError):
        make_runner().run_until_idle(timeout=0.3)


def test_stop_lets_in_flight_jobs_finish(db, registry, client, make_runner):

    stop = threading.Event()
    lock = threading.Lock()
    started = 0

    @registry.worker("sleep")
    def sleep(job: flywheel.Job[Sleep]) -> None:
        nonlocal started
        with lock:
            started += 1
        assert stop.wait(30)  # in flight when the stop comes...
        time.sleep(job.args.seconds)  # ...and its own work goes on after it

    ids = [client.insert(Sleep(seconds=0.4)) for _ in range(2)]
    runner = make_runner(concurrency=2)
    thread = in_thread(runner.run, stop)
    wait_for(lambda: started == 2, what="both jobs to start")
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert [flywheel.find_job(db, i).state for i in ids] == ["succeeded", "succeeded"]


def test_database_errors_back_off_and_the_runner_keeps_going(db, client, make_runner, sleeper, caplog):
    """A database that fails every claim for a while: the runner backs off, logs per step, then recovers."""
    real_claim = db.driver.claim
    failures = {"left": 6, "calls": 0}

    def flaky_claim(database, request):
        failures["calls"] += 1
        if failures["left"] > 0:
            failures["left"] -= 1
            raise peewee.OperationalError("server closed the connection unexpectedly")
        return real_claim(database, request)

    db.driver.claim = flaky_claim  # type: ignore[method-assign]
    job_id = client.insert(Sleep(seconds=0))
    runner = make_runner(poll_interval=0.01, max_poll_backoff=0.08)
    with caplog.at_level(logging.WARNING, logger="flywheel.runner"):
        runner.run_until_idle(timeout=20)
    assert flywheel.find_job(db, job_id).state == "succeeded"
    polls = [r for r in caplog.records if "poll failed" in r.getMessage()]
    # 10 ms doubling to the 80 ms cap: one line per rung (1,2,3,4 failures), none at the cap for 5–6
    assert 1 <= len(polls) <= 5 and len(polls) < failures["calls"]
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_a_bad_runner_configuration_is_rejected(db, registry):
    with pytest.raises(flywheel.ValidationError, match="queue"):
        flywheel.Runner(db, registry, queues=[])
    with pytest.raises(flywheel.ValidationError, match="concurrency"):
        flywheel.Runner(db, registry, concurrency=0)
    with pytest.raises(flywheel.ValidationError, match="lease"):
        flywheel.Runner(db, registry, lease=0)


def test_priority_then_schedule_then_id_order(db, registry, client, make_runner):
    order: list[float] = []

    @registry.worker("sleep")
    def record(job: flywheel.Job[Sleep]) -> None:
        order.append(job.args.seconds)

    client.insert(Sleep(seconds=3), priority=100)
    client.insert(Sleep(seconds=1), priority=-1)
    client.insert(Sleep(seconds=4), priority=100)
    client.insert(Sleep(seconds=2), priority=10)
    make_runner(concurrency=1).run_until_idle(timeout=10)
    assert order == [1, 2, 3, 4]


def test_executor_class_routing(db, registry, client, make_runner):
    ran: list[str] = []

    @registry.worker("sleep")
    def record(job: flywheel.Job[Sleep]) -> None:
        ran.append(job.executor_class)

    client.insert(Sleep(seconds=0), executor_class="gpu")
    client.insert(Sleep(seconds=0))
    client.insert(Sleep(seconds=0), executor_class="cpu")
    make_runner(executor_class="gpu").run_available()
    assert sorted(ran) == ["", "gpu"]
    make_runner(claim_any_class=True).run_available()
    assert sorted(ran) == ["", "cpu", "gpu"]


def test_an_unexpected_error_in_the_loop_does_not_kill_run(db, client, make_runner, sleeper, caplog):
    real_wait = db.driver.wait_for_work
    calls = {"n": 0}

    def broken_wait(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("listener exploded")
        return real_wait(*args, **kwargs)

    db.driver.wait_for_work = broken_wait  # type: ignore[method-assign]
    runner = make_runner(poll_interval=0.01, max_poll_backoff=0.05)
    stop = threading.Event()
    thread = in_thread(runner.run, stop)
    try:
        wait_for(lambda: calls["n"] >= 2, what="the loop to go on after the failure")
        job_id = client.insert(Sleep(seconds=0))
        wait_for(lambda: flywheel.find_job(db, job_id).state == "succeeded", what="the job")
    finally:
        stop.set()
        thread.join(10)
    assert flywheel.find_job(db, job_id).state == "succeeded"
    assert any("runner loop failed" in r.getMessage() for r in caplog.records)
