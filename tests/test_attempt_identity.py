"""Regression tests for issue 7's runner defects: attempt identity, drains, the finaliser, deadlines.

Each test is named after its defect (``test_defect_<n>_...``) and runs on both dialects.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import peewee
import pytest

import flywheel
from flywheel import Node, RunnerConfig, Scheduler
from tests.helpers import in_thread, job_row, run_rows, wait_for

LEASE_S = 1.0


def assert_no_overlap(runs: list[dict[str, Any]]) -> None:
    """No two run rows of one job overlap in time (every run is closed)."""
    spans = sorted((r["started_at"], r["finished_at"], r["attempt"]) for r in runs)
    assert all(finished is not None for _, finished, _ in spans), spans
    for (_, first_end, first), (second_start, _, second) in zip(spans, spans[1:], strict=False):
        assert first_end <= second_start, f"runs of attempts {first} and {second} overlap: {spans}"


@contextlib.contextmanager
def sweeping(db: flywheel.Database, every: float = 0.1) -> Iterator[None]:
    """The scheduler's sweep, every ``every`` seconds in the background: expired leases are reclaimed."""
    stop = threading.Event()

    def loop() -> None:
        scheduler = Scheduler(db)
        while not stop.wait(every):
            scheduler.sweep()

    thread = in_thread(loop)
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@contextlib.contextmanager
def running(runner: flywheel.Runner) -> Iterator[None]:
    stop = threading.Event()
    thread = in_thread(runner.run, stop)
    try:
        yield
    finally:
        stop.set()
        thread.join(20)
        assert not thread.is_alive()


# -- 1: a job runs twice at the same time -----------------------------------------------


def test_defect_1_no_overlapping_attempts_when_a_running_job_is_retried(db: flywheel.Database,
                                                                         registry: flywheel.Registry) -> None:
    """retry_job while attempt 1 runs; the same runner claims attempt 2; attempt 1 finalises.

    Attempt 1's finalisation must not drop attempt 2's lease: attempt 2 runs for three
    leases, held by its heartbeat while the sweep runs, and is never reclaimed.
    """
    first_started, first_go, second_started = threading.Event(), threading.Event(), threading.Event()
    ran: list[int] = []

    @registry.worker("hold")
    def hold(job: flywheel.Job[Any]) -> flywheel.Result:
        ran.append(job.attempt)
        if job.attempt == 1:
            first_started.set()
            first_go.wait(20)
        elif job.attempt == 2:
            second_started.set()
            time.sleep(3 * LEASE_S)
        return flywheel.Result(output=job.attempt)

    job_id = flywheel.Client(db).enqueue("hold", {})
    runner = flywheel.Runner(db, registry, concurrency=2, lease=LEASE_S, poll_interval=0.02)
    with running(runner), sweeping(db):
        assert first_started.wait(10)
        flywheel.retry_job(db, job_id)
        assert second_started.wait(10)
        first_go.set()  # attempt 1 returns and is finalised (fenced) while attempt 2 runs
        wait_for(lambda: runner.in_flight == 1, what="attempt 1 to be finalised")
        wait_for(lambda: job_row(db, job_id)["state"] == "succeeded", what="the job to succeed")
        wait_for(lambda: runner.in_flight == 0, what="the runner to go idle")

    runs = run_rows(db, job_id)
    assert [(r["attempt"], r["outcome"], r["output"]) for r in runs] == [(1, "crashed", None), (2, "success", 2)]
    assert_no_overlap(runs)
    assert ran == [1, 2]  # attempt 2 was never reclaimed and run again


# -- 2: draining throws away finished work ----------------------------------------------


def test_defect_2_drain_deadline_commits_finished_work_and_releases_only_running_jobs(
        db: flywheel.Database, registry: flywheel.Registry) -> None:
    """At the drain deadline one job still runs, one is mid-commit and one waits behind that commit.

    Only the running one is released; both finished ones are committed as successes.
    """
    release_stuck, committing, let_commit = threading.Event(), threading.Event(), threading.Event()

    @registry.worker("stuck")
    def stuck(job: flywheel.Job[Any]) -> None:
        release_stuck.wait(30)

    @registry.worker("slow_commit")
    def slow_commit(job: flywheel.Job[Any]) -> flywheel.Result:
        return flywheel.Result(output="slow")

    @registry.worker("queued")
    def queued(job: flywheel.Job[Any]) -> flywheel.Result:
        committing.wait(10)  # returns while the finaliser is busy with slow_commit's commit
        return flywheel.Result(output="queued")

    client = flywheel.Client(db)
    ids = {kind: client.enqueue(kind, {}) for kind in ("stuck", "slow_commit", "queued")}
    real_finalize = db.driver.finalize

    def finalize(database: flywheel.Database, plans: Any) -> Any:
        if any(plan.job_id == ids["slow_commit"] for plan in plans):
            committing.set()
            let_commit.wait(10)
        return real_finalize(database, plans)

    db.driver.finalize = finalize  # type: ignore[method-assign]
    node = Node(db, registry, runners=[RunnerConfig(concurrency=3, lease=30, poll_interval=0.02)], scheduler=None,
                drain_timeout=0.5)
    errors: list[BaseException] = []
    thread = in_thread(lambda: _run_node(node, errors))
    try:
        wait_for(lambda: all(job_row(db, i)["state"] == "running" for i in ids.values()), what="all three to run")
        assert committing.wait(10)
        node.stop()
        threading.Timer(1.5, let_commit.set).start()  # the commit lands after the drain deadline
        thread.join(20)
        assert not thread.is_alive() and errors == []
    finally:
        let_commit.set()
        release_stuck.set()

    for kind in ("slow_commit", "queued"):
        assert job_row(db, ids[kind])["state"] == "succeeded", kind
        assert [(r["outcome"], r["output"]) for r in run_rows(db, ids[kind])] == [("success", kind.split("_")[0])]
    job = job_row(db, ids["stuck"])
    assert (job["state"], job["lease_token"]) == ("available", None)
    assert [r["outcome"] for r in run_rows(db, ids["stuck"])] == ["crashed"]


