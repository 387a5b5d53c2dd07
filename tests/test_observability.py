"""Observer events and the logging plugin: exactly one of finish/supersede per attempt, sweep
events, isolation of a raising observer, and the JSON/text log formats of a whole run."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import flywheel
from flywheel import Scheduler
from flywheel.api.client import build_job_row
from flywheel.plugins import make_plugin_manager
from flywheel_plugins import log_observer

REPO = Path(__file__).resolve().parents[1]
FAST = {"poll_interval": 0.02, "retry_backoff_base": 0.01, "max_retry_backoff": 0.05}
HOOKS = ("claim", "start", "finish", "retry", "supersede", "sweep")


class Recorder:
    """Keeps every event of every observer hook, by hook."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, list[Any]] = {hook: [] for hook in HOOKS}

    def _keep(self, hook: str, event: Any) -> None:
        with self.lock:
            self.events[hook].append(event)

    @flywheel.hookimpl
    def flywheel_on_claim(self, event: flywheel.ClaimEvent) -> None:
        self._keep("claim", event)

    @flywheel.hookimpl
    def flywheel_on_start(self, event: flywheel.JobEvent) -> None:
        self._keep("start", event)

    @flywheel.hookimpl
    def flywheel_on_finish(self, event: flywheel.FinishEvent) -> None:
        self._keep("finish", event)

    @flywheel.hookimpl
    def flywheel_on_retry(self, event: flywheel.RetryEvent) -> None:
        self._keep("retry", event)

    @flywheel.hookimpl
    def flywheel_on_supersede(self, event: flywheel.SupersedeEvent) -> None:
        self._keep("supersede", event)

    @flywheel.hookimpl
    def flywheel_on_sweep(self, event: flywheel.SweepEvent) -> None:
        self._keep("sweep", event)


class Raiser:
    """An observer plugin that raises from every hook."""

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_claim(self, event: Any) -> None:
        raise RuntimeError("observer bug")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_start(self, event: Any) -> None:
        raise RuntimeError("observer bug")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_finish(self, event: Any) -> None:
        raise RuntimeError("observer bug")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_retry(self, event: Any) -> None:
        raise RuntimeError("observer bug")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_supersede(self, event: Any) -> None:
        raise RuntimeError("observer bug")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_sweep(self, event: Any) -> None:
        raise RuntimeError("observer bug")


def workload(db: flywheel.Database) -> tuple[flywheel.Registry, dict[str, str]]:
    """ok succeeds, boom is discarded, flaky retries once, hold is cancelled while it runs (superseded)."""
    registry = flywheel.Registry()

    @registry.worker("ok")
    def ok(job: flywheel.Job[Any]) -> None:
        return None

    @registry.worker("boom")
    def boom(job: flywheel.Job[Any]) -> None:
        raise flywheel.Permanent("never works")

    @registry.worker("flaky")
    def flaky(job: flywheel.Job[Any]) -> None:
        if job.attempt == 1:
            raise RuntimeError("works the second time")

    @registry.worker("hold")
    def hold(job: flywheel.Job[Any]) -> None:
        flywheel.cancel_job(db, job.id)  # an operator cancels it while it runs: its result is fenced

    client = flywheel.Client(db)
    return registry, {kind: client.enqueue(kind, {}) for kind in ("ok", "boom", "flaky", "hold")}


def expire_leases(db: flywheel.Database, *max_attempts: int) -> None:
    """Running jobs whose lease expired a second ago (their process died)."""
    now = flywheel.current_clock().now()
    rows = []
    for limit in max_attempts:
        row = build_job_row("lost", "{}", flywheel.InsertOpts(max_attempts=limit), now)
        row.update(state="running", attempt=1, leased_until=now - timedelta(seconds=1), lease_token="gone")
        rows.append(row)
    db.driver.enqueue(db, rows)


# -- events -------------------------------------------------------------------------------


