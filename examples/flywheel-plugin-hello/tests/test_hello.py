"""flywheel-plugin-hello's own tests, written as a plugin author would: on the fixtures of
flywheel's pytest plugin (``flywheel_db``, ``flywheel_registry``, ``flywheel_client``,
``flywheel_runner``), which pytest loads by itself once flywheel is installed.

Run them with flywheel installed (``pip install /path/to/flywheel``)::

    python -m pytest examples/flywheel-plugin-hello/tests

With the plugin installed as well (``pip install examples/flywheel-plugin-hello``), the
entry-point test runs too instead of being skipped.
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest

import flywheel
import flywheel_plugin_hello
from click.testing import CliRunner
from flywheel.cli import build_cli
from flywheel.plugins import make_plugin_manager
from flywheel_plugin_hello import Hello, HelloWorker


def test_hello_job_greets_and_stores_the_greeting(flywheel_db, flywheel_registry, flywheel_client, flywheel_runner):
    flywheel_registry.register(HelloWorker())
    job_id = flywheel_client.insert(Hello(name="Ada"))
    assert flywheel_runner().run_until_idle(timeout=30) == 1
    assert flywheel.find_job(flywheel_db, job_id).state == "succeeded"
    run = flywheel.list_runs(flywheel_db, job_id)[0]
    output = json.loads(run.output) if isinstance(run.output, str) else run.output
    assert output == {"greeting": "Hello, Ada!"}


def test_a_blank_name_is_permanent(flywheel_db, flywheel_registry, flywheel_client, flywheel_runner):
    flywheel_registry.register(HelloWorker())
    job_id = flywheel_client.insert(Hello(name="  "))
    flywheel_runner().run_until_idle(timeout=30)
    run = flywheel.list_runs(flywheel_db, job_id)[0]
    assert (flywheel.find_job(flywheel_db, job_id).state, run.error_class) == ("discarded", "permanent")
    assert "a name is required" in run.error


def hello_manager():
    """The installed plugins plus this module; blocking the entry-point name avoids registering it twice."""
    return make_plugin_manager(disabled=["hello"], plugins=[flywheel_plugin_hello])


def test_the_installed_plugin_registers_the_kind():
    if not any(ep.name == "hello" for ep in metadata.entry_points(group="flywheel")):
        pytest.skip("flywheel-plugin-hello is not installed (pip install examples/flywheel-plugin-hello)")
    pm = make_plugin_manager()
    assert pm.get_plugin("hello") is flywheel_plugin_hello  # found through the entry point
    assert "hello" in flywheel.Registry().load_plugins(pm)


def test_the_observer_tallies_outcomes(tmp_path):
    pm = hello_manager()
    db = flywheel.connect(f"sqlite:///{tmp_path / 'tally.db'}", pm=pm)
    flywheel.migrate(db)
    try:
        before = flywheel_plugin_hello.TALLY["success"]
        flywheel.Client(db).insert(Hello(name="Grace"))
        flywheel.Runner(db, flywheel.Registry().load_plugins(pm), poll_interval=0.02).run_until_idle(timeout=30)
        assert flywheel_plugin_hello.TALLY["success"] == before + 1
    finally:
        db.close()


def test_the_hello_command_enqueues_a_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    db = flywheel.connect(url)
    flywheel.migrate(db)
    try:
        result = CliRunner().invoke(build_cli(hello_manager()), ["--db", url, "hello", "Linus"])
        assert result.exit_code == 0, result.output
        job = flywheel.find_job(db, result.output.strip())
        assert (job.kind, job.args) == ("hello", {"name": "Linus"})
    finally:
        db.close()
