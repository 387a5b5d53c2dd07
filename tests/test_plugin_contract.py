"""The plugin contract: documented hooks, declared built-ins, loud failures, blocking,
in-code registration, observer isolation, an import with no side effects, and the
example third-party plugin.

Nothing here hard-codes the list of hooks or built-in plugins: both are read from
``flywheel.hookspecs`` and ``flywheel_plugins/``, so a new hook or plugin is checked as
soon as it exists.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import attrs
import pluggy
import pytest
from click.testing import CliRunner

import flywheel
from flywheel import hookspecs
from flywheel.cli import build_cli, main
from flywheel.plugins import DISABLE_ENV, ENTRY_POINT_GROUP, make_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
HOOKS_DOC = ROOT / "docs" / "plugins" / "hooks.md"
PLUGINS_DIR = ROOT / "flywheel_plugins"
HELLO_DIR = ROOT / "examples" / "flywheel-plugin-hello"

FAST = {"poll_interval": 0.02, "retry_backoff_base": 0.01, "max_retry_backoff": 0.05}

# -- helpers ---------------------------------------------------------------------------


def hook_specs() -> dict[str, list[str]]:
    """Every hook specification in ``flywheel.hookspecs``: name → parameter names."""
    specs = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if getattr(fn, f"{ENTRY_POINT_GROUP}_spec", None) is not None:
            specs[name] = list(inspect.signature(fn).parameters)
    return specs


_HEADING = re.compile(r"^#{1,6}\s+`?(flywheel_\w+)\(([^)]*)\)`?\s*$", re.MULTILINE)


def documented_hooks() -> list[tuple[str, list[str]]]:
    """``(name, argument names)`` of every hook heading in ``docs/plugins/hooks.md``, in order."""
    headings = []
    for match in _HEADING.finditer(HOOKS_DOC.read_text(encoding="utf-8")):
        params = [re.split(r"[:=]", p)[0].strip() for p in match.group(2).split(",")]
        headings.append((match.group(1), [p for p in params if p and p not in ("*", "/")]))
    return headings


def plugin_modules() -> list[str]:
    """The importable name of every module and package in ``flywheel_plugins/`` except ``__init__``."""
    names = []
    for path in sorted(PLUGINS_DIR.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.suffix == ".py":
            names.append(f"flywheel_plugins.{path.stem}")
        elif path.is_dir() and (path / "__init__.py").is_file():
            names.append(f"flywheel_plugins.{path.name}")
    return names


def installed_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The ``flywheel`` entry points that the installed ``flywheel-jobs`` distribution declares."""
    dist = importlib.metadata.distribution("flywheel-jobs")
    return [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]


def pyproject_entry_points() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(data["project"]["entry-points"][ENTRY_POINT_GROUP])


def declares(module_ref: str, module: str) -> bool:
    """Whether an entry point's value (``pkg.mod`` or ``pkg.mod:attr``) loads ``module`` or a part of it."""
    target = module_ref.partition(":")[0].strip()
    return target == module or target.startswith(module + ".")


def sqlite_url(tmp_path: Path, name: str = "flywheel.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def open_db(tmp_path: Path, pm: pluggy.PluginManager | None = None) -> flywheel.Database:
    db = flywheel.connect(sqlite_url(tmp_path), pm=pm)
    flywheel.migrate(db)
    return db


@attrs.frozen
class Ping:
    kind: ClassVar[str] = "ping"
    fail_first: bool = False


def ping_registry() -> flywheel.Registry:
    registry = flywheel.Registry()

    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]) -> flywheel.Result:
        if job.args.fail_first and job.attempt == 1:
            raise RuntimeError("first attempt fails")
        return flywheel.Result(output={"pong": job.attempt})

    return registry


