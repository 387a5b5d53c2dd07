"""flywheel.toml: the loader, precedence (flag > env > file > default), sources, and its errors by key path."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import flywheel
from flywheel.config import (
    DEFAULT_ENV_ALLOWLIST,
    Config,
    ConfigError,
    RuntimeConfig,
    find_config_file,
    load_config,
    read_config,
    setting_keys,
)
from flywheel.plugins import make_plugin_manager
from flywheel.runtime.runner import DEFAULT_CONCURRENCY


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@attrs.frozen
class Say:
    kind: ClassVar[str] = "say"
    text: str
    times: int = 1


def say_factory(table: Any) -> Say:
    unknown = set(table) - {"text", "times"}
    if unknown:
        raise flywheel.ValidationError(sorted(unknown)[0], "unknown key")
    if not isinstance(table.get("text"), str) or not table["text"]:
        raise flywheel.ValidationError("text", "is required")
    return Say(text=table["text"], times=table.get("times", 1))


class SayTypes:
    """A tiny worker-type plugin, as the workers branch's shell/exec plugins are."""

    @flywheel.hookimpl
    def flywheel_worker_types(self) -> dict[str, Any]:
        return {"say": say_factory}


@pytest.fixture
def pm() -> Any:
    return make_plugin_manager(load_entrypoints=False, plugins=[SayTypes()])


def test_no_file_gives_the_defaults(tmp_path: Path) -> None:
    loaded = read_config(env={}, discover=False)
    assert loaded.config == Config()
    assert loaded.path is None
    assert set(loaded.sources.values()) == {"default"}
    runtime = loaded.config.runtime
    assert runtime.queues == ("default", "periodic") and runtime.concurrency == DEFAULT_CONCURRENCY
    assert runtime.lease == timedelta(seconds=30) and runtime.poll_interval == timedelta(milliseconds=250)
    assert runtime.env_allowlist == DEFAULT_ENV_ALLOWLIST and runtime.metrics_addr is None
    assert loaded.config.database.url == "sqlite:///flywheel.db"
    assert (loaded.config.log.level, loaded.config.log.format, loaded.config.dashboard.bind) == ("info", "text", None)


def test_a_full_file_is_structured_into_frozen_classes(tmp_path: Path) -> None:
    path = write(tmp_path / "flywheel.toml", '''
[database]
url = "sqlite:///jobs.db"

[runtime]
queues = ["default", "mail"]
concurrency = 8
lease = "2m"
poll_interval = "250ms"
retry_backoff_base = "2s"
retention = "2w"
metrics_addr = "127.0.0.1:9090"
health_sample_interval = "1m"
env_allowlist = ["PATH"]
drain_timeout = "25s"
app = "myproject.jobs"

[log]
level = "debug"
format = "json"

[dashboard]
bind = "127.0.0.1:8080"
''')
    config = load_config(path, env={})
    runtime = config.runtime
    assert runtime == RuntimeConfig(
        queues=("default", "mail"), concurrency=8, lease=timedelta(minutes=2), poll_interval=timedelta(milliseconds=250),
        retry_backoff_base=timedelta(seconds=2), retention=timedelta(days=14), metrics_addr="127.0.0.1:9090",
        health_sample_interval=timedelta(minutes=1), env_allowlist=("PATH",), drain_timeout=timedelta(seconds=25),
        app="myproject.jobs")
    assert config.database.url == "sqlite:///jobs.db"
    assert (config.log.level, config.log.format, config.dashboard.bind) == ("debug", "json", "127.0.0.1:8080")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.runtime.concurrency = 2  # type: ignore[misc]


@pytest.mark.parametrize(("text", "expected"), [
    ("250ms", timedelta(milliseconds=250)), ("30s", timedelta(seconds=30)), ("5m", timedelta(minutes=5)),
    ("24h", timedelta(hours=24)), ("14d", timedelta(days=14)), ("2w", timedelta(weeks=2)),
    ("1h30m", timedelta(minutes=90)),
])
def test_durations(tmp_path: Path, text: str, expected: timedelta) -> None:
    path = write(tmp_path / "flywheel.toml", f'[runtime]\nlease = "{text}"\n')
    assert load_config(path, env={}).runtime.lease == expected


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path / "flywheel.toml", '[runtime]\nconcurrency = 3\nlease = "10s"\nqueues = ["a"]\n')
    env = {"FLYWHEEL_RUNTIME_CONCURRENCY": "5", "FLYWHEEL_RUNTIME_QUEUES": "x, y"}
    loaded = read_config(path, env=env, overrides={"runtime.concurrency": 7}, override_sources={
        "runtime.concurrency": "--concurrency"})
    runtime = loaded.config.runtime
    assert (runtime.concurrency, runtime.queues, runtime.lease) == (7, ("x", "y"), timedelta(seconds=10))
    assert loaded.sources["runtime.concurrency"] == "--concurrency"
    assert loaded.sources["runtime.queues"] == "env FLYWHEEL_RUNTIME_QUEUES"
    assert loaded.sources["runtime.lease"] == str(path)
    assert loaded.sources["runtime.poll_interval"] == "default"
    assert load_config(path, env=env).runtime.concurrency == 5
    assert load_config(path, env={}).runtime.concurrency == 3


