"""The node: components, services, failures, and a drain on SIGTERM that loses nothing."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

import flywheel
from flywheel import HealthConfig, Node, RunnerConfig, SchedulerConfig, ValidationError
from flywheel.runtime.node import SIGNAL_REPEAT_WINDOW
from flywheel.plugins import hookimpl, make_plugin_manager
from tests.helpers import job_row, run_in_thread, run_rows, wait_for

REPO = Path(__file__).resolve().parents[1]


FAST = {"poll_interval": 0.02}


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(("config", "component"), [(RunnerConfig, flywheel.Runner),
                                                  (SchedulerConfig, flywheel.Scheduler)])
def test_configs_take_exactly_the_component_keywords_with_the_same_defaults(config: Any, component: Any) -> None:
    parameters = {name: p for name, p in inspect.signature(component).parameters.items()
                  if name not in ("self", "db", "registry")}
    fields = {f.name: f for f in attrs.fields(config)}
    assert list(fields) == list(parameters)
    instance = config()
    for name, parameter in parameters.items():
        assert getattr(instance, name) == parameter.default, name


def test_configs_normalise_durations_and_are_frozen() -> None:
    config = RunnerConfig(queues="q", lease=2, poll_interval=0.5)
    assert (config.queues, config.lease, config.poll_interval) == (("q",), timedelta(seconds=2),
                                                                 timedelta(milliseconds=500))
    assert SchedulerConfig(retention=3600).retention == timedelta(hours=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.lease = timedelta(1)  # type: ignore[misc]
    with pytest.raises(ValidationError) as caught:
        RunnerConfig(lease="soon")  # type: ignore[arg-type]
    assert caught.value.field == "lease"
    assert HealthConfig().addr is None and HealthConfig(addr="127.0.0.1:9090").addr == "127.0.0.1:9090"


def test_node_validates_its_components(db: flywheel.Database, registry: flywheel.Registry) -> None:
    with pytest.raises(ValidationError) as caught:
        Node(db, registry, runners=[])
    assert caught.value.field == "runners"
    with pytest.raises(ValidationError) as caught:
        Node(db, registry, runners=[RunnerConfig(), RunnerConfig(concurrency=0)])
    assert caught.value.field == "concurrency" and "runner[1]" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        Node(db, registry, scheduler=SchedulerConfig(backfill_cap=0))
    assert caught.value.field == "backfill_cap"
    with pytest.raises(ValidationError) as caught:
        Node(db, registry, drain_timeout=-1)
    assert caught.value.field == "drain_timeout"
    node = Node(db, registry, drain_timeout=5)
    assert node.drain_timeout == timedelta(seconds=5) and len(node.runners) == 1 and node.scheduler is not None
    assert Node(db, registry, scheduler=None).scheduler is None


# -- lifecycle in-process ------------------------------------------------------------


def test_a_node_runs_its_runners_and_scheduler_and_stop_drains(db: flywheel.Database,
                                                              registry: flywheel.Registry) -> None:
    seen: list[str] = []

    @registry.worker("ping")
    def ping(job: flywheel.Job[Any]) -> None:
        seen.append(job.queue)

    flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="tick", kind="ping", every=1))
    client = flywheel.Client(db)
    for n in range(20):
        client.enqueue("ping", {}, queue="a" if n % 2 else "b")
    node = Node(db, registry, runners=[RunnerConfig(queues=["a", "periodic"], concurrency=4, **FAST),
                                       RunnerConfig(queues="b", concurrency=2, **FAST)],
                scheduler=SchedulerConfig(tick_interval=0.05))
    thread, errors = run_in_thread(node)
    wait_for(lambda: len(seen) >= 20 and "periodic" in seen, timeout=10, what="the jobs and a periodic fire")
    node.stop()
    thread.join(10)
    assert not thread.is_alive() and errors == []
    assert flywheel.count_active_jobs(db) == 0
    assert {"a", "b", "periodic"} <= set(seen)


def test_drain_timeout_releases_stuck_jobs_for_another_node_at_once(db: flywheel.Database,
                                                                     registry: flywheel.Registry) -> None:
    release = threading.Event()
    started = threading.Event()

    @registry.worker("stuck")
    def stuck(job: flywheel.Job[Any]) -> flywheel.Result:
        if job.attempt == 1:
            started.set()
            release.wait(20)
            return flywheel.Result(output="late")
        return flywheel.Result(output="second")

    quick_started = threading.Event()

    @registry.worker("quick")
    def quick(job: flywheel.Job[Any]) -> None:
        quick_started.set()
        wait_for(lambda: node.stopping, what="the node to stop")  # still running when the drain begins

    client = flywheel.Client(db)
    stuck_id = client.enqueue("stuck", {})
    node = Node(db, registry, runners=[RunnerConfig(concurrency=4, lease=30, **FAST)], scheduler=None,
                drain_timeout=0.5)
    thread, errors = run_in_thread(node)
    assert started.wait(10)
    quick_id = client.enqueue("quick", {})
    assert quick_started.wait(10)  # in flight: its worker runs (a claimed job not yet started is handed back)
    stopped = time.monotonic()
    node.stop()
    thread.join(10)
    assert time.monotonic() - stopped < 0.5 + 1.0 and errors == []

    assert job_row(db, quick_id)["state"] == "succeeded"  # finished within the drain: committed
    job = job_row(db, stuck_id)
    assert (job["state"], job["leased_until"], job["lease_token"]) == ("available", None, None)
    assert [r["outcome"] for r in run_rows(db, stuck_id)] == ["crashed"]

    release.set()  # the abandoned attempt returns; its outcome is fenced
    wait_for(lambda: node.runners[0].in_flight == 0, what="the abandoned attempt to finish")
    assert job_row(db, stuck_id)["state"] == "available"
    assert [r["outcome"] for r in run_rows(db, stuck_id)] == ["crashed"]

    assert flywheel.Runner(db, registry, **FAST).run_until_idle(timeout=10) == 1
    assert [(r["outcome"], r["output"]) for r in run_rows(db, stuck_id)] == [("crashed", None), ("success", "second")]


class Recorder:
    def __init__(self, name: str, events: list[str], fail_start: bool = False) -> None:
        self.name, self.events, self.fail_start = name, events, fail_start

    def start(self) -> None:
        self.events.append(f"start {self.name}")
        if self.fail_start:
            raise OSError(f"{self.name}: address already in use")

    def stop(self) -> None:
        self.events.append(f"stop {self.name}")


class ServicesPlugin:
    def __init__(self, *services: Recorder) -> None:
        self.services = list(services)
        self.nodes: list[Node] = []

    @hookimpl
    def flywheel_services(self, node: Node) -> list[Recorder]:
        self.nodes.append(node)
        return self.services


def test_services_start_in_order_and_stop_in_reverse(db: flywheel.Database, registry: flywheel.Registry) -> None:
    events: list[str] = []
    plugin = ServicesPlugin(Recorder("a", events), Recorder("b", events))
    # the built-in health and prometheus services would join the list: only this plugin's here
    pm = make_plugin_manager(plugins=[plugin], disabled=["health", "prometheus"])
    node = Node(db, registry, runners=[RunnerConfig(**FAST)], scheduler=None, pm=pm,
                health=HealthConfig(addr="127.0.0.1:0"))
    thread, errors = run_in_thread(node)
    wait_for(lambda: len(events) == 2)
    assert not node.stopping
    node.stop()
    thread.join(10)
    assert errors == [] and events == ["start a", "start b", "stop b", "stop a"]
    assert plugin.nodes == [node] and node.services == plugin.services
    assert node.runners[0].pm is pm


def test_a_service_that_cannot_start_tears_the_node_down(db: flywheel.Database, registry: flywheel.Registry,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    pm = make_plugin_manager(plugins=[ServicesPlugin(Recorder("a", events), Recorder("b", events, fail_start=True),
                                                     Recorder("c", events))])
    flywheel.Client(db).enqueue("ping", {})
    node = Node(db, registry, runners=[RunnerConfig(**FAST)], pm=pm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(OSError, match="address already in use"):
        node.run()  # on the main thread: signal handlers are installed and restored
    assert events == ["start a", "start b", "stop a"]
    assert flywheel.count_runs(db) == 0  # no runner ever claimed
    assert "node stopped with error" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_failing_runner_tears_the_node_down(db: flywheel.Database, registry: flywheel.Registry) -> None:
    events: list[str] = []
    pm = make_plugin_manager(plugins=[ServicesPlugin(Recorder("a", events))])
    node = Node(db, registry, runners=[RunnerConfig(**FAST), RunnerConfig(**FAST)],
                scheduler=SchedulerConfig(tick_interval=0.05), pm=pm)
    broken = node.runners[1]

    def explode(stop_event: threading.Event | None = None) -> None:
        wait_for(lambda: node.runners[0].running, what="the other runner to run")  # fails a running node
        raise RuntimeError("runner exploded")

    broken.run = explode  # type: ignore[method-assign]
    thread, errors = run_in_thread(node)
    thread.join(10)
    assert not thread.is_alive()
    assert [str(e) for e in errors] == ["runner exploded"]
    assert events == ["start a", "stop a"]


def test_a_service_can_fail_the_node_later(db: flywheel.Database, registry: flywheel.Registry) -> None:
    node = Node(db, registry, runners=[RunnerConfig(**FAST)], scheduler=None)
    thread, errors = run_in_thread(node)
    wait_for(lambda: node.runners[0].running, what="the node to run")
    node.fail(ConnectionError("health server died"), "health")
    thread.join(10)
    assert [type(e) for e in errors] == [ConnectionError]
    with pytest.raises(RuntimeError):
        node.run()  # a node runs once


# -- signals, in real processes ----------------------------------------------------------

NODE = """
    import logging, os, sys, time
    import flywheel
    url, events_path, log_path, drain = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    logging.basicConfig(level=logging.INFO, filename=log_path, format="%(asctime)s %(name)s %(message)s")
    events = os.open(events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    db = flywheel.connect(url)
    registry = flywheel.Registry()

    @registry.worker("slow")
    def slow(job):
        os.write(events, f"start {job.id} {job.attempt} {time.time():.6f}\\n".encode())
        time.sleep(job.args["sleep"])
        os.write(events, f"end {job.id} {job.attempt} {time.time():.6f}\\n".encode())

    node = flywheel.Node(
        db, registry, runners=[flywheel.RunnerConfig(concurrency=100, prefetch=0, poll_interval=0.05, lease=10)] * 2,
        scheduler=flywheel.SchedulerConfig(tick_interval=0.2),
        drain_timeout=None if drain == "none" else float(drain))
    node.run()
    print("run returned", flush=True)
"""


def spawn_node(url: str, tmp_path: Path, drain: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(NODE), url, str(tmp_path / "events"), str(tmp_path / "node.log"),
         drain], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_events(path: Path) -> dict[str, list[tuple[str, int, float]]]:
    by_job: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        what, job_id, attempt, at = line.split()
        by_job[job_id].append((what, int(attempt), float(at)))
    return by_job


@pytest.mark.slow
def test_sigterm_drains_200_jobs_in_flight_and_hands_the_rest_on(db_url: str, db: flywheel.Database,
                                                                tmp_path: Path) -> None:
    drain_timeout = 2.5
    client = flywheel.Client(db)
    short = [client.enqueue("slow", {"sleep": 1.5}) for _ in range(100)]  # finish within the drain
    long = [client.enqueue("slow", {"sleep": 60.0}) for _ in range(100)]  # still running at the deadline
    node = spawn_node(db_url, tmp_path, str(drain_timeout))
    try:
        # in flight = the workers have started them (a claimed job whose worker has not started
        # yet is handed back unstarted, with its attempt unused)
        wait_for(lambda: flywheel.overview(db).counts_by_state.get("running", 0) == 200
                 and (tmp_path / "events").exists() and (tmp_path / "events").read_text().count("start ") == 200,
                 timeout=30, what="200 jobs in flight")
        node.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        out, err = node.communicate(timeout=drain_timeout + 10)
        exited = time.time()
        elapsed = time.monotonic() - signalled
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate()
    log = (tmp_path / "node.log").read_text()
    print(f"\n{db.dialect}: node exited {elapsed:.2f}s after SIGTERM (drain_timeout {drain_timeout}s)")
    assert node.returncode == 0, err + log
    assert out.strip() == "run returned"
    assert elapsed < drain_timeout + 2.0, f"exited {elapsed:.2f}s after SIGTERM"
    assert "SIGTERM received, draining" in log and "drain timed out" in log

    now = datetime.now(UTC)
    for job_id in short:  # finished during the drain: committed
        assert job_row(db, job_id)["state"] == "succeeded"
        assert [r["outcome"] for r in run_rows(db, job_id)] == ["success"]
    for job_id in long:  # released: claimable at once by anyone
        job = job_row(db, job_id)
        assert (job["state"], job["leased_until"], job["lease_token"], job["attempt"]) == ("available", None,
                                                                                         None, 1)
        assert job["scheduled_at"] <= now
        assert [r["outcome"] for r in run_rows(db, job_id)] == ["crashed"]

    registry = flywheel.Registry()
    events = os.open(tmp_path / "events", os.O_WRONLY | os.O_APPEND)

    @registry.worker("slow")
    def slow(job: flywheel.Job[Any]) -> None:
        os.write(events, f"start {job.id} {job.attempt} {time.time():.6f}\n".encode())
        os.write(events, f"end {job.id} {job.attempt} {time.time():.6f}\n".encode())

    assert flywheel.Runner(db, registry, concurrency=20, poll_interval=0.02).run_until_idle(timeout=30) == 100
    os.close(events)

    assert flywheel.overview(db).counts_by_state == {"succeeded": 200}
    history = read_events(tmp_path / "events")
    assert set(history) == {*short, *long}
    for job_id, entries in history.items():
        runs = run_rows(db, job_id)
        assert sum(r["outcome"] == "success" for r in runs) == 1
        first_end = next((at for what, attempt, at in entries if what == "end" and attempt == 1), exited)
        second_start = [at for what, attempt, at in entries if what == "start" and attempt == 2]
        if job_id in long:  # never ran twice at once: the second attempt began after the first was gone
            assert not any(what == "end" and attempt == 1 for what, attempt, _ in entries)
            assert len(second_start) == 1 and second_start[0] > first_end
        else:
            assert second_start == []


@pytest.mark.slow
def test_a_second_signal_exits_at_once(sqlite_db: flywheel.Database, tmp_path: Path) -> None:
    url = f"sqlite:///{sqlite_db.driver.path}"  # type: ignore[attr-defined]
    flywheel.Client(sqlite_db).enqueue("slow", {"sleep": 60.0})
    node = spawn_node(url, tmp_path, "none")  # an unbounded drain
    try:
        wait_for(lambda: (tmp_path / "events").exists() and "start" in (tmp_path / "events").read_text(),
                 what="the job to start")
        node.send_signal(signal.SIGINT)
        wait_for(lambda: "SIGINT received, draining" in (tmp_path / "node.log").read_text(), what="the drain")
        time.sleep(SIGNAL_REPEAT_WINDOW + 0.3)  # an operator's second signal, not a repeat of the first
        assert node.poll() is None  # still draining: the job takes a minute
        node.send_signal(signal.SIGTERM)
        second = time.monotonic()
        out, err = node.communicate(timeout=10)
        assert time.monotonic() - second < 2.0
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate()
    assert node.returncode == 1
    assert out == ""  # run() never returned
    assert "second SIGTERM, exiting immediately" in (tmp_path / "node.log").read_text()
    assert job_row(sqlite_db, flywheel.list_jobs(sqlite_db)[0].id)["state"] == "running"  # left for the sweep


@pytest.mark.slow
def test_a_stop_signal_delivered_twice_at_once_still_drains(sqlite_db: flywheel.Database, tmp_path: Path) -> None:
    """``timeout 60 flywheel serve`` signals the child and then its process group: one stop, not two."""
    url = f"sqlite:///{sqlite_db.driver.path}"  # type: ignore[attr-defined]
    job_id = flywheel.Client(sqlite_db).enqueue("slow", {"sleep": 1.0})
    node = spawn_node(url, tmp_path, "none")  # an unbounded drain
    try:
        wait_for(lambda: (tmp_path / "events").exists() and "start" in (tmp_path / "events").read_text(),
                 what="the job to start")
        node.send_signal(signal.SIGTERM)
        node.send_signal(signal.SIGTERM)
        node.communicate(timeout=30)
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate()
    log = (tmp_path / "node.log").read_text()
    assert node.returncode == 0, log
    assert "SIGTERM received, draining" in log and "second SIGTERM" not in log
    assert job_row(sqlite_db, job_id)["state"] == "succeeded"  # drained, not abandoned