class Recorder:
    """An observer plugin that keeps every event it is given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claimed: list[flywheel.ClaimEvent] = []
        self.started: list[flywheel.JobEvent] = []
        self.finished: list[flywheel.FinishEvent] = []
        self.retried: list[flywheel.RetryEvent] = []

    def _keep(self, into: list[Any], event: Any) -> None:
        with self.lock:
            into.append(event)

    @flywheel.hookimpl
    def flywheel_on_claim(self, event: flywheel.ClaimEvent) -> None:
        self._keep(self.claimed, event)

    @flywheel.hookimpl
    def flywheel_on_start(self, event: flywheel.JobEvent) -> None:
        self._keep(self.started, event)

    @flywheel.hookimpl
    def flywheel_on_finish(self, event: flywheel.FinishEvent) -> None:
        self._keep(self.finished, event)

    @flywheel.hookimpl
    def flywheel_on_retry(self, event: flywheel.RetryEvent) -> None:
        self._keep(self.retried, event)


# -- (a) every hook has a heading in docs/plugins/hooks.md ------------------------------


def test_every_hook_spec_has_a_heading() -> None:
    documented = {name for name, _ in documented_hooks()}
    missing = sorted(set(hook_specs()) - documented)
    assert not missing, f"hooks without a heading in {HOOKS_DOC.relative_to(ROOT)}: {missing}"


def test_every_heading_names_an_existing_hook() -> None:
    specs = hook_specs()
    unknown = sorted({name for name, _ in documented_hooks()} - set(specs))
    assert not unknown, f"{HOOKS_DOC.relative_to(ROOT)} documents hooks that flywheel.hookspecs lacks: {unknown}"


def test_each_hook_is_documented_once() -> None:
    names = [name for name, _ in documented_hooks()]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_heading_signature_matches_the_spec(hook: str) -> None:
    params = hook_specs()[hook]
    documented = dict(documented_hooks())
    if hook not in documented:
        pytest.fail(f"no heading for {hook} in {HOOKS_DOC.relative_to(ROOT)}")
    expected = f"{hook}({', '.join(params)})"
    actual = f"{hook}({', '.join(documented[hook])})"
    assert actual == expected, f"heading says {actual}, flywheel.hookspecs says {expected}"


def test_the_heading_parser_reads_the_documented_form() -> None:
    sample = "# Hooks\n\n## flywheel_driver(url)\n\ntext flywheel_fake(x)\n\n## `flywheel_on_finish(event)`\n"
    found = [(m.group(1), m.group(2)) for m in _HEADING.finditer(sample)]
    assert found == [("flywheel_driver", "url"), ("flywheel_on_finish", "event")]


# -- (b) every built-in plugin is an entry point, and the loaded manager is valid -------


@pytest.mark.parametrize("module", plugin_modules())
def test_builtin_plugin_is_declared_as_an_entry_point(module: str) -> None:
    installed = installed_entry_points()
    if any(declares(ep.value, module) for ep in installed):
        return
    in_pyproject = any(declares(value, module) for value in pyproject_entry_points().values())
    hint = (
        "pyproject.toml declares it but the installed metadata does not: reinstall (pip install -e '.[dev]')"
        if in_pyproject
        else f"add it to [project.entry-points.{ENTRY_POINT_GROUP}] in pyproject.toml"
    )
    pytest.fail(f"{module} is not in the {ENTRY_POINT_GROUP!r} entry-point group; {hint}")


def test_the_plugin_directory_is_scanned() -> None:
    # Guards the scan itself: the kernel cannot work without at least the SQLite driver.
    assert "flywheel_plugins.sqlite" in plugin_modules()


def test_manager_from_entry_points_loads_every_builtin_and_passes_check_pending() -> None:
    pm = make_plugin_manager(disabled=[])
    pm.check_pending()
    for ep in installed_entry_points():
        plugin = pm.get_plugin(ep.name)
        assert plugin is not None, f"entry point {ep.name} = {ep.value} was not registered"
        assert plugin is ep.load()
    for name, plugin in pm.list_name_plugin():
        assert pm.get_hookcallers(plugin), f"plugin {name!r} implements no flywheel hook"


# -- (c) a misspelt hook fails loudly ---------------------------------------------------


class Misspelt:
    @flywheel.hookimpl
    def flywheel_on_finsh(self, event: object) -> None:  # sic: "finsh"
        pass


class MisspeltArgument:
    @flywheel.hookimpl
    def flywheel_on_finish(self, evnt: object) -> None:  # sic: "evnt"
        pass


def test_misspelt_hook_fails_when_the_manager_is_built() -> None:
    with pytest.raises(pluggy.PluginValidationError, match="flywheel_on_finsh"):
        make_plugin_manager(load_entrypoints=False, plugins=[Misspelt()])


def test_misspelt_hook_fails_check_pending_on_an_explicit_manager() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Misspelt())
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'flywheel_on_finsh'"):
        pm.check_pending()


def test_misspelt_hook_fails_registration_on_the_default_manager() -> None:
    plugin = Misspelt()
    try:
        with pytest.raises(pluggy.PluginValidationError, match="flywheel_on_finsh"):
            flywheel.plugins.register(plugin)
    finally:
        if flywheel.plugins.get_plugin_manager().is_registered(plugin):
            flywheel.plugins.unregister(plugin)


def test_misspelt_argument_fails_at_registration() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    with pytest.raises(pluggy.PluginValidationError, match="evnt"):
        pm.register(MisspeltArgument())


# -- (d) FLYWHEEL_DISABLE_PLUGINS and --disable-plugin -----------------------------------


def test_disable_env_blocks_the_sqlite_driver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DISABLE_ENV, "sqlite")
    pm = make_plugin_manager()
    assert pm.is_blocked("sqlite")
    assert pm.get_plugin("sqlite") is None
    with pytest.raises(ValueError) as info:
        flywheel.connect("sqlite:///x.db", pm=pm)
    message = str(info.value)
    assert "'sqlite'" in message  # the scheme that was asked for
    understood = sorted({s for plugin in pm.get_plugins() for s in getattr(plugin, "URL_SCHEMES", ())})
    assert "sqlite" not in understood
    for scheme in understood:  # e.g. postgresql:// once the PostgreSQL driver is installed
        assert f"{scheme}://" in message
    if not understood:
        assert "blocked" in message
    assert list(tmp_path.iterdir()) == []  # nothing was opened or created


def test_disable_env_takes_several_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, " logging , sqlite,")
    pm = make_plugin_manager()
    assert pm.is_blocked("logging") and pm.is_blocked("sqlite")
    assert pm.get_plugin("cli") is not None


#: CONTRACT.md §2/§6: the built-in entry-point names a user can block
CONTRACT_NAMES = ("sqlite", "postgres", "logging", "prometheus", "health", "exec", "shell", "python", "mage", "http")


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_every_contract_plugin_name_is_an_entry_point_and_can_be_blocked(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in {ep.name for ep in installed_entry_points()}
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    assert make_plugin_manager().get_plugin(name) is not None
    monkeypatch.setenv(DISABLE_ENV, name)
    pm = make_plugin_manager()
    assert pm.is_blocked(name) and pm.get_plugin(name) is None
    assert all(pm.get_plugin(other) is not None for other in CONTRACT_NAMES if other != name)
    if name in ("exec", "shell", "python", "mage", "http"):  # its worker kind goes with it
        assert name not in flywheel.Registry().load_plugins(pm).kinds()
        assert name in flywheel.Registry().load_plugins(make_plugin_manager(disabled=[])).kinds()


def test_an_unblocked_manager_opens_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    db = open_db(tmp_path, pm=make_plugin_manager())
    assert db.dialect == "sqlite"
    db.close()


def test_cli_disable_plugin_flag_blocks_the_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["--db", "sqlite:///x.db", "--disable-plugin", "sqlite", "migrate"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "no driver for 'sqlite'" in err and "Traceback" not in err
    assert not (tmp_path / "x.db").exists()


# -- (e) register / unregister on the default manager take effect at once ---------------


def test_register_and_unregister_act_on_the_default_manager_at_once(tmp_path: Path) -> None:
    db = open_db(tmp_path)  # default manager
    registry = ping_registry()
    client = flywheel.Client(db, registry=registry)
    recorder = Recorder()
    first = client.insert(Ping())
    runner = flywheel.Runner(db, registry, **FAST)  # built before the plugin is registered
    flywheel.plugins.register(recorder)
    try:
        assert runner.run_until_idle(timeout=30) == 1
        assert [type(e) for e in recorder.finished] == [flywheel.FinishEvent]
        event = recorder.finished[0]
        assert (event.job_id, event.kind, event.outcome, event.error) == (first, "ping", "success", None)
        assert [e.job_id for e in recorder.started] == [first]
        assert sum(e.claimed for e in recorder.claimed) == 1
    finally:
        flywheel.plugins.unregister(recorder)
    assert not flywheel.plugins.get_plugin_manager().is_registered(recorder)
    client.insert(Ping())
    assert runner.run_until_idle(timeout=30) == 1
    assert len(recorder.finished) == 1  # unregistered: the second job went unobserved
    db.close()


# -- (f) observer isolation ---------------------------------------------------------------


class Raiser:
    """Raises from every observer hook, and is called before the other observers."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def _fail(self, hook: str) -> None:
        self.calls.append(f"raiser:{hook}")
        raise RuntimeError(f"observer bug in {hook}")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_claim(self, event: object) -> None:
        self._fail("claim")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_start(self, event: object) -> None:
        self._fail("start")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_finish(self, event: object) -> None:
        self._fail("finish")

    @flywheel.hookimpl(tryfirst=True)
    def flywheel_on_retry(self, event: object) -> None:
        self._fail("retry")


