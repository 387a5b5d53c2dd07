"""Every ``flywheel`` command through click's runner, on SQLite and PostgreSQL: output, JSON shapes,
exit statuses and the one-line errors for bad input."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from click.testing import CliRunner, Result

import flywheel
from flywheel.cli import build_cli
from flywheel.plugins import make_plugin_manager
from tests.helpers import wait_for

Run = Callable[..., Result]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no config file and no FLYWHEEL_* settings from the outside."""
    for name in list(os.environ):
        if name.startswith("FLYWHEEL_") and name != "FLYWHEEL_TEST_PG_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def make_run(url: str | None, pm: Any = None) -> Run:
    manager = pm or make_plugin_manager()

    def run(*args: str, **kwargs: Any) -> Result:
        prefix = ["--db", url] if url else []
        return CliRunner().invoke(build_cli(manager), [*prefix, *args], **kwargs)

    return run


@pytest.fixture
def cli(db_url: str, isolated: Path) -> Run:
    run = make_run(db_url)
    assert run("migrate").exit_code == 0
    return run


@pytest.fixture
def database(db_url: str, cli: Run) -> Iterator[flywheel.Database]:
    db = flywheel.connect(db_url)
    yield db
    db.close()


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result.stdout


def failed(result: Result, code: int, *fragments: str) -> str:
    """The failure's single stderr line, after checking its status and what it says."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flywheel: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def run_jobs(db: flywheel.Database) -> None:
    registry = flywheel.Registry()

    @registry.worker("send_email")
    def send_email(job: flywheel.Job[dict[str, Any]]) -> flywheel.Result:
        if job.args.get("fail"):
            raise flywheel.Permanent("mailbox full")
        return flywheel.Result(output={"sent_to": job.args["to"]})

    flywheel.Runner(db, registry, poll_interval=0.02).run_until_idle(timeout=30)


# -- migrate, enqueue, jobs -------------------------------------------------------------


def test_migrate_is_idempotent_and_names_the_database(cli: Run, db_url: str) -> None:
    shown = flywheel.connect(db_url).url  # the URL with any password hidden
    assert ok(cli("migrate")) == f"schema up to date ({shown})\n"


def test_enqueue_prints_the_id_alone(cli: Run, database: flywheel.Database) -> None:
    out = ok(cli("enqueue", "send_email", '{"to": "a@b"}'))
    job_id = out.strip()
    assert out == job_id + "\n" and re.fullmatch(r"[0-9a-f-]{36}", job_id)
    job = flywheel.find_job(database, job_id)
    assert (job.kind, job.args, job.queue, job.priority, job.max_attempts) == (
        "send_email", {"to": "a@b"}, "default", 100, 25)


def test_enqueue_takes_every_option(cli: Run, database: flywheel.Database) -> None:
    job_id = ok(cli("enqueue", "report", "[1, 2]", "--queue", "reports", "--priority", "-5", "--unique", "r-1",
                    "--unique-active", "ra-1", "--at", "2030-01-02T03:04:05Z", "--max-attempts", "3",
                    "--executor-class", "gpu")).strip()
    job = flywheel.find_job(database, job_id)
    assert (job.queue, job.priority, job.unique_key, job.unique_active_key, job.max_attempts, job.executor_class) == (
        "reports", -5, "r-1", "ra-1", 3, "gpu")
    assert job.args == [1, 2]
    assert job.scheduled_at is not None and job.scheduled_at.isoformat().startswith("2030-01-02T03:04:05")


def test_enqueue_at_relative_and_local_times(cli: Run, database: flywheel.Database) -> None:
    soon = flywheel.find_job(database, ok(cli("enqueue", "k", "--at", "+1h")).strip())
    assert soon.scheduled_at - soon.enqueued_at == pytest.approx(timedelta(hours=1), abs=timedelta(seconds=30))
    local = flywheel.find_job(database, ok(cli("enqueue", "k", "--at", "2031-05-01 09:00")).strip())
    assert local.scheduled_at is not None and local.scheduled_at.year == 2031


def test_enqueue_a_taken_unique_key_is_an_operational_error(cli: Run, database: flywheel.Database) -> None:
    first = ok(cli("enqueue", "k", "--unique", "only-once")).strip()
    failed(cli("enqueue", "k", "--unique", "only-once"), 1, "already enqueued", "only-once", first)
    assert flywheel.overview(database).total == 1


def test_enqueue_invalid_json_is_a_usage_error_and_inserts_nothing(cli: Run, database: flywheel.Database) -> None:
    failed(cli("enqueue", "k", "{not json"), 2, "JSON", "must be valid JSON")
    assert flywheel.overview(database).total == 0


@pytest.mark.parametrize("at", ["tomorrow", "2026-13-01", "+soon"])
def test_enqueue_bad_at_is_a_usage_error(cli: Run, database: flywheel.Database, at: str) -> None:
    failed(cli("enqueue", "k", "--at", at), 2, "--at", repr(at))
    assert flywheel.overview(database).total == 0


def test_jobs_ls_table_filters_and_json(cli: Run, database: flywheel.Database) -> None:
    assert ok(cli("jobs", "ls")).strip() == "no jobs"
    a = ok(cli("enqueue", "send_email", '{"to": "a@b"}')).strip()
    b = ok(cli("enqueue", "report", "--queue", "reports")).strip()
    lines = ok(cli("jobs", "ls")).splitlines()
    assert lines[0].split() == ["ID", "KIND", "QUEUE", "STATE", "ATTEMPT", "ENQUEUED"]
    assert lines[1].startswith(b) and lines[2].startswith(a)  # newest first
    assert lines[1].index("report") == lines[0].index("KIND")  # aligned columns
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$", lines[1])  # local time with its zone
    assert [r["id"] for r in json.loads(ok(cli("jobs", "ls", "--json")))] == [b, a]
    assert [r["id"] for r in json.loads(ok(cli("jobs", "ls", "--json", "--kind", "send_email")))] == [a]
    assert [r["id"] for r in json.loads(ok(cli("jobs", "ls", "--json", "--queue", "reports")))] == [b]
    assert [r["id"] for r in json.loads(ok(cli("jobs", "ls", "--json", "--limit", "1")))] == [b]
    assert json.loads(ok(cli("jobs", "ls", "--json", "--state", "succeeded"))) == []


def test_jobs_ls_unknown_state_is_a_usage_error(cli: Run) -> None:
    failed(cli("jobs", "ls", "--state", "finished"), 2, "--state", "'finished' is not one of")


def test_jobs_inspect_shows_runs_with_output_and_error(cli: Run, database: flywheel.Database) -> None:
    good = ok(cli("enqueue", "send_email", '{"to": "a@b"}')).strip()
    bad = ok(cli("enqueue", "send_email", '{"to": "x", "fail": true}')).strip()
    run_jobs(database)
    data = json.loads(ok(cli("jobs", "inspect", good, "--json")))
    assert set(data) == {"job", "runs"}
    assert data["job"]["id"] == good and data["job"]["state"] == "succeeded"
    assert [(r["outcome"], r["output"]) for r in data["runs"]] == [("success", {"sent_to": "a@b"})]
    text = ok(cli("jobs", "inspect", good))
    assert f"Job {good}" in text and "state:         succeeded" in text and '"sent_to": "a@b"' in text
    assert "success" in text
    text = ok(cli("jobs", "inspect", bad))
    assert "discarded" in text and "permanent: Permanent: mailbox full" in text


def test_jobs_inspect_retry_cancel_of_a_missing_job(cli: Run) -> None:
    for command in ("inspect", "retry", "cancel"):
        failed(cli("jobs", command, "no-such-id"), 1, "job not found: no-such-id")


def test_jobs_retry_and_cancel(cli: Run, database: flywheel.Database) -> None:
    job_id = ok(cli("enqueue", "send_email", '{"to": "x", "fail": true}')).strip()
    assert ok(cli("jobs", "cancel", job_id)).strip() == f"cancelled {job_id}"
    assert flywheel.find_job(database, job_id).state == "cancelled"
    failed(cli("jobs", "cancel", job_id), 1, job_id, "already finished (cancelled)")
    assert ok(cli("jobs", "retry", job_id)).strip() == f"retried {job_id}"
    assert flywheel.find_job(database, job_id).state == "available"


# -- schedule ----------------------------------------------------------------------------


def test_schedule_add_ls_disable_enable_rm(cli: Run, database: flywheel.Database) -> None:
    assert ok(cli("schedule", "ls")).strip() == "no schedules"
    out = ok(cli("schedule", "add", "nightly", "report", "--cron", "0 2 * * *", "--tz", "Europe/Berlin",
                 "--args", '{"format": "pdf"}', "--queue", "reports"))
    assert out.startswith("scheduled nightly (report, cron 0 2 * * * (Europe/Berlin)), next run ")
    ok(cli("schedule", "add", "tick", "ping", "--every", "5m"))
    lines = ok(cli("schedule", "ls")).splitlines()
    assert lines[0].split()[:5] == ["SLUG", "KIND", "QUEUE", "SCHEDULE", "ACTIVE"]
    assert lines[1].startswith("nightly") and "every 5m" in lines[2]
    views = json.loads(ok(cli("schedule", "ls", "--json")))
    assert [(v["slug"], v["kind"], v["queue"], v["active"], v["timezone"]) for v in views] == [
        ("nightly", "report", "reports", True, "Europe/Berlin"), ("tick", "ping", "periodic", True, "UTC")]
    assert views[0]["args"] == {"format": "pdf"} and views[1]["interval_seconds"] == 300
    assert ok(cli("schedule", "disable", "tick")).strip() == "disabled tick"
    assert not {v.slug: v for v in flywheel.list_periodics(database)}["tick"].active
    assert ok(cli("schedule", "enable", "tick")).startswith("enabled tick, next run ")
    assert ok(cli("schedule", "rm", "tick")).strip() == "removed tick"
    assert [v.slug for v in flywheel.list_periodics(database)] == ["nightly"]


@pytest.mark.parametrize(("args", "fragments"), [
    (["--every", "500ms"], ["--every", "at least 1s"]),
    (["--every", "soon"], ["--every", "not a duration"]),
    (["--cron", "every day"], ["--cron", "not a valid 5-field cron expression"]),
    (["--cron", "* * * * *", "--every", "1m"], ["exactly one of --cron and --every"]),
    ([], ["exactly one of --cron and --every"]),
    (["--every", "1m", "--tz", "Mars/Base"], ["--tz", "not a known IANA time zone"]),
    (["--every", "1m", "--args", "{x"], ["--args", "must be valid JSON"]),
])
def test_schedule_add_bad_input_is_a_usage_error(cli: Run, database: flywheel.Database, args: list[str],
                                                 fragments: list[str]) -> None:
    failed(cli("schedule", "add", "s", "k", *args), 2, *fragments)
    assert flywheel.list_periodics(database) == []


def test_schedule_commands_on_a_missing_slug(cli: Run) -> None:
    for command in ("rm", "enable", "disable"):
        failed(cli("schedule", command, "ghost"), 1, "no schedule named 'ghost'")


# -- status, prune -------------------------------------------------------------------------


def test_status_text_and_json(cli: Run, database: flywheel.Database) -> None:
    ok(cli("enqueue", "send_email", '{"to": "a@b"}'))
    ok(cli("enqueue", "send_email", '{"to": "x", "fail": true}'))
    run_jobs(database)
    ok(cli("enqueue", "send_email", '{"to": "c@d"}'))
    ok(cli("enqueue", "later", "--at", "+1h"))
    ok(cli("schedule", "add", "tick", "ping", "--every", "1h"))
    snap = json.loads(ok(cli("status", "--json")))
    assert set(snap) == {"database", "sampled_at", "health", "overview", "schedules", "recent_failures"}
    assert snap["health"]["ready"] == 1 and snap["health"]["scheduled_ahead"] == 1
    assert isinstance(snap["health"]["oldest_ready_age"], int)  # nanoseconds, as in go-flywheel
    assert snap["overview"]["total"] == 4 and snap["overview"]["counts_by_state"]["discarded"] == 1
    assert [s["slug"] for s in snap["schedules"]] == ["tick"]
    assert [f["error_message"] for f in snap["recent_failures"]] == ["Permanent: mailbox full"]
    text = ok(cli("status"))
    for fragment in ("ready:        1", "in-flight:    0", "scheduled:    1 (not yet due)", "jobs:         4 total",
                     "succeeded   1", "schedules:    1 active / 1 total", "- tick  ping  every 1h  next ",
                     "recent failures (last 24h): 1", "send_email", "permanent: Permanent: mailbox full"):
        assert fragment in text, text


def test_status_rejects_a_bad_interval(cli: Run) -> None:
    failed(cli("status", "--watch", "--interval", "often"), 2, "--interval")


def test_prune_deletes_finished_jobs_older_than(cli: Run, database: flywheel.Database) -> None:
    done = ok(cli("enqueue", "send_email", '{"to": "a@b"}')).strip()
    run_jobs(database)
    live = ok(cli("enqueue", "send_email", '{"to": "c@d"}')).strip()
    assert ok(cli("prune", "--older-than", "1h")).startswith("pruned 0 finished job(s) finalized before ")
    later = flywheel.FixedClock(flywheel.find_job(database, done).finalized_at + timedelta(days=15))
    with flywheel.use_clock(later):
        assert ok(cli("prune")).startswith("pruned 1 finished job(s)")  # default --older-than 14d
    assert [j.id for j in flywheel.list_jobs(database)] == [live]
    failed(cli("prune", "--older-than", "a while"), 2, "--older-than", "not a duration")


# -- doctor, plugins, version ---------------------------------------------------------------


def test_doctor_reports_settings_with_their_sources(cli: Run, isolated: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / "flywheel.toml").write_text('[runtime]\nconcurrency = 4\n[log]\nformat = "json"\n')
    monkeypatch.setenv("FLYWHEEL_RUNTIME_LEASE", "45s")
    out = ok(cli("doctor"))
    assert "status:    OK" in out and "reachable" in out and "jobs, job_runs, job_periodics present" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "4" in rows["runtime.concurrency"] and "flywheel.toml" in rows["runtime.concurrency"]
    assert "45s" in rows["runtime.lease"] and "env FLYWHEEL_RUNTIME_LEASE" in rows["runtime.lease"]
    assert "(--db)" in rows["database.url"] and "(default)" in rows["runtime.poll_interval"]
    assert "json" in rows["log.format"]


def test_doctor_says_whether_metrics_can_be_served(isolated: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    ok(make_run(url)("migrate"))
    line = [l for l in ok(make_run(url)("doctor")).splitlines() if l.startswith("metrics:")]
    assert len(line) == 1 and "/metrics is served by the health server" in line[0]
    monkeypatch.setitem(__import__("sys").modules, "prometheus_client", None)  # as if the extra were missing
    line = [l for l in ok(make_run(url)("doctor")).splitlines() if l.startswith("metrics:")]
    assert "pip install 'flywheel-jobs[prometheus]'" in line[0]
    blocked = ok(make_run(url, make_plugin_manager(disabled=["prometheus"]))("doctor"))
    assert "metrics:" not in blocked and "blocked: prometheus" in blocked


def test_doctor_never_writes(isolated: Path, db_url: str) -> None:
    run = make_run(db_url)
    result = run("doctor")
    assert result.exit_code == 1 and "status:    FAILED" in result.stdout
    if db_url.startswith("sqlite"):
        assert "does not exist" in result.stdout
        assert not Path(db_url.removeprefix("sqlite:///")).exists()
    else:
        assert "missing jobs, job_runs, job_periodics" in result.stdout
        db = flywheel.connect(db_url)
        try:
            assert not db.Job.table_exists() or "missing" in result.stdout
            assert run("doctor").exit_code == 1  # still nothing created
        finally:
            db.close()


def test_doctor_reports_an_invalid_config(isolated: Path, tmp_path: Path) -> None:
    (isolated / "flywheel.toml").write_text('[runtime]\nleese = "1s"\n')
    result = make_run(f"sqlite:///{tmp_path / 'x.db'}")("doctor")
    assert result.exit_code == 1 and "INVALID" in result.stdout and "runtime.leese: unknown key" in result.stdout


def test_plugins_lists_sources_and_hooks(isolated: Path) -> None:
    run = make_run(None, make_plugin_manager(disabled=["logging"]))
    rows = {r["name"]: r for r in json.loads(ok(run("plugins", "--json")))}
    assert rows["cli"]["status"] == "active" and rows["cli"]["distribution"] == "flywheel-jobs"
    assert "flywheel_commands" in rows["cli"]["hooks"] and "flywheel_driver" in rows["sqlite"]["hooks"]
    assert rows["logging"]["status"] == "blocked"
    text = ok(run("plugins"))
    assert text.splitlines()[0].split() == ["NAME", "STATUS", "FROM", "HOOKS"]
    assert re.search(r"^sqlite\s+active\s+flywheel-jobs \S+\s+driver$", text, re.MULTILINE)


def test_version(isolated: Path) -> None:
    run = make_run(None)
    assert ok(run("version")).strip() == flywheel.__version__
    data = json.loads(ok(run("version", "--json")))
    assert data["version"] == flywheel.__version__ and data["distribution"] == "flywheel-jobs"
    assert ok(run("--version")).strip() == f"flywheel {flywheel.__version__}"


# -- errors that are not a command's own ------------------------------------------------------


def test_unreachable_database_is_one_line_without_the_password(isolated: Path) -> None:
    run = make_run("postgresql://app:s3cret@127.0.0.1:9/nowhere?connect_timeout=2")
    line = failed(run("jobs", "ls"), 1, "cannot reach database at postgresql://app:***@127.0.0.1:9/nowhere")
    assert "s3cret" not in line
    verbose = run("-v", "jobs", "ls")
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr and "s3cret" not in verbose.stderr


def test_a_database_without_the_schema_says_to_migrate(isolated: Path, tmp_path: Path) -> None:
    failed(make_run(f"sqlite:///{tmp_path / 'empty.db'}")("jobs", "ls"), 1, "run `flywheel migrate`")


def test_unknown_config_key_is_a_usage_error(isolated: Path, tmp_path: Path) -> None:
    (isolated / "flywheel.toml").write_text('[runtime]\nleese = "1s"\n')
    failed(make_run(f"sqlite:///{tmp_path / 'x.db'}")("jobs", "ls"), 2, "config:", "flywheel.toml",
           "runtime.leese: unknown key")


def test_duplicate_schedule_slug_in_the_config_is_a_usage_error(isolated: Path, tmp_path: Path) -> None:
    (isolated / "flywheel.toml").write_text(
        '[[schedules]]\nslug = "a"\nkind = "k"\nevery = "1h"\n[[schedules]]\nslug = "a"\nkind = "k"\nevery = "2h"\n')
    failed(make_run(f"sqlite:///{tmp_path / 'x.db'}")("serve"), 2, "schedules[1].slug: duplicate slug 'a'")


def test_an_explicit_config_file_that_is_missing(isolated: Path) -> None:
    failed(make_run(None)("--config", "nope.toml", "jobs", "ls"), 2, "config file not found: nope.toml")


def test_unknown_command_and_missing_argument_are_usage_errors(isolated: Path) -> None:
    failed(make_run(None)("frobnicate"), 2, "No such command 'frobnicate'")
    failed(make_run(None)("enqueue"), 2, "Missing argument 'KIND'")


def test_db_flag_wins_over_env_and_file(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / "flywheel.toml").write_text(f'[database]\nurl = "sqlite:///{tmp_path / "file.db"}"\n')
    assert ok(make_run(None)("migrate")).strip().endswith("file.db)")
    monkeypatch.setenv("FLYWHEEL_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert ok(make_run(None)("migrate")).strip().endswith("env.db)")
    assert ok(make_run(f"sqlite:///{tmp_path / 'flag.db'}")("migrate")).strip().endswith("flag.db)")


# -- serve, in process -------------------------------------------------------------------------


@attrs.frozen
class Say:
    kind: ClassVar[str] = "say"
    text: str


class ServePlugin:
    """A worker-type plugin with a ``say`` worker that also hands the test the running node."""

    def __init__(self) -> None:
        self.node: Any = None
        self.config_seen: Any = "unset"
        self.started = threading.Event()

    @flywheel.hookimpl
    def flywheel_worker_types(self) -> dict[str, Any]:
        return {"say": lambda table: Say(text=table["text"])}

    @flywheel.hookimpl
    def flywheel_register_workers(self, registry: flywheel.Registry, config: Any) -> None:
        self.config_seen = config

        @registry.worker("say")
        def say(job: flywheel.Job[Say]) -> flywheel.Result:
            return flywheel.Result(output={"said": job.args.text})

    @flywheel.hookimpl
    def flywheel_services(self, node: Any) -> None:
        self.node = node
        self.started.set()


def serve_in_thread(run: Run, *args: str) -> tuple[threading.Thread, list[Result]]:
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(run("serve", *args)), daemon=True)
    thread.start()
    return thread, results


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``serve`` configures the root logger (onto the runner's stderr); put it back afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_serve_runs_plugin_and_app_workers_and_reconciles_schedules(
        db_url: str, isolated: Path, database_for_serve: flywheel.Database) -> None:
    db = database_for_serve
    (isolated / "myapp.py").write_text(
        "import flywheel\nregistry = flywheel.Registry()\n\n"
        "@registry.worker('send_email')\ndef send_email(job: flywheel.Job[dict]) -> flywheel.Result:\n"
        "    return flywheel.Result(output={'sent_to': job.args['to']})\n")
    (isolated / "flywheel.toml").write_text('''
[runtime]
poll_interval = "20ms"
metrics_addr = "127.0.0.1:0"

[[schedules]]
slug = "greet"
every = "1h"
worker = "say"

[schedules.say]
text = "hi"

[[schedules]]
slug = "paused"
kind = "ping"
cron = "0 3 * * *"
active = false
''')
    flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="stale", kind="ping", every=60))
    plugin = ServePlugin()
    run = make_run(db_url, make_plugin_manager(plugins=[plugin]))
    mail = flywheel.Client(db).enqueue("send_email", {"to": "a@b"})
    said = flywheel.Client(db).enqueue("say", {"text": "hello"})
    thread, results = serve_in_thread(run, "--app", "myapp", "--concurrency", "2")
    try:
        assert plugin.started.wait(30), results
        wait_for(lambda: {flywheel.find_job(db, i).state for i in (mail, said)} == {"succeeded"}, what="jobs done")
    finally:
        if plugin.node is not None:
            plugin.node.stop()
        thread.join(30)
    assert ok(results[0]) == ""
    node = plugin.node
    assert node.config is plugin.config_seen and node.config.runtime.app == "myapp"
    assert node.health.addr == "127.0.0.1:0" and node.runners[0].concurrency == 2
    assert flywheel.list_runs(db, mail)[0].output == {"sent_to": "a@b"}
    assert flywheel.list_runs(db, said)[0].output == {"said": "hello"}
    schedules = {v.slug: v for v in flywheel.list_periodics(db)}
    assert (schedules["greet"].kind, schedules["greet"].args, schedules["greet"].active) == ("say", {"text": "hi"}, True)
    assert not schedules["paused"].active
    assert not schedules["stale"].active  # active, but not in the file: deactivated, kept


def test_serve_without_any_worker_refuses_to_start(db_url: str, isolated: Path) -> None:
    import flywheel_plugins.cli
    import flywheel_plugins.postgres
    import flywheel_plugins.sqlite

    # no installed plugin that registers workers (the built-in exec/shell/... ones, an example's)
    drivers_and_commands = [flywheel_plugins.sqlite, flywheel_plugins.postgres, flywheel_plugins.cli]
    run = make_run(db_url, make_plugin_manager(load_entrypoints=False, plugins=drivers_and_commands))
    failed(run("serve"), 2, "runtime.app", "no workers to run")


def test_serve_with_an_app_that_does_not_import(db_url: str, isolated: Path) -> None:
    failed(make_run(db_url)("serve", "--app", "no_such_module_here"), 2, "runtime.app",
           "no module named 'no_such_module_here'", "--app")


@pytest.fixture
def database_for_serve(db_url: str, isolated: Path) -> Iterator[flywheel.Database]:
    db = flywheel.connect(db_url)
    flywheel.migrate(db)
    yield db
    db.close()
