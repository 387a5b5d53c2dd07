"""The worker plugins as plugins: entry points, config-table factories, the config's env allowlist."""

from __future__ import annotations

import json
from importlib import metadata
from types import SimpleNamespace

import pytest

import flywheel
from flywheel.plugins import make_plugin_manager
from flywheel.serde import dump_args, load_args
from flywheel_plugins.workers.exec import ExecArgs
from flywheel_plugins.workers.http import HTTPArgs
from flywheel_plugins.workers.mage import MageArgs
from flywheel_plugins.workers.python import PythonArgs
from flywheel_plugins.workers.shell import ShellArgs

NAMES = ["exec", "shell", "python", "mage", "http"]


def worker_types(pm=None):
    pm = pm or make_plugin_manager()
    merged = {}
    for mapping in pm.hook.flywheel_worker_types():
        merged.update(mapping)
    return merged


def test_each_worker_is_its_own_entry_point():
    entry_points = {ep.name: ep.value for ep in metadata.entry_points(group="flywheel")}
    for name in NAMES:
        assert entry_points[name] == f"flywheel_plugins.workers.{name}"


def test_registry_from_plugins_knows_every_kind_and_a_blocked_one_is_gone():
    assert set(NAMES) <= set(flywheel.Registry().load_plugins(make_plugin_manager()).kinds())
    registry = flywheel.Registry().load_plugins(make_plugin_manager(disabled=["shell"]))
    assert "shell" not in registry and "exec" in registry
    assert "shell" not in worker_types(make_plugin_manager(disabled=["shell"]))


def test_config_env_allowlist_reaches_the_command_workers():
    config = SimpleNamespace(runtime=SimpleNamespace(env_allowlist=("PATH", "APP_MODE")))
    registry = flywheel.Registry().load_plugins(make_plugin_manager(), config=config)
    for kind in ("exec", "shell", "python", "mage"):
        assert registry.get(kind).worker.env_allowlist == ("PATH", "APP_MODE")
    default = flywheel.Registry().load_plugins(make_plugin_manager())
    assert default.get("shell").worker.env_allowlist == ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def test_factories_build_args_from_tables():
    types = worker_types()
    assert set(NAMES) <= set(types)
    shell = types["shell"]({"inline": "echo $1", "args": ["x"], "timeout": "1m30s", "env": {"A": "b"}})
    assert shell == ShellArgs(inline="echo $1", args=["x"], timeout_seconds=90, env={"A": "b"})
    assert types["exec"]({"command": "backup", "permanent_exit_codes": [2]}) == ExecArgs(
        command="backup", permanent_exit_codes=[2])
    assert types["python"]({"module": "app.nightly", "timeout_seconds": 5}).timeout_seconds == 5
    assert types["mage"]({"targets": ["build"]}) == MageArgs(targets=["build"])
    http = types["http"]({"url": "https://example.test/health", "success_status": [200, 204], "timeout": "250ms"})
    assert http == HTTPArgs(url="https://example.test/health", success_status=[200, 204], timeout_seconds=0.25)


@pytest.mark.parametrize(("kind", "table", "field", "words"), [
    ("shell", {"inline": "x", "script": "y.sh"}, "script", "both set"),
    ("shell", {}, "script", "is required"),
    ("shell", {"inline": "x", "scirpt": "y"}, "scirpt", "is not a shell setting"),
    ("shell", {"inline": "x", "args": "a b"}, "args", "must be a list of strings"),
    ("shell", {"inline": "x", "timeout": "soon"}, "timeout", "is not a duration"),
    ("shell", {"inline": "x", "timeout": "1s", "timeout_seconds": 1}, "timeout", "both set"),
    ("exec", {}, "command", "is required"),
    ("exec", {"command": "x", "env": {"A": 1}}, "env", "a table of strings"),
    ("exec", {"command": "x", "permanent_exit_codes": [1.5]}, "permanent_exit_codes", "integers"),
    ("python", {"script": "a.py", "module": "m"}, "script", "exactly one"),
    ("mage", {"targets": []}, "targets", "at least one target"),
    ("http", {"method": "GET"}, "url", "is required"),
    ("http", {"url": "https://x.test", "follow_redirects": "yes"}, "follow_redirects", "true or false"),
])
def test_bad_tables_name_the_key(kind, table, field, words):
    with pytest.raises(flywheel.ValidationError) as info:
        worker_types()[kind](table)
    assert info.value.field == field
    assert words in str(info.value)


def test_args_round_trip_with_go_flywheel_field_names():
    args = ShellArgs(script="nightly.sh", args=["--full"], env={"A": "1"}, dir="/srv", timeout_seconds=30)
    data = json.loads(dump_args(args))
    assert data == {"script": "nightly.sh", "inline": "", "args": ["--full"], "shell": "sh", "env": {"A": "1"},
                    "dir": "/srv", "stdin": "", "timeout_seconds": 30, "permanent_exit_codes": []}
    assert load_args(json.dumps(data), ShellArgs) == args
    assert set(json.loads(dump_args(HTTPArgs(url="http://x.test")))) == {
        "method", "url", "headers", "body", "timeout_seconds", "success_status", "follow_redirects"}
    assert set(json.loads(dump_args(ExecArgs(command="x")))) >= {"command", "args", "env", "dir", "stdin",
                                                                  "timeout_seconds"}
    assert set(json.loads(dump_args(PythonArgs(inline="x")))) >= {"script", "module", "inline", "interpreter"}
    assert set(json.loads(dump_args(MageArgs(targets=["a"])))) >= {"targets", "binary", "dir", "env"}
