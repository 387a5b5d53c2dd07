"""The ``flywheel`` console script as a new user runs it: real processes, the daemon in the background.

The walkthrough of the README (migrate, enqueue, jobs ls, serve --app, jobs inspect, status
--json) runs on the embedded SQLite default with no config file and on PostgreSQL with --db.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flywheel
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("flywheel")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "flywheel"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project directory holding only examples/quickstart_jobs.py."""
    work = tmp_path / "project"
    (work / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "quickstart_jobs.py", work / "examples" / "quickstart_jobs.py")
    return work


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env.pop("PYTHONPATH", None)
    return env


def flywheel_cmd(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_the_walkthrough_of_a_new_user(dialect: str, project: Path, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    env = clean_env(tmp_path)
    if dialect == "postgres":
        url = request.getfixturevalue("pg_schema_url")
        db_args = ["--db", url]
    else:
        url, db_args = f"sqlite:///{project / 'flywheel.db'}", []  # the default: ./flywheel.db, no config file

    def fw(*args: str) -> str:
        done = flywheel_cmd(project, env, *db_args, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    assert fw("migrate").startswith("schema up to date")
    job_id = fw("enqueue", "send_email", '{"to":"a@b"}').strip()
    assert job_id in fw("jobs", "ls")
    if dialect == "sqlite":
        assert (project / "flywheel.db").exists()

    log = (tmp_path / "serve.log").open("w")
    daemon = subprocess.Popen([*COMMAND, *db_args, "serve", "--app", "examples.quickstart_jobs"], cwd=project,
                              env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    db = flywheel.connect(url)
    try:
        wait_for(lambda: flywheel.find_job(db, job_id).state == "succeeded", timeout=60, what="the job to succeed")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
        log.close()
        db.close()
    served = (tmp_path / "serve.log").read_text()
    assert "flywheel serve: started" in served and re.search(r"kinds [^)]*\bsend_email\b", served)
    assert "node drained and stopped" in served and "Traceback" not in served

    text = fw("jobs", "inspect", job_id)
    assert "state:         succeeded" in text and "success" in text and '"sent_to": "a@b"' in text
    inspected = json.loads(fw("jobs", "inspect", job_id, "--json"))
    assert [run["outcome"] for run in inspected["runs"]] == ["success"]
    status = json.loads(fw("status", "--json"))
    assert status["overview"]["counts_by_state"] == {"succeeded": 1}


def test_status_watch_redraws_until_ctrl_c(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert flywheel_cmd(tmp_path, env, "--db", url, "migrate").returncode == 0
    main, child = pty.openpty()  # a terminal, so frames are redrawn in place
    watcher = subprocess.Popen([*COMMAND, "--db", url, "status", "--watch", "--interval", "100ms"], cwd=tmp_path,
                               env=env, stdout=child, stderr=subprocess.PIPE, text=True)
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 60
    while seen.count(b"\x1b[2J\x1b[H") < 3 and time.monotonic() < deadline:
        seen += os.read(main, 65536)
    watcher.send_signal(signal.SIGINT)
    _, err = watcher.communicate(timeout=30)
    os.close(main)
    assert seen.count(b"\x1b[2J\x1b[H") >= 3 and seen.count(b"flywheel status:") >= 3
    assert watcher.returncode == 0, err
    assert "Traceback" not in err


def test_errors_from_the_console_script(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    down = flywheel_cmd(tmp_path, env, "--db", "postgresql://u:pw123@127.0.0.1:9/x?connect_timeout=2", "status")
    assert down.returncode == 1
    assert down.stderr.startswith("flywheel: error: cannot reach database at postgresql://u:***@127.0.0.1:9/x")
    assert len(down.stderr.strip().splitlines()) == 1 and "pw123" not in down.stderr
    usage = flywheel_cmd(tmp_path, env, "enqueue", "k", "not json")
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1 and "must be valid JSON" in usage.stderr
    assert not (tmp_path / "flywheel.db").exists()


def test_help_lists_every_built_in_command(tmp_path: Path) -> None:
    done = flywheel_cmd(tmp_path, clean_env(tmp_path), "--help")
    assert done.returncode == 0
    for command in ("serve", "migrate", "enqueue", "jobs", "schedule", "status", "prune", "doctor", "plugins",
                    "version"):
        assert f"\n  {command} " in done.stdout, command


_PROBE = """
import sys
from flywheel.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("peewee", "cattrs", "croniter", "psycopg2", "sqlite3", "flywheel.storage.db", "flywheel.runtime.runner",
                           # what the plugins' entry-point modules must not pull in when they load:
                           "attrs", "flywheel.events", "flywheel.registry", "http.server", "http.client",
                           "subprocess", "prometheus_client", "flywheel_plugins.health.server",
                           "flywheel_plugins.workers.base")
               if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["version"], ["jobs", "--help"], ["serve", "--help"]])
def test_help_and_version_import_no_driver_or_runtime(args: list[str], tmp_path: Path) -> None:
    """What keeps start-up fast: nothing heavy is imported until a command needs it (no timing asserted).

    Every plugin is loaded (its entry-point module imported) for these commands, so the
    workers, health, prometheus and logging plugins must defer their implementations too.
    """
    from importlib.metadata import entry_points

    # only flywheel's own plugins: a third-party one installed beside it (the example plugin
    # in CI) may import what it likes when it loads
    others = sorted(ep.name for ep in entry_points(group="flywheel")
                    if ep.dist is None or ep.dist.name != "flywheel-jobs")
    env = {**clean_env(tmp_path), "FLYWHEEL_DISABLE_PLUGINS": ",".join(others)}
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "HEAVY=\n" in done.stderr or done.stderr.rstrip().endswith("HEAVY="), done.stderr