def test_every_attempt_gets_exactly_one_of_finish_or_supersede(db: flywheel.Database) -> None:
    recorder = Recorder()
    pm = make_plugin_manager(load_entrypoints=False, plugins=[recorder])
    registry, ids = workload(db)

    runs = flywheel.Runner(db, registry, pm=pm, concurrency=2, **FAST).run_until_idle(timeout=30)

    events = recorder.events
    assert runs == 5
    started = {e.run_id for e in events["start"]}
    finished = {e.run_id for e in events["finish"]}
    superseded = {e.run_id for e in events["supersede"]}
    assert len(started) == 5 and finished | superseded == started and not finished & superseded
    assert len(events["finish"]) == 4 and len(events["supersede"]) == 1
    (supersede,) = events["supersede"]
    assert (supersede.job_id, supersede.kind, supersede.outcome) == (ids["hold"], "hold", flywheel.RunOutcome.SUCCESS)
    assert flywheel.find_job(db, ids["hold"]).state == "cancelled"
    by_kind = {(e.kind, e.attempt): e for e in events["finish"]}
    assert by_kind["boom", 1].state is flywheel.JobState.DISCARDED
    assert by_kind["boom", 1].error_class is flywheel.ErrorClass.PERMANENT
    assert by_kind["flaky", 1].state is flywheel.JobState.RETRYABLE
    assert by_kind["flaky", 2].state is by_kind["ok", 1].state is flywheel.JobState.SUCCEEDED
    assert [(e.job_id, e.next_attempt) for e in events["retry"]] == [(ids["flaky"], 2)]
    assert sum(e.claimed for e in events["claim"]) == 5