def _run_node(node: Node, errors: list[BaseException]) -> None:
    try:
        node.run()
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        errors.append(exc)


# -- 3 and 9: the finaliser -------------------------------------------------------------


def _hold_first_commit(db: flywheel.Database, returned: list[int], count: int) -> Any:
    """Wrap the driver's finalize so its first call waits until ``count`` workers returned.

    The finaliser then takes every other attempt as one group.
    """
    real_finalize = db.driver.finalize
    first = threading.Event()

    def finalize(database: flywheel.Database, plans: Any) -> Any:
        if not first.is_set():
            first.set()
            wait_for(lambda: len(returned) >= count, timeout=10, what="every worker to return")
            time.sleep(0.05)
        return real_finalize(database, plans)

    return finalize


def test_defect_3_a_plan_that_cannot_be_stored_is_recorded_as_an_error_and_blocks_no_other(
        db: flywheel.Database, registry: flywheel.Registry) -> None:
    """One attempt of a group fails to persist for a non-transient reason (a poison output).

    The group's other attempts are committed, the poisoned one ends as an ``error`` run
    naming the failure and its job is not left running; nothing waits out a lease.
    """
    returned: list[int] = []

    @registry.worker("emit")
    def emit(job: flywheel.Job[Any]) -> flywheel.Result:
        returned.append(1)
        return flywheel.Result(output={"poison": job.args["poison"]})

    client = flywheel.Client(db)
    ids = [client.enqueue("emit", {"poison": i == 5}) for i in range(12)]
    held = _hold_first_commit(db, returned, len(ids))
    calls: list[int] = []

    def finalize(database: flywheel.Database, plans: Any) -> Any:
        calls.append(len(plans))
        if any(plan.output_json and '"poison":true' in plan.output_json.replace(" ", "") for plan in plans):
            raise ValueError("A string literal cannot contain NUL (0x00) characters.")
        return held(database, plans)

    db.driver.finalize = finalize  # type: ignore[method-assign]
    runner = flywheel.Runner(db, registry, concurrency=12, lease=30, poll_interval=0.02)
    started = time.monotonic()
    assert runner.run_until_idle(timeout=20) == 12
    assert time.monotonic() - started < 15  # no lease (30 s) was waited out
    assert max(calls) > 2  # the poisoned attempt was part of a group

    for i, job_id in enumerate(ids):
        runs = run_rows(db, job_id)
        if i != 5:
            assert job_row(db, job_id)["state"] == "succeeded"
            assert [(r["outcome"], r["output"]) for r in runs] == [("success", {"poison": False})]
            continue
        assert job_row(db, job_id)["state"] == "discarded"
        assert [(r["outcome"], r["error_class"], r["output"]) for r in runs] == [("error", "permanent", None)]
        assert "could not be stored" in runs[0]["error_message"] and "NUL" in runs[0]["error_message"]


def test_defect_9_a_failing_commit_keeps_its_leases_and_holds_up_no_other_plan(
        db: flywheel.Database, registry: flywheel.Registry) -> None:
    """One plan of a group fails transiently for three leases, with the sweep running.

    Every lease of the group is renewed until its commit, the group's other plans commit
    first, and the slow plan commits when the database lets it: one success run per job.
    """
    returned: list[int] = []

    @registry.worker("quick")
    def quick(job: flywheel.Job[Any]) -> flywheel.Result:
        returned.append(1)
        return flywheel.Result(output=job.attempt)

    client = flywheel.Client(db)
    ids = [client.enqueue("quick", {}) for _ in range(10)]
    stuck_id = ids[3]
    held = _hold_first_commit(db, returned, len(ids))
    blocked_until: list[float] = []
    committed_at: dict[str, float] = {}

    def finalize(database: flywheel.Database, plans: Any) -> Any:
        if any(plan.job_id == stuck_id for plan in plans):
            if not blocked_until:
                blocked_until.append(time.monotonic() + 3 * LEASE_S)
            if time.monotonic() < blocked_until[0]:
                raise peewee.OperationalError("database is locked")
        results = held(database, plans)
        committed_at.update((plan.job_id, time.monotonic()) for plan in plans)
        return results

    db.driver.finalize = finalize  # type: ignore[method-assign]
    runner = flywheel.Runner(db, registry, concurrency=10, lease=LEASE_S, poll_interval=0.02)
    with sweeping(db):
        assert runner.run_until_idle(timeout=30) == 10

    for job_id in ids:
        assert job_row(db, job_id)["state"] == "succeeded"
        assert [(r["attempt"], r["outcome"]) for r in run_rows(db, job_id)] == [(1, "success")]
    assert all(committed_at[job_id] < committed_at[stuck_id] for job_id in ids if job_id != stuck_id)
    assert committed_at[stuck_id] >= blocked_until[0]