class OrderedRecorder(Recorder):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    @flywheel.hookimpl
    def flywheel_on_finish(self, event: flywheel.FinishEvent) -> None:
        self.calls.append("recorder:finish")
        super().flywheel_on_finish(event)


@pytest.mark.parametrize("raiser_registered_first", [True, False])
def test_an_observer_that_raises_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, raiser_registered_first: bool
) -> None:
    calls: list[str] = []
    raiser, recorder = Raiser(calls), OrderedRecorder(calls)
    observers = [raiser, recorder] if raiser_registered_first else [recorder, raiser]
    pm = make_plugin_manager(disabled=[], plugins=observers)
    db = open_db(tmp_path, pm=pm)
    registry = ping_registry()
    client = flywheel.Client(db, registry=registry)
    ids = [client.insert(Ping()), client.insert(Ping(fail_first=True)), client.insert(Ping())]

    with caplog.at_level("ERROR", logger="flywheel.plugins"):
        runs = flywheel.Runner(db, registry, pm=pm, concurrency=2, **FAST).run_until_idle(timeout=30)

    assert runs == 4
    assert [flywheel.find_job(db, i).state for i in ids] == ["succeeded"] * 3
    # The recorder saw every event although the raiser failed before it each time.
    assert sorted(str(e.outcome) for e in recorder.finished) == ["error", "success", "success", "success"]
    assert len(recorder.started) == 4
    assert [e.job_id for e in recorder.retried] == [ids[1]]
    assert sum(e.claimed for e in recorder.claimed) == 4
    finishes = [c for c in calls if c.endswith(":finish")]
    assert finishes[0] == "raiser:finish" and finishes[1] == "recorder:finish"
    failed = [r for r in caplog.records if "observer" in r.getMessage() and "failed" in r.getMessage()]
    assert {r.getMessage().split(" in ")[-1] for r in failed} == {
        "flywheel_on_claim", "flywheel_on_start", "flywheel_on_finish", "flywheel_on_retry"}
    db.close()