def test_the_sweep_is_observed_after_every_pass(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    recorder = Recorder()
    pm = make_plugin_manager(load_entrypoints=False, plugins=[recorder])
    scheduler = Scheduler(db, pm=pm)

    assert scheduler.sweep() == 0
    expire_leases(db, 3, 1)  # one goes back to the queue, one has no attempt left
    assert scheduler.sweep() == 2

    empty, busy = recorder.events["sweep"]
    assert (empty.reclaimed, empty.discarded, empty.error) == (0, 0, None)
    assert (busy.reclaimed, busy.discarded, busy.error) == (2, 1, None)
    assert busy.duration >= timedelta(0)


def test_a_failed_sweep_is_observed_with_its_error(db: flywheel.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    scheduler = Scheduler(db, pm=make_plugin_manager(load_entrypoints=False, plugins=[recorder]))

    def broken(*args: Any) -> Any:
        raise RuntimeError("database away")

    monkeypatch.setattr(db.driver, "sweep", broken)
    with pytest.raises(RuntimeError, match="database away"):
        scheduler.sweep()
    (event,) = recorder.events["sweep"]
    assert event.reclaimed == 0 and str(event.error) == "database away"


def test_an_observer_that_raises_changes_no_outcome_and_is_logged_once_per_failure(
        db: flywheel.Database, clock: flywheel.FixedClock, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    pm = make_plugin_manager(load_entrypoints=False, plugins=[Raiser(), recorder])
    registry, ids = workload(db)
    expire_leases(db, 3)

    with caplog.at_level(logging.ERROR, logger="flywheel.plugins"):
        scheduler = Scheduler(db, pm=pm)
        scheduler.sweep()
        runner = flywheel.Runner(db, registry, pm=pm, concurrency=2, **FAST, queues=["default"])
        runner.run_available()
        clock.advance(timedelta(seconds=1))  # the retry is due
        runner.run_available()

    states = {kind: flywheel.find_job(db, job_id).state for kind, job_id in ids.items()}
    assert states == {"ok": "succeeded", "boom": "discarded", "flaky": "succeeded", "hold": "cancelled"}
    logged = Counter(r.getMessage().rsplit(" in ", 1)[-1] for r in caplog.records
                     if r.name == "flywheel.plugins" and "observer" in r.getMessage())
    seen = {f"flywheel_on_{hook}": len(events) for hook, events in recorder.events.items()}
    assert all(seen.values()), seen  # every hook fired at least once
    assert logged == seen  # one log record per failure, no more, no less
    assert all(r.exc_info is not None for r in caplog.records if r.name == "flywheel.plugins")


# -- the logging plugin -------------------------------------------------------------------

JSON_RUN = """
    import logging, sys
    from datetime import timedelta
    import flywheel
    from flywheel.api.client import build_job_row
    from flywheel_plugins.log_observer import configure

    configure("debug", "json")
    db = flywheel.connect(sys.argv[1])
    flywheel.migrate(db)
    registry = flywheel.Registry()

    @registry.worker("ok")
    def ok(job):
        job.logger.info("a worker's own line\\nwith a line break\\u2028and a line separator")

    @registry.worker("boom")
    def boom(job):
        raise flywheel.Permanent("never works")

    @registry.worker("flaky")
    def flaky(job):
        if job.attempt == 1:
            raise RuntimeError("works the second time")

    @registry.worker("hold")
    def hold(job):
        flywheel.cancel_job(db, job.id)

    client = flywheel.Client(db)
    for kind in ("ok", "boom", "flaky", "hold"):
        client.enqueue(kind, {})
    now = flywheel.current_clock().now()
    row = build_job_row("lost", "{}", flywheel.InsertOpts(), now)
    row.update(state="running", attempt=1, leased_until=now - timedelta(seconds=1), lease_token="gone")
    db.driver.enqueue(db, [row])
    flywheel.Scheduler(db).sweep()
    db.Job.delete().where(db.Job.kind == "lost").execute()
    flywheel.Runner(db, registry, poll_interval=0.02, retry_backoff_base=0.01).run_until_idle(timeout=60)
    try:
        raise ValueError("with a traceback")
    except ValueError:
        logging.getLogger("myapp").exception("something broke")
    db.close()
"""


def test_the_json_format_writes_one_object_per_line_for_a_whole_run(db_url: str) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(JSON_RUN), db_url], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line of the run parses
    assert len(records) > 20 and all(isinstance(r, dict) for r in records)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    events = [r for r in records if r["logger"] == "flywheel.events"]
    by_action = Counter(r["action"] for r in events)
    assert by_action["job_started"] == by_action["job_finished"] + by_action["job_superseded"] == 5
    assert by_action["job_superseded"] == 1 and by_action["job_retry"] == 1
    finished = [r for r in events if r["action"] == "job_finished"]
    for record in finished:
        assert {"job_id", "run_id", "kind", "queue", "attempt", "outcome", "duration", "error_class"} <= record.keys()
        assert isinstance(record["duration"], float) and record["queue"] == "default"
    levels = {(r["kind"], r["outcome"], r["attempt"]): r["level"] for r in finished}
    assert levels == {("ok", "success", 1): "debug", ("flaky", "error", 1): "info",
                      ("flaky", "success", 2): "debug", ("boom", "error", 1): "warning"}
    boom = next(r for r in finished if r["kind"] == "boom")
    assert (boom["error_class"], boom["state"], boom["error"]) == ("permanent", "discarded", "Permanent: never works")
    (superseded,) = (r for r in events if r["action"] == "job_superseded")
    assert superseded["level"] == "warning" and superseded["kind"] == "hold" and superseded["outcome"] == "success"
    (sweep,) = (r for r in events if r["action"] == "lease_sweep")
    assert (sweep["level"], sweep["reclaimed"], sweep["discarded"]) == ("info", 1, 0)
    own = next(r for r in records if r["logger"] == "flywheel.jobs")
    assert own["message"] == "a worker's own line\nwith a line break\u2028and a line separator" and own["kind"] == "ok"
    broke = next(r for r in records if r["logger"] == "myapp")
    assert broke["level"] == "error" and "ValueError: with a traceback" in broke["exc_info"]


def test_the_text_format_is_one_readable_line_per_record(db: flywheel.Database) -> None:
    stream = io.StringIO()
    handler = log_observer.configure("info", "text", stream=stream, logger_name="flywheel")
    try:
        registry, ids = workload(db)
        flywheel.Runner(db, registry, pm=make_plugin_manager(disabled=[]), **FAST).run_until_idle(timeout=30)
    finally:
        logger = logging.getLogger("flywheel")
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    discarded = next(line for line in lines if ids["boom"] in line)
    assert " WARNING flywheel.events: flywheel: job " in discarded
    assert discarded.endswith("(boom) attempt 1 discarded the job in " + discarded.split(" in ")[-1])
    assert "Permanent: never works" in discarded
    assert any(ids["hold"] in line and "was superseded" in line for line in lines)
    assert not any(ids["ok"] in line for line in lines)  # a success is DEBUG: not shown at INFO
    assert not any(line.lstrip().startswith("{") for line in lines)


def test_configure_replaces_its_handler_and_rejects_bad_values() -> None:
    target = logging.getLogger("flywheel.test-configure")
    try:
        first = log_observer.configure("debug", "json", stream=io.StringIO(), logger_name=target.name)
        second = log_observer.configure("WARNING", "text", stream=io.StringIO(), logger_name=target.name)
        assert target.handlers == [second] and first is not second and target.level == logging.WARNING
    finally:
        for handler in list(target.handlers):
            target.removeHandler(handler)
    with pytest.raises(ValueError, match=r"log\.format: must be one of text, json, not 'yaml'"):
        log_observer.configure("info", "yaml")
    with pytest.raises(ValueError, match=r"log\.level: must be one of debug, info, .*not 'loud'"):
        log_observer.configure("loud", "text")


# -- prometheus-client is optional ------------------------------------------------------------

NO_PROMETHEUS = """
    import sys
    sys.modules["prometheus_client"] = None  # as if the extra were not installed
    import flywheel
    from flywheel.plugins import make_plugin_manager
    from flywheel_plugins import prometheus

    pm = make_plugin_manager(disabled=[])  # the plugin loads, quietly
    assert pm.is_registered(prometheus)
    enabled, message = prometheus.status()
    print(enabled)
    print(message)
    try:
        prometheus.PrometheusObserver()
    except ImportError as exc:
        print(exc)
"""


def test_without_prometheus_client_the_plugin_is_quiet_and_says_how_to_enable_it() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(NO_PROMETHEUS)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    enabled, message, error = done.stdout.splitlines()
    assert enabled == "False"
    assert "prometheus-client is not installed" in message and "pip install 'flywheel-jobs[prometheus]'" in message
    assert error == "flywheel: metrics need prometheus-client: pip install 'flywheel-jobs[prometheus]'"
    from flywheel_plugins import prometheus

    assert prometheus.status()[0] is True


# -- the dashboard and the alerts use only series that exist ----------------------------------


def exported_series(db: flywheel.Database) -> set[str]:
    from flywheel_plugins.prometheus import PrometheusObserver

    names = set()
    for family in PrometheusObserver(db=db).registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_the_grafana_dashboard_and_the_alerts_use_only_exported_series(sqlite_db: flywheel.Database) -> None:
    import re

    exported = exported_series(sqlite_db)
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    operations = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    exprs += re.findall(r"```promql\n(.*?)```", operations, re.DOTALL)
    used = {name for expr in exprs for name in re.findall(r"\bflywheel_\w+", expr)}
    assert len(exprs) > 15 and used, "no PromQL found"
    assert used <= exported, f"unknown series: {sorted(used - exported)}"
    for name in ("flywheel_jobs_finished_total", "flywheel_queue_oldest_ready_seconds",
                 "flywheel_job_duration_seconds_bucket", "flywheel_jobs_retried_total", "flywheel_queue_ready"):
        assert name in used, f"the dashboard/alerts do not show {name}"