def test_every_setting_has_an_environment_variable(tmp_path: Path) -> None:
    keys = setting_keys()
    assert "database.url" in keys and "runtime.metrics_addr" in keys and "dashboard.bind" in keys
    config = load_config(env={"FLYWHEEL_DATABASE_URL": "sqlite:///e.db", "FLYWHEEL_LOG_FORMAT": "json",
                              "FLYWHEEL_RUNTIME_RETENTION": "14d", "FLYWHEEL_RUNTIME_METRICS_ADDR": ":9100"},
                         discover=False)
    assert config.database.url == "sqlite:///e.db" and config.log.format == "json"
    assert config.runtime.retention == timedelta(days=14) and config.runtime.metrics_addr == ":9100"


def test_discovery_order(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert find_config_file(cwd=tmp_path, env=env) is None
    user = tmp_path / "xdg" / "flywheel" / "flywheel.toml"
    user.parent.mkdir(parents=True)
    write(user, "[runtime]\nconcurrency = 2\n")
    assert find_config_file(cwd=tmp_path, env=env) == user
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    assert find_config_file(cwd=tmp_path, env=env) == user  # no [tool.flywheel]: not ours
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.flywheel.runtime]\nconcurrency = 4\n')
    assert find_config_file(cwd=tmp_path, env=env) == tmp_path / "pyproject.toml"
    assert load_config(tmp_path / "pyproject.toml", env={}).runtime.concurrency == 4
    write(tmp_path / "flywheel.toml", "[runtime]\nconcurrency = 6\n")
    assert find_config_file(cwd=tmp_path, env=env) == tmp_path / "flywheel.toml"


@pytest.mark.parametrize(("toml", "message"), [
    ('[runtime]\nleese = "1s"\n', "runtime.leese: unknown key"),
    ('[runtim]\nlease = "1s"\n', "runtim: unknown section"),
    ('[runtime]\nlease = "soon"\n', "runtime.lease: is not a duration: 'soon'"),
    ('[runtime]\nconcurrency = 0\n', "runtime.concurrency: must be at least 1"),
    ('[runtime]\nconcurrency = "4"\n', "runtime.concurrency: must be an integer"),
    ('[runtime]\nqueues = "default"\n', "runtime.queues: must be a list of strings"),
    ('[runtime]\nmetrics_addr = "nowhere"\n', "runtime.metrics_addr: must be host:port"),
    ('[log]\nformat = "xml"\n', "log.format: must be one of text, json"),
    ('[log]\nlevel = "loud"\n', "log.level: must be one of"),
    ('[database]\nurl = 5\n', "database.url: must be a string"),
    ('runtime = 3\n', "runtime: must be a table"),
    ('[runtime\n', "invalid TOML"),
])
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path / "flywheel.toml", toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"env FLYWHEEL_RUNTIME_LEASE: runtime.lease: is not a duration"):
        load_config(env={"FLYWHEEL_RUNTIME_LEASE": "forever"}, discover=False)


def test_an_explicit_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", env={})


# -- [[schedules]] ---------------------------------------------------------------------


def test_schedules_by_kind_and_args_and_by_worker_type(tmp_path: Path, pm: Any) -> None:
    path = write(tmp_path / "flywheel.toml", '''
[[schedules]]
slug = "nightly"
kind = "report"
cron = "0 2 * * *"
timezone = "Europe/Berlin"
args = { format = "pdf" }

[[schedules]]
slug = "greet"
every = "5m"
queue = "chat"
active = false
worker = "say"

[schedules.say]
text = "hi"
times = 2
''')
    nightly, greet = load_config(path, env={}, pm=pm).schedules
    assert (nightly.kind, nightly.cron, nightly.timezone, nightly.args, nightly.queue, nightly.active) == (
        "report", "0 2 * * *", "Europe/Berlin", {"format": "pdf"}, "periodic", True)
    assert (greet.kind, greet.args, greet.every, greet.queue, greet.active, greet.worker) == (
        "say", {"text": "hi", "times": 2}, timedelta(minutes=5), "chat", False, "say")
    spec = greet.spec()
    assert isinstance(spec, flywheel.PeriodicSpec) and spec.every == timedelta(minutes=5)


