"""Every transition of the state machine, with the exact jobs and job_runs rows it leaves."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import attrs
import pytest

import flywheel
from flywheel.runtime import transitions
from tests.helpers import in_thread, job_row, run_rows

T = datetime(2026, 1, 1, tzinfo=UTC)


@attrs.frozen
class Ping:
    kind: ClassVar[str] = "ping"
    n: int = 0


def test_success_leaves_succeeded_job_and_success_run(db, registry, client, make_runner, clock):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]) -> flywheel.Result:
        clock.advance(timedelta(milliseconds=250))
        return flywheel.Result(output={"pong": job.args.n}, cost_micros=42)

    job_id = client.insert(Ping(n=7))
    assert make_runner().run_available() == 1
    job = job_row(db, job_id)
    assert job["state"] == "succeeded"
    assert job["attempt"] == 1 and job["max_attempts"] == 25
    assert job["finalized_at"] == T + timedelta(milliseconds=250)
    assert job["leased_until"] is None and job["lease_token"] is None
    [run] = run_rows(db, job_id)
    assert run["outcome"] == "success" and run["attempt"] == 1
    assert run["started_at"] == T and run["finished_at"] == T + timedelta(milliseconds=250)
    assert run["duration_ms"] == 250 and run["cost_micros"] == 42
    assert run["output"] == {"pong": 7}
    assert run["error_class"] is None and run["error_message"] is None
    assert run["executor_id"].endswith(f":{__import__('os').getpid()}")


def test_transient_error_retries_with_backoff_then_discards_when_exhausted(db, registry, client, make_runner, clock):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]) -> None:
        raise RuntimeError(f"boom {job.attempt}")

    job_id = client.insert(Ping(), max_attempts=2)
    runner = make_runner(retry_backoff_base=timedelta(seconds=10), max_retry_backoff=timedelta(hours=1))
    assert runner.run_available() == 1
    job = job_row(db, job_id)
    assert job["state"] == "retryable" and job["attempt"] == 1
    delay = job["scheduled_at"] - T
    assert timedelta(seconds=7.5) <= delay <= timedelta(seconds=12.5)  # base ±25 %
    assert job["finalized_at"] is None and job["lease_token"] is None
    [run] = run_rows(db, job_id)
    assert (run["outcome"], run["error_class"], run["error_message"]) == ("error", "transient", "RuntimeError: boom 1")
    assert run["error_payload"] == {"message": "RuntimeError: boom 1"}

    assert runner.run_available() == 0  # not due yet
    clock.advance(timedelta(seconds=13))
    assert runner.run_available() == 1
    job = job_row(db, job_id)
    assert (job["state"], job["attempt"]) == ("discarded", 2)
    assert job["finalized_at"] == T + timedelta(seconds=13)
    assert [r["outcome"] for r in run_rows(db, job_id)] == ["error", "error"]


def test_permanent_error_discards_on_first_attempt(db, registry, client, make_runner, clock):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]) -> None:
        raise flywheel.Permanent("bad recipient")

    job_id = client.insert(Ping())
    make_runner().run_available()
    assert job_row(db, job_id)["state"] == "discarded"
    [run] = run_rows(db, job_id)
    assert (run["outcome"], run["error_class"]) == ("error", "permanent")
    assert "bad recipient" in run["error_message"]


def test_worker_classify_then_plugin_hook_then_transient(db, registry, client, clock):
    class Picky(flywheel.Worker[Ping]):
        kind = "ping"

        def work(self, job: flywheel.Job[Ping]) -> None:
            raise {0: KeyError, 1: LookupError, 2: ValueError}[job.args.n]("x")

        def classify(self, exc: BaseException) -> flywheel.ErrorClass | None:
            return flywheel.ErrorClass.PERMANENT if isinstance(exc, KeyError) else None

    class Plugin:
        @flywheel.hookimpl
        def flywheel_classify_error(self, error, job):
            return flywheel.ErrorClass.VALIDATION if isinstance(error, LookupError) else None

    registry.register(Picky)
    pm = flywheel.plugins.make_plugin_manager(plugins=[Plugin()])
    ids = [client.insert(Ping(n=n)) for n in range(3)]
    flywheel.Runner(db, registry, pm=pm, poll_interval=0.01).run_available()
    classes = [run_rows(db, i)[0]["error_class"] for i in ids]
    assert classes == ["permanent", "validation", "transient"]
    assert [job_row(db, i)["state"] for i in ids] == ["discarded", "discarded", "retryable"]


@pytest.mark.parametrize("how", ["result", "exception"])
def test_snooze_reschedules_without_consuming_an_attempt(db, registry, client, make_runner, clock, how):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        if job.attempt == 1:
            if how == "result":
                return flywheel.Result(snooze=timedelta(minutes=5))
            raise flywheel.Snooze(300)
        return None

    job_id = client.insert(Ping(), max_attempts=1)
    runner = make_runner()
    runner.run_available()
    job = job_row(db, job_id)
    assert (job["state"], job["attempt"], job["max_attempts"]) == ("scheduled", 1, 2)
    assert job["scheduled_at"] == T + timedelta(minutes=5) and job["finalized_at"] is None
    assert [(r["outcome"], r["error_class"]) for r in run_rows(db, job_id)] == [("snooze", None)]
    clock.advance(timedelta(minutes=5))
    runner.run_available()
    assert (job_row(db, job_id)["state"], job_row(db, job_id)["attempt"]) == ("succeeded", 2)


@pytest.mark.parametrize("how", ["result", "exception"])
def test_cancel_ends_the_job_for_good(db, registry, client, make_runner, clock, how):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        if how == "result":
            return flywheel.Result(cancel=True, snooze=timedelta(seconds=1))  # cancel beats snooze
        raise flywheel.Cancel("not needed any more")

    job_id = client.insert(Ping())
    make_runner().run_available()
    job = job_row(db, job_id)
    assert job["state"] == "cancelled" and job["finalized_at"] == T
    assert [r["outcome"] for r in run_rows(db, job_id)] == ["cancelled"]


def test_sync_timeout_sets_cancelled_and_records_timeout(db, registry, client, make_runner):
    seen = {}

    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]) -> None:
        seen["cancelled"] = job.cancelled.wait(5)
        seen["deadline"] = job.deadline

    job_id = client.insert(Ping(), timeout=0.1, max_attempts=1)
    make_runner(heartbeat_interval=0.05).run_available()
    assert seen["cancelled"] is True and seen["deadline"] is not None
    job = job_row(db, job_id)
    assert job["state"] == "discarded" and job["timeout_ms"] == 100
    [run] = run_rows(db, job_id)
    assert (run["outcome"], run["error_class"]) == ("timeout", "timeout")


def test_async_timeout_cancels_the_coroutine_and_retries(db, registry, client, make_runner):
    cancelled = threading.Event()

    class Slow(flywheel.Worker[Ping]):
        kind = "ping"

        async def work(self, job: flywheel.Job[Ping]) -> None:
            if job.attempt == 1:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        def timeout(self, job):
            return timedelta(milliseconds=100)

    registry.register(Slow())
    job_id = client.insert(Ping())
    make_runner().run_until_idle(timeout=10)
    assert cancelled.is_set()
    assert [(r["outcome"], r["error_class"]) for r in run_rows(db, job_id)] == [("timeout", "timeout"), ("success", None)]
    assert job_row(db, job_id)["state"] == "succeeded"


@pytest.mark.parametrize("payload", ["unknown-kind", "bad-args", "no-kind"])
def test_unrunnable_jobs_are_validation_errors_discarded_at_once(db, registry, client, make_runner, clock, payload):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]) -> None:
        pass

    if payload == "unknown-kind":
        job_id = client.enqueue("nobody-handles-this", {"x": 1})
    elif payload == "bad-args":
        job_id = client.enqueue("ping", {"n": "not a number", "extra": True})
    else:
        job_id = client.enqueue("ping", {})
        db.Job.update(kind="").where(db.Job.id == job_id).execute()  # as a foreign writer might leave it
    make_runner().run_available()
    job = job_row(db, job_id)
    assert job["state"] == "discarded" and job["attempt"] == 1
    [run] = run_rows(db, job_id)
    assert (run["outcome"], run["error_class"]) == ("error", "validation")
    expected = {"unknown-kind": "unknown job kind", "bad-args": "decode args", "no-kind": "no kind"}[payload]
    assert expected in run["error_message"]


def test_follow_ups_commit_with_the_parent_and_skip_unique_collisions(db, registry, client, make_runner, clock):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        if job.args.n == 0:
            return flywheel.Result(follow_ups=[
                flywheel.FollowUp(Ping(n=1), unique_key="child-1"),
                flywheel.FollowUp(Ping(n=2), unique_key="taken"),
                flywheel.FollowUp("ping", {"n": 3}, parent=False, queue="default", priority=5),
            ])
        return None

    client.insert(Ping(n=99), unique_key="taken")
    with flywheel.request_id_scope("req-1"):
        parent = client.insert(Ping(n=0))
    runner = make_runner()
    runner.run_available()
    [run] = run_rows(db, parent)
    assert run["enqueued_children"] == 2
    children = list(db.Job.select().where(db.Job.kind == "ping", db.Job.id != parent).dicts())
    by_n = {c["args"]["n"]: c for c in children}
    assert set(by_n) == {1, 3, 99}
    assert by_n[1]["parent_job_id"] == parent and by_n[3]["parent_job_id"] is None
    assert by_n[1]["metadata"] == {"request_id": "req-1"}
    assert by_n[3]["priority"] == 5
    assert all(c["state"] == "succeeded" for c in children)


def test_follow_ups_are_not_enqueued_when_the_attempt_fails(db, registry, client, make_runner, clock):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        raise flywheel.Permanent("no")

    client.insert(Ping())
    make_runner().run_available()
    assert flywheel.count_runs(db) == 1 and db.Job.select().count() == 1


def test_superseded_attempt_cannot_overwrite_the_job(db, registry, client, clock):
    """A frozen attempt whose lease expired: the sweep hands the job on; its late outcome is fenced."""
    release = threading.Event()
    started = threading.Event()

    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        if job.attempt == 1:
            started.set()
            release.wait(10)
            return flywheel.Result(output="late", follow_ups=[flywheel.FollowUp(Ping(n=5))])
        return flywheel.Result(output="second")

    job_id = client.insert(Ping())
    first = flywheel.Runner(db, registry, lease=timedelta(seconds=30), heartbeat_interval=29, poll_interval=0.01)
    thread = in_thread(first.run_available)
    assert started.wait(10)
    clock.advance(timedelta(seconds=31))  # the lease lapses
    assert db.driver.sweep(db, flywheel.clock.now()).reclaimed == 1
    assert [r["outcome"] for r in run_rows(db, job_id)] == ["crashed"]
    flywheel.Runner(db, registry, poll_interval=0.01).run_available()
    release.set()
    thread.join(10)
    job = job_row(db, job_id)
    assert (job["state"], job["attempt"]) == ("succeeded", 2)
    runs = run_rows(db, job_id)
    # The sweep's verdict on the lost attempt stands; exactly one success per job.
    assert [(r["attempt"], r["outcome"], r["output"]) for r in runs] == [(1, "crashed", None), (2, "success", "second")]
    assert db.Job.select().count() == 1  # the fenced attempt's follow-up was not enqueued


def test_cancelling_a_running_job_sets_job_cancelled_and_fences_it(db, registry, client):
    started = threading.Event()
    observed = {}

    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        started.set()
        observed["cancelled"] = job.cancelled.wait(5)
        return flywheel.Result(output="finished anyway")

    job_id = client.insert(Ping())
    runner = flywheel.Runner(db, registry, lease=0.3, poll_interval=0.01)
    thread = in_thread(runner.run_available)
    assert started.wait(10)
    flywheel.cancel_job(db, job_id)
    thread.join(10)
    assert observed["cancelled"] is True
    assert job_row(db, job_id)["state"] == "cancelled"
    assert [(r["outcome"], r["output"]) for r in run_rows(db, job_id)] == [("success", "finished anyway")]
    with pytest.raises(flywheel.JobTerminal):
        flywheel.cancel_job(db, job_id)


def test_heartbeat_keeps_a_long_job_leased(db, registry, client):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        time.sleep(1.0)

    job_id = client.insert(Ping())
    runner = flywheel.Runner(db, registry, lease=0.3, poll_interval=0.01)
    thread = in_thread(runner.run_available)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and thread.is_alive():
        assert db.driver.sweep(db, flywheel.clock.now()).reclaimed == 0
        time.sleep(0.1)
    thread.join(10)
    assert [r["outcome"] for r in run_rows(db, job_id)] == ["success"]


def test_retry_job_revives_a_discarded_job_with_one_more_attempt(db, registry, client, make_runner, clock):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]):
        if job.attempt == 1:
            raise flywheel.Permanent("first time fails")

    job_id = client.insert(Ping(), max_attempts=1)
    runner = make_runner()
    runner.run_available()
    assert job_row(db, job_id)["state"] == "discarded"
    view = flywheel.retry_job(db, job_id)
    assert view.state == "available" and view.max_attempts == 2 and view.finalized_at is None
    runner.run_available()
    assert (job_row(db, job_id)["state"], job_row(db, job_id)["attempt"]) == ("succeeded", 2)
    with pytest.raises(flywheel.JobNotFound):
        flywheel.retry_job(db, "no-such-job")
    with pytest.raises(flywheel.JobNotFound):
        flywheel.cancel_job(db, "no-such-job")


def test_backoff_ladder_caps_then_jitters():
    rng = random.Random(1)
    base, cap = timedelta(seconds=1), timedelta(hours=1)
    for attempt, rung in [(1, 1), (2, 2), (3, 4), (7, 64), (13, 3600), (1_000_000, 3600)]:
        delays = [transitions.backoff(attempt, base, cap, rng=rng).total_seconds() for _ in range(200)]
        assert rung * 0.75 <= min(delays) and max(delays) <= rung * 1.25
        assert max(delays) - min(delays) > rung * 0.2  # jitter is really applied


def test_a_broken_classifier_or_next_retry_still_finalises_the_attempt(db, registry, client, make_runner, clock):
    class Broken(flywheel.Worker[Ping]):
        kind = "ping"

        def work(self, job):
            raise RuntimeError("worker failed")

        def classify(self, exc):
            return "fatal"  # not an ErrorClass

        def next_retry(self, job, error):
            raise ZeroDivisionError("bug in next_retry")

    registry.register(Broken())
    job_id = client.insert(Ping(), max_attempts=2)
    make_runner().run_available()
    job = job_row(db, job_id)
    assert job["state"] == "retryable" and job["lease_token"] is None
    assert [(r["outcome"], r["error_class"]) for r in run_rows(db, job_id)] == [("error", "transient")]