# -- 4: run_until_idle(timeout=...) does not bound ------------------------------------------


def test_defect_4_run_until_idle_timeout_bounds_a_worker_that_never_returns(
        db: flywheel.Database, registry: flywheel.Registry) -> None:
    """A worker that never returns: ``timeout=1`` raises TimeoutError about a second later,
    the stuck job is released for another runner and a job that finished is committed."""
    forever = threading.Event()

    @registry.worker("forever")
    def never_returns(job: flywheel.Job[Any]) -> None:
        forever.wait(60)

    @registry.worker("quick")
    def quick(job: flywheel.Job[Any]) -> None:
        pass

    client = flywheel.Client(db)
    stuck_id = client.enqueue("forever", {})
    quick_id = client.enqueue("quick", {})
    runner = flywheel.Runner(db, registry, concurrency=2, lease=30, poll_interval=0.02)
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(runner.run_until_idle(timeout=1))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome.append(exc)

    try:
        started = time.monotonic()
        thread = in_thread(call)
        thread.join(15)
        assert not thread.is_alive(), "run_until_idle(timeout=1) still running after 15 s"
        assert time.monotonic() - started < 1 + 5
        assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError)
        assert job_row(db, quick_id)["state"] == "succeeded"
        job = job_row(db, stuck_id)
        assert (job["state"], job["lease_token"]) == ("available", None)
        assert [r["outcome"] for r in run_rows(db, stuck_id)] == ["crashed"]
    finally:
        forever.set()


# -- 10: smaller ones -----------------------------------------------------------------------


def test_defect_10_system_exit_in_a_worker_is_finalised_as_an_error(db: flywheel.Database,
                                                                    registry: flywheel.Registry) -> None:
    """``sys.exit()`` in a worker, sync or async, ends that attempt as an error at once
    (no lease waited out, and the runner's event loop survives it)."""

    @registry.worker("exits")
    def exits(job: flywheel.Job[Any]) -> flywheel.Result:
        if job.attempt == 1:
            raise SystemExit(3)
        return flywheel.Result(output="second")

    @registry.worker("exits_async")
    async def exits_async(job: flywheel.Job[Any]) -> flywheel.Result:
        if job.attempt == 1:
            raise SystemExit(4)
        return flywheel.Result(output="second")

    client = flywheel.Client(db)
    sync_id, async_id = client.enqueue("exits", {}), client.enqueue("exits_async", {})
    runner = flywheel.Runner(db, registry, lease=30, poll_interval=0.02, retry_backoff_base=0.01)
    assert runner.run_until_idle(timeout=15) == 4
    for job_id, code in ((sync_id, 3), (async_id, 4)):
        runs = run_rows(db, job_id)
        assert [(r["attempt"], r["outcome"], r["error_message"]) for r in runs] == [
            (1, "error", f"SystemExit: {code}"), (2, "success", None)]
        assert job_row(db, job_id)["state"] == "succeeded"


@pytest.mark.parametrize(("options", "field"), [
    ({"lease": 30, "heartbeat_interval": 30}, "heartbeat_interval"),
    ({"lease": 30, "heartbeat_interval": 45}, "heartbeat_interval"),
    ({"lease": 30, "heartbeat_interval": 0}, "heartbeat_interval"),
    ({"lease": 30, "heartbeat_interval": -1}, "heartbeat_interval"),
    ({"poll_interval": 0}, "poll_interval"),
    ({"poll_interval": -0.5}, "poll_interval"),
    ({"lease": 0}, "lease"),
])
def test_defect_10_impossible_runner_timings_are_rejected(db: flywheel.Database, registry: flywheel.Registry,
                                                          options: dict[str, Any], field: str) -> None:
    with pytest.raises(flywheel.ValidationError) as caught:
        flywheel.Runner(db, registry, **options)
    assert caught.value.field == field
    with pytest.raises(flywheel.ValidationError) as caught:
        RunnerConfig(**options)
    assert caught.value.field == field
    assert flywheel.Runner(db, registry, lease=30, heartbeat_interval=29.9, poll_interval=0.01).lease.seconds == 30