# -- (g) importing flywheel loads no plugin and opens no database -----------------------

_IMPORT_PROBE = """
import importlib.metadata, json, os, sys
scans = []
for name in ("entry_points", "distributions"):
    real = getattr(importlib.metadata, name)
    def spy(*a, _real=real, _name=name, **k):
        scans.append(_name)
        return _real(*a, **k)
    setattr(importlib.metadata, name, spy)
import flywheel
print(json.dumps({
    "plugin_modules": sorted(m for m in sys.modules if m.split(".")[0] == "flywheel_plugins"),
    "entry_point_scans": scans,
    "files": sorted(os.listdir(".")),
}))
"""


def test_importing_flywheel_loads_no_plugin_and_opens_no_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(done.stdout)
    assert report == {"plugin_modules": [], "entry_point_scans": [], "files": []}


# -- (h) the example third-party plugin, registered in code ------------------------------


@pytest.fixture
def hello(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """examples/flywheel-plugin-hello imported by path (installing it is not needed)."""
    spec = importlib.util.spec_from_file_location("flywheel_plugin_hello", HELLO_DIR / "flywheel_plugin_hello.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "flywheel_plugin_hello", module)  # attrs/cattrs resolve its annotations
    spec.loader.exec_module(module)
    yield module


def test_hello_example_is_a_complete_package() -> None:
    project = tomllib.loads((HELLO_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "flywheel-plugin-hello"
    assert project["project"]["entry-points"][ENTRY_POINT_GROUP] == {"hello": "flywheel_plugin_hello"}
    assert (HELLO_DIR / "README.md").is_file()


def test_hello_example_hooks_work_with_an_explicit_manager(hello: ModuleType, tmp_path: Path) -> None:
    # "hello" is blocked by name in case the example is also pip-installed in this environment.
    pm = make_plugin_manager(disabled=["hello"], plugins=[hello])
    assert {c.name for c in pm.get_hookcallers(hello) or []} >= {
        "flywheel_register_workers", "flywheel_on_finish", "flywheel_commands"}
    registry = flywheel.Registry().load_plugins(pm)
    assert "hello" in registry
    assert "hello" not in flywheel.Registry().load_plugins(make_plugin_manager(disabled=["hello"]))

    db = open_db(tmp_path, pm=pm)
    client = flywheel.Client(db, registry=registry)
    good, bad = client.insert(hello.Hello(name="Ada")), client.insert(hello.Hello(name=" "))
    hello.TALLY.clear()
    assert flywheel.Runner(db, registry, pm=pm, **FAST).run_until_idle(timeout=30) == 2

    assert flywheel.find_job(db, good).state == "succeeded"
    assert flywheel.list_runs(db, good)[0].output == {"greeting": "Hello, Ada!"}
    assert flywheel.find_job(db, bad).state == "discarded"  # Permanent: no retries
    assert flywheel.list_runs(db, bad)[0].error_class == "permanent"
    assert hello.TALLY == {"success": 1, "error": 1}

    result = CliRunner().invoke(build_cli(pm), ["--db", sqlite_url(tmp_path), "hello", "Grace"])
    assert result.exit_code == 0, result.output
    job = flywheel.find_job(db, result.output.strip())
    assert (job.kind, job.args, job.state) == ("hello", {"name": "Grace"}, "available")
    db.close()


@pytest.mark.parametrize(("module", "names"), [
    ("flywheel_plugins.health", ["HealthServer", "HealthServerError", "parse_addr", "readiness"]),
    ("flywheel_plugins.workers.exec", ["ExecArgs", "ExecWorker", "from_table"]),
    ("flywheel_plugins.workers.shell", ["ShellArgs", "ShellWorker"]),
    ("flywheel_plugins.workers.python", ["PythonArgs", "PythonWorker"]),
    ("flywheel_plugins.workers.mage", ["MageArgs", "MageWorker"]),
    ("flywheel_plugins.workers.http", ["HTTPArgs", "HTTPWorker", "DEFAULT_MAX_BODY_BYTES"]),
])
def test_light_plugin_modules_still_export_their_implementation(module: str, names: list[str]) -> None:
    """The entry-point modules hold only hooks; their implementation's names stay importable from them."""
    plugin = importlib.import_module(module)
    for name in names:
        assert getattr(plugin, name) is not None, name
    assert not hasattr(plugin, "no_such_name")
