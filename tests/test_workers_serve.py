"""Acceptance: a flywheel.toml shell schedule run by ``flywheel serve`` in a real subprocess,
and the cron_replacement example's config and scripts.

The serve test needs the CLI's ``serve``, ``jobs inspect`` and config loading; it skips,
saying so, where they do not exist yet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import flywheel
from flywheel.cli import build_cli
from flywheel.plugins import make_plugin_manager
from flywheel_plugins.workers.python import PythonWorker
from flywheel_plugins.workers.shell import ShellWorker
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cron_replacement"


def _missing_cli() -> str | None:
    cli = build_cli(make_plugin_manager())
    if "serve" not in cli.commands:
        return "`flywheel serve` is not available (the CLI's serve command has not landed)"
    jobs = cli.commands.get("jobs")
    if jobs is None or "inspect" not in getattr(jobs, "commands", {}):
        return "`flywheel jobs inspect` is not available"
    return None


def _flywheel(*args: str, cwd: Path, **kwargs: Any) -> Any:
    return subprocess.run([sys.executable, "-m", "flywheel", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, **kwargs)


@pytest.mark.slow
def test_serve_runs_a_shell_schedule_every_second_with_captured_output(db, db_url, tmp_path):
    reason = _missing_cli()
    if reason:
        pytest.skip(reason)
    (tmp_path / "flywheel.toml").write_text(
        '[runtime]\nqueues = ["periodic", "default"]\npoll_interval = "100ms"\n\n'
        '[[schedules]]\nslug = "tick"\nevery = "1s"\nworker = "shell"\n'
        '[schedules.shell]\ninline = "echo tick $1"\nargs = ["from-cron"]\n'
    )
    env = {**os.environ, "FLYWHEEL_DATABASE_URL": db_url}
    serve = subprocess.Popen([sys.executable, "-m", "flywheel", "--config", "flywheel.toml", "serve"], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: serve.poll() is not None
                 or len(flywheel.list_jobs(db, kind="shell", state="succeeded")) >= 3,
                 timeout=30, what="3 succeeded runs of the shell schedule")
        assert serve.poll() is None, f"serve exited early: {serve.communicate()[1]}"
    finally:
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=60)
    assert serve.returncode == 0, stderr
    job_id = flywheel.list_jobs(db, kind="shell", state="succeeded")[0].id
    inspected = _flywheel("--config", "flywheel.toml", "jobs", "inspect", job_id, "--json", cwd=tmp_path, env=env)
    assert inspected.returncode == 0, inspected.stderr
    runs = json.loads(inspected.stdout)["runs"]
    assert runs[0]["outcome"] == "success"
    assert runs[0]["output"]["stdout"] == "tick from-cron\n"
    human = _flywheel("--config", "flywheel.toml", "jobs", "inspect", job_id, cwd=tmp_path, env=env)
    assert "tick from-cron" in human.stdout


def test_example_config_declares_valid_worker_tables():
    config = tomllib.loads((EXAMPLE / "flywheel.toml").read_text())
    types: dict[str, Any] = {}
    for mapping in make_plugin_manager().hook.flywheel_worker_types():
        types.update(mapping)
    workers = []
    for schedule in config["schedules"]:
        args = types[schedule["worker"]](schedule[schedule["worker"]])
        assert args.kind == schedule["worker"]
        workers.append(schedule["worker"])
    assert workers == ["shell", "python", "http"]


def test_example_scripts_run_through_the_workers(db, client, registry, make_runner, tmp_path):
    config = tomllib.loads((EXAMPLE / "flywheel.toml").read_text())
    types: dict[str, Any] = {}
    for mapping in make_plugin_manager().hook.flywheel_worker_types():
        types.update(mapping)
    registry.register(ShellWorker())
    registry.register(PythonWorker())
    work = tmp_path / "work"
    (work / "scripts").mkdir(parents=True)
    for script in (EXAMPLE / "scripts").iterdir():  # run in a copy: the example directory stays clean
        (work / "scripts" / script.name).write_bytes(script.read_bytes())
    ids = []
    for schedule in config["schedules"]:
        if schedule["worker"] in ("shell", "python"):
            table = {**schedule[schedule["worker"]], "dir": str(work)}
            ids.append(client.insert(types[schedule["worker"]](table)))
    make_runner().run_until_idle(timeout=60)
    shell_run, python_run = (flywheel.list_runs(db, job_id)[0] for job_id in ids)
    assert (shell_run.outcome, python_run.outcome) == ("success", "success"), (shell_run.error, python_run.error)
    assert _out(shell_run)["stdout"] == "logs/heartbeat.log has 1 lines\n"
    assert len(json.loads(_out(python_run)["stdout"])["largest"]) == 3


def _out(run: flywheel.JobRunView) -> dict[str, Any]:
    return json.loads(run.output) if isinstance(run.output, str) else run.output