@pytest.mark.parametrize(("toml", "message"), [
    ('slug = "a"\nkind = "k"\nevery = "500ms"\n', "schedules[1].every: must be at least 1s"),
    ('slug = "a"\nkind = "k"\ncron = "every day"\n', "schedules[1].cron: is not a valid 5-field cron"),
    ('slug = "a"\nkind = "k"\ncron = "* * * * *"\nevery = "1m"\n', "schedules[1].cron: exactly one of cron and every"),
    ('slug = "a"\nkind = "k"\n', "schedules[1].cron: exactly one of cron and every"),
    ('slug = "first"\nkind = "k"\nevery = "1m"\n', "schedules[1].slug: duplicate slug 'first' (also schedules[0])"),
    ('kind = "k"\nevery = "1m"\n', "schedules[1].slug: is missing"),
    ('slug = "a"\nkind = "k"\nevery = "1m"\ntimezone = "Mars/Base"\n', "schedules[1].timezone: is not a known IANA"),
    ('slug = "a"\nkind = "k"\nevery = "1m"\ncolour = "red"\n', "schedules[1].colour: unknown key"),
    ('slug = "a"\nevery = "1m"\nworker = "bash"\n[schedules.bash]\nx = 1\n',
     "schedules[1].worker: unknown worker type 'bash' (known: say)"),
    ('slug = "a"\nevery = "1m"\nworker = "say"\n', "schedules[1].say: is missing"),
    ('slug = "a"\nevery = "1m"\nworker = "say"\n[schedules.say]\ntext = ""\n', "schedules[1].say.text: is required"),
    ('slug = "a"\nevery = "1m"\nworker = "say"\n[schedules.say]\ntext = "x"\nloud = true\n',
     "schedules[1].say.loud: unknown key"),
    ('slug = "a"\nevery = "1m"\n[schedules.say]\ntext = "x"\n', 'schedules[1].say: a [schedules.say] table needs'),
])
def test_bad_schedules_name_the_index_and_key(tmp_path: Path, pm: Any, toml: str, message: str) -> None:
    first = '[[schedules]]\nslug = "first"\nkind = "k"\nevery = "1h"\n\n'
    path = write(tmp_path / "flywheel.toml", first + "[[schedules]]\n" + toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, pm=pm)
    assert message in str(info.value)


def test_worker_types_come_from_every_plugin(pm: Any) -> None:
    from flywheel.config import worker_types

    assert set(worker_types(pm)) == {"say"}
    assert worker_types(make_plugin_manager(load_entrypoints=False)) == {}


def test_log_setup_text_and_json() -> None:
    import io
    import json
    import logging

    from flywheel.logsetup import configure_logging, level_number

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream=stream)
        logging.getLogger("flywheel.test").info("hello %s", "there", extra={"action": "probe", "n": 3})
        record = json.loads(stream.getvalue())
        assert (record["level"], record["logger"], record["message"]) == ("info", "flywheel.test", "hello there")
        assert (record["action"], record["n"]) == ("probe", 3) and record["time"].endswith("Z")
        stream.truncate(0), stream.seek(0)
        configure_logging("warning", "text", stream=stream)
        logging.getLogger("flywheel.test").info("hidden")
        logging.getLogger("flywheel.test").warning("shown")
        assert "hidden" not in stream.getvalue() and "WARNING flywheel.test: shown" in stream.getvalue()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert level_number("warn") == logging.WARNING and level_number("error", verbose=1) == logging.INFO
    assert level_number("info", verbose=2) == logging.DEBUG


def test_the_default_url_is_the_same_everywhere() -> None:
    import flywheel.cli
    import flywheel.config

    assert flywheel.DEFAULT_URL == flywheel.config.DEFAULT_URL == flywheel.cli.DEFAULT_URL == "sqlite:///flywheel.db"


def test_one_definition_of_the_env_allowlist_durations_and_log_settings() -> None:
    """What the merge had twice is defined once: the CLI, config and plugins agree."""
    import logging
    from datetime import timedelta

    from flywheel import config, logsetup
    from flywheel.errors import ValidationError
    from flywheel_plugins import log_observer
    from flywheel_plugins.workers import base
    from flywheel_plugins.workers.shell import from_table

    assert base.DEFAULT_ENV_ALLOWLIST is config.DEFAULT_ENV_ALLOWLIST
    assert config.LOG_LEVELS == log_observer.LEVELS == logsetup.LEVELS and "warn" in logsetup.LEVELS
    # a duration reads the same in [runtime] and in a worker table
    for text, seconds in (("1m30s", 90), ("250ms", 0.25), (45, 45)):
        assert config.converter.structure(text, timedelta) == timedelta(seconds=seconds)
        assert from_table({"inline": "true", "timeout": text}).timeout_seconds == seconds
    for bad in (True, [1]):
        with pytest.raises(ValueError, match="must be a duration"):
            config.converter.structure(bad, timedelta)
        with pytest.raises(ValidationError, match="must be a duration"):
            from_table({"inline": "true", "timeout": bad})
    with pytest.raises(ValidationError, match="timeout"):
        from_table({"inline": "true", "timeout": -1})
    # "warn", which [log] level accepts, works in the logging plugin's set-up too
    target = logging.getLogger("flywheel.test-warn")
    try:
        log_observer.configure("warn", "text", stream=io.StringIO(), logger_name=target.name)
        assert target.level == logging.WARNING
    finally:
        target.handlers.clear()
        target.setLevel(logging.NOTSET)


def test_the_cli_log_setup_keeps_the_apps_own_handlers() -> None:
    import logging

    from flywheel.logsetup import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    own = logging.StreamHandler(io.StringIO())
    try:
        root.addHandler(own)
        first = configure_logging("info", "json", stream=io.StringIO())
        second = configure_logging("warning", "text", stream=io.StringIO())
        assert own in root.handlers and second in root.handlers and first not in root.handlers
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
