"""``flywheel.toml``: the settings of the ``flywheel`` command and daemon, and where each came from.

A setting is taken from, in order of precedence: a command-line flag (passed in as
``overrides``), the environment (``FLYWHEEL_<SECTION>_<KEY>``, e.g. ``FLYWHEEL_RUNTIME_LEASE``),
the config file, then the default. The file is ``--config PATH``, else ``./flywheel.toml``,
else ``[tool.flywheel]`` in ``./pyproject.toml``, else ``<user config dir>/flywheel/flywheel.toml``;
no file at all is fine. Unknown keys and bad values are rejected with the key's path
(``runtime.lease: …``, ``schedules[1].every: …``) and where the value came from.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import cattrs

from flywheel.durations import duration_value
from flywheel.errors import FlywheelError, ValidationError
from flywheel.logsetup import FORMATS as LOG_FORMATS, LEVELS as LOG_LEVELS
from flywheel.runtime.defaults import DEFAULT_CONCURRENCY, DEFAULT_PREFETCH
from flywheel.storage import DEFAULT_URL

#: Host variables a command worker sees when no ``[runtime] env_allowlist`` is configured.
DEFAULT_ENV_ALLOWLIST: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
FILE_NAME = "flywheel.toml"
DEFAULT_SOURCE = "default"


class ConfigError(FlywheelError, ValueError):
    """A bad config file, environment variable or flag: ``path`` names the key, ``source`` where it was set."""

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path, self.message, self.source = path, message, source
        super().__init__(": ".join(part for part in (source, path, message) if part))


# -- the settings -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DatabaseConfig:
    """``[database]``: where the jobs live."""

    url: str = DEFAULT_URL


@attrs.frozen(kw_only=True)
class RuntimeConfig:
    """``[runtime]``: what ``flywheel serve`` runs and how."""

    queues: tuple[str, ...] = ("default", "periodic")
    concurrency: int = DEFAULT_CONCURRENCY
    prefetch: int = DEFAULT_PREFETCH
    lease: timedelta = timedelta(seconds=30)
    poll_interval: timedelta = timedelta(milliseconds=250)
    retry_backoff_base: timedelta = timedelta(seconds=1)
    retention: timedelta | None = None
    metrics_addr: str | None = None
    health_sample_interval: timedelta | None = None
    env_allowlist: tuple[str, ...] = DEFAULT_ENV_ALLOWLIST
    drain_timeout: timedelta | None = None
    app: str | None = None


@attrs.frozen(kw_only=True)
class LogConfig:
    """``[log]``: the level and the format (``text`` or ``json``) of the daemon's log on stderr."""

    level: str = "info"
    format: str = "text"


@attrs.frozen(kw_only=True)
class DashboardConfig:
    """``[dashboard]``: where a dashboard service listens (None: it is not started)."""

    bind: str | None = None


@attrs.frozen(kw_only=True)
class ScheduleConfig:
    """One ``[[schedules]]`` table, resolved to the job it enqueues (``kind`` and JSON-able ``args``).

    ``worker`` names the worker type whose sub-table produced ``args``, or is None when the
    table gave ``kind`` and ``args`` itself.
    """

    slug: str
    kind: str
    queue: str = "periodic"
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    active: bool = True
    args: Any = None
    worker: str | None = None

    def spec(self) -> Any:
        """The :class:`~flywheel.PeriodicSpec` that ``flywheel serve`` upserts."""
        from flywheel.scheduling.schedules import PeriodicSpec

        return PeriodicSpec(slug=self.slug, kind=self.kind, queue=self.queue, args=self.args, cron=self.cron,
                            every=self.every, active=self.active, timezone=self.timezone)


@attrs.frozen(kw_only=True)
class Config:
    """Every setting of the ``flywheel`` command, frozen."""

    database: DatabaseConfig = DatabaseConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    log: LogConfig = LogConfig()
    schedules: tuple[ScheduleConfig, ...] = ()
    dashboard: DashboardConfig = DashboardConfig()


@attrs.frozen(kw_only=True)
class LoadedConfig:
    """A config with the file it was read from and the source of every setting (``"runtime.lease"`` → source).

    A source is ``"default"``, the file's name, ``"env FLYWHEEL_…"`` or the flag (``"--db"``).
    """

    config: Config
    path: Path | None
    sources: dict[str, str]


SECTIONS: dict[str, type] = {"database": DatabaseConfig, "runtime": RuntimeConfig, "log": LogConfig,
                             "dashboard": DashboardConfig}
for _cls in (*SECTIONS.values(), ScheduleConfig, Config):
    attrs.resolve_types(_cls)


def env_name(key: str) -> str:
    """The environment variable of a dotted key: ``runtime.lease`` → ``FLYWHEEL_RUNTIME_LEASE``."""
    return "FLYWHEEL_" + key.replace(".", "_").upper()


def setting_keys() -> list[str]:
    """Every dotted key a flag, the environment or a file can set (``[[schedules]]`` aside)."""
    return [f"{section}.{field.name}" for section, cls in SECTIONS.items() for field in attrs.fields(cls)]


# -- structuring one value ------------------------------------------------------------


def _duration(value: Any, _: Any = None) -> timedelta:
    try:
        return duration_value(value)
    except ValidationError as exc:
        raise ValueError(exc.message) from None


def _strict(kind: type, label: str) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise ValueError(f"must be {label}, not {value!r}")
        return value

    return structure


def _names(value: Any, _: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, not {value!r}")
    return tuple(value)


converter = cattrs.Converter()
converter.register_structure_hook(timedelta, _duration)
converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(bool, _strict(bool, "true or false"))
converter.register_structure_hook_func(lambda kind: kind == tuple[str, ...], _names)


def _from_env(text: str, kind: Any) -> Any:
    """An environment variable's text as the value a TOML file would hold."""
    if kind == tuple[str, ...]:
        return [part.strip() for part in text.split(",") if part.strip()]
    optional = type(None) in getattr(kind, "__args__", ())
    if optional and not text.strip():
        return None
    if kind is int or (optional and int in kind.__args__):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"must be an integer, not {text!r}") from None
    if kind is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"must be true or false, not {text!r}")
        return lowered in ("true", "1", "yes")
    return text


def _structure(value: Any, kind: Any) -> Any:
    try:
        return converter.structure(value, kind)
    except cattrs.BaseValidationError as exc:
        causes = [str(e) for e in exc.exceptions] or [str(exc)]
        raise ValueError("; ".join(causes)) from None
    except (TypeError, KeyError) as exc:
        raise ValueError(f"has the wrong type: {value!r} ({exc})") from None


def _positive(value: timedelta | None) -> bool:
    return value is None or value > timedelta(0)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "database.url": (lambda v: bool(v.strip()), "must not be empty"),
    "runtime.queues": (lambda v: bool(v) and all(q.strip() for q in v), "must name at least one non-empty queue"),
    "runtime.concurrency": (lambda v: v >= 1, "must be at least 1"),
    "runtime.prefetch": (lambda v: v >= 0, "must not be negative"),
    "runtime.lease": (_positive, "must be positive"),
    "runtime.poll_interval": (_positive, "must be positive"),
    "runtime.retry_backoff_base": (_positive, "must be positive"),
    "runtime.retention": (_positive, "must be positive (leave it out to keep finished jobs)"),
    "runtime.health_sample_interval": (_positive, "must be positive"),
    "runtime.drain_timeout": (lambda v: v is None or v >= timedelta(0), "must not be negative"),
    "runtime.metrics_addr": (lambda v: v is None or _is_addr(v), "must be host:port or :port"),
    "log.level": (lambda v: v.lower() in LOG_LEVELS, f"must be one of {', '.join(LOG_LEVELS)}"),
    "log.format": (lambda v: v in LOG_FORMATS, f"must be one of {', '.join(LOG_FORMATS)}"),
    "dashboard.bind": (lambda v: v is None or _is_addr(v), "must be host:port or :port"),
}


def _is_addr(value: str) -> bool:
    _host, sep, port = value.rpartition(":")
    return bool(sep) and port.isdigit() and 0 <= int(port) <= 65535


# -- finding and reading the file -------------------------------------------------------


def user_config_file(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CONFIG_HOME/flywheel/flywheel.toml`` (``~/.config`` when unset)."""
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "flywheel" / FILE_NAME


def find_config_file(explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None,
                     env: Mapping[str, str] = os.environ) -> Path | None:
    """The file to read: ``explicit`` (which must exist), else the first of the default places that exists."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("", f"config file not found: {path}")
        return path
    here = cwd or Path.cwd()
    if (here / FILE_NAME).is_file():
        return here / FILE_NAME
    pyproject = here / "pyproject.toml"
    if pyproject.is_file() and _tool_table(_read_toml(pyproject), pyproject) is not None:
        return pyproject
    user = user_config_file(env)
    return user if user.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror or exc}") from None


def _tool_table(data: dict[str, Any], path: Path) -> dict[str, Any] | None:
    table = data.get("tool", {}).get("flywheel")
    if table is not None and not isinstance(table, dict):
        raise ConfigError("tool.flywheel", "must be a table", str(path))
    return table


def read_file(path: Path) -> dict[str, Any]:
    """The flywheel table of a file: the whole ``flywheel.toml``, or ``[tool.flywheel]`` of a ``pyproject.toml``."""
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        return _tool_table(data, path) or {}
    return data


# -- loading ------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] = os.environ,
                overrides: Mapping[str, Any] | None = None, pm: Any = None, discover: bool = True) -> Config:
    """Read the settings (see the module docstring); ``overrides`` maps dotted keys to flag values."""
    return read_config(path, env=env, overrides=overrides, pm=pm, discover=discover).config


def read_config(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] = os.environ,
                overrides: Mapping[str, Any] | None = None, override_sources: Mapping[str, str] | None = None,
                pm: Any = None, discover: bool = True) -> LoadedConfig:
    """Like :func:`load_config`, keeping the file and each setting's source (what ``flywheel doctor`` shows)."""
    file = find_config_file(path, env=env) if (path is not None or discover) else None
    data = read_file(file) if file is not None else {}
    file_source = str(file) if file is not None else None
    unknown = sorted(set(data) - set(SECTIONS) - {"schedules"})
    if unknown:
        raise ConfigError(unknown[0], f"unknown section (known: {', '.join([*SECTIONS, 'schedules'])})", file_source)

    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    sources: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(section, f"must be a table ([{section}])", file_source)
        fields = {field.name: field for field in attrs.fields(cls)}
        for key in table:
            if key not in fields:
                raise ConfigError(f"{section}.{key}", f"unknown key (known: {', '.join(fields)})", file_source)
        for name, field in fields.items():
            key = f"{section}.{name}"
            raw, source = _pick(key, field.type, table, env, overrides or {}, override_sources or {}, file_source)
            if source == DEFAULT_SOURCE:
                sources[key] = source
                continue
            try:
                value = _structure(raw, field.type)
            except ValueError as exc:
                raise ConfigError(key, str(exc), source) from None
            check = _CHECKS.get(key)
            if check is not None and not check[0](value):
                raise ConfigError(key, f"{check[1]}, not {raw!r}", source)
            values[section][name] = value
            sources[key] = source

    schedules_raw = data.get("schedules", [])
    if not isinstance(schedules_raw, list) or not all(isinstance(t, dict) for t in schedules_raw):
        raise ConfigError("schedules", "must be an array of tables ([[schedules]])", file_source)
    schedules = parse_schedules(schedules_raw, pm=pm, source=file_source)
    if schedules_raw:
        sources["schedules"] = file_source or DEFAULT_SOURCE
    sections = {section: cls(**values[section]) for section, cls in SECTIONS.items()}
    config = Config(schedules=schedules, **sections)
    return LoadedConfig(config=config, path=file, sources=sources)


def _pick(key: str, kind: Any, table: Mapping[str, Any], env: Mapping[str, str], overrides: Mapping[str, Any],
          override_sources: Mapping[str, str], file_source: str | None) -> tuple[Any, str]:
    """The raw value of ``key`` from the layer that wins, and that layer's name."""
    if key in overrides and overrides[key] is not None:
        return overrides[key], override_sources.get(key, "flag")
    variable = env_name(key)
    if variable in env:
        try:
            return _from_env(env[variable], kind), f"env {variable}"
        except ValueError as exc:
            raise ConfigError(key, str(exc), f"env {variable}") from None
    name = key.partition(".")[2]
    if name in table:
        return table[name], file_source or "file"
    return None, DEFAULT_SOURCE


# -- [[schedules]] ------------------------------------------------------------------------

_SCHEDULE_KEYS = ("slug", "kind", "args", "worker", "cron", "every", "queue", "timezone", "active")


def worker_types(pm: Any = None) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """Every plugin's ``flywheel_worker_types()`` merged: ``{name: factory}``."""
    from flywheel.plugins import resolve

    merged: dict[str, Callable[[Mapping[str, Any]], Any]] = {}
    for mapping in resolve(pm).hook.flywheel_worker_types():
        merged.update(mapping or {})
    return merged


def parse_schedules(tables: list[dict[str, Any]], *, pm: Any = None, source: str | None = None) -> tuple[
        ScheduleConfig, ...]:
    """Resolve ``[[schedules]]`` tables; a bad one raises ``ConfigError`` naming ``schedules[i].key``."""
    types = worker_types(pm) if tables else {}
    result: list[ScheduleConfig] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        schedule = _schedule(f"schedules[{index}]", table, types, source)
        if schedule.slug in seen:
            raise ConfigError(f"schedules[{index}].slug",
                              f"duplicate slug {schedule.slug!r} (also schedules[{seen[schedule.slug]}])", source)
        seen[schedule.slug] = index
        result.append(schedule)
    return tuple(result)


def _schedule(path: str, table: Mapping[str, Any], types: Mapping[str, Callable[..., Any]],
              source: str | None) -> ScheduleConfig:
    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}.{key}" if key else path, message, source)

    worker = table.get("worker")
    if worker is not None and not isinstance(worker, str):
        raise fail("worker", f"must be a string, not {worker!r}")
    for key, value in table.items():
        if key in _SCHEDULE_KEYS or key == worker:
            continue
        if isinstance(value, dict) and key in types:
            raise fail(key, f"a [schedules.{key}] table needs worker = \"{key}\"")
        raise fail(key, f"unknown key (known: {', '.join(_SCHEDULE_KEYS)}, and one table named after the worker)")
    fields: dict[str, Any] = {}
    for name in ("slug", "queue", "cron", "timezone", "every", "active"):
        if name in table:
            kind = attrs.fields_dict(ScheduleConfig)[name].type
            try:
                fields[name] = _structure(table[name], kind)
            except ValueError as exc:
                raise fail(name, str(exc)) from None
    if "slug" not in fields:
        raise fail("slug", "is missing")
    if fields.get("every") is not None and fields["every"] < timedelta(seconds=1):
        raise fail("every", f"must be at least 1s, not {table['every']!r}")
    fields["kind"], fields["args"] = (_worker_args(table, worker, types, fail) if worker is not None
                                      else _plain_args(table, fail))
    schedule = ScheduleConfig(worker=worker, **fields)
    try:
        from flywheel.scheduling.schedules import validate

        validate(schedule.spec())
    except ValidationError as exc:
        raise fail(exc.field, exc.message) from None
    return schedule


def _worker_args(table: Mapping[str, Any], worker: str, types: Mapping[str, Callable[..., Any]],
                 fail: Callable[[str, str], ConfigError]) -> tuple[str, Any]:
    if "kind" in table or "args" in table:
        raise fail("kind", f"give either worker = \"{worker}\" with a [schedules.{worker}] table, or kind and args")
    factory = types.get(worker)
    if factory is None:
        known = ", ".join(sorted(types)) or "none: no installed plugin provides worker types"
        raise fail("worker", f"unknown worker type {worker!r} (known: {known})")
    settings = table.get(worker)
    if not isinstance(settings, dict):
        raise fail(worker, f"is missing: worker = \"{worker}\" needs a [schedules.{worker}] table")
    try:
        args = factory(settings)
    except ValidationError as exc:
        raise fail(f"{worker}.{exc.field}", exc.message) from None
    kind = getattr(type(args), "kind", None)
    if not isinstance(kind, str):
        raise fail("worker", f"worker type {worker!r} returned {type(args).__name__}, which has no 'kind'")
    from flywheel.serde import converter as args_converter

    return kind, args_converter.unstructure(args)


def _plain_args(table: Mapping[str, Any], fail: Callable[[str, str], ConfigError]) -> tuple[str, Any]:
    kind = table.get("kind")
    if not isinstance(kind, str) or not kind.strip():
        raise fail("kind", "is missing: give kind (and args), or worker with its table")
    args = table.get("args", {})
    if not isinstance(args, (dict, list)):
        raise fail("args", f"must be a table or an array, not {args!r}")
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise fail("args", f"must be JSON-able: {exc}") from None
    return kind, args


__all__ = ["Config", "ConfigError", "DashboardConfig", "DatabaseConfig", "LoadedConfig", "LogConfig",
           "RuntimeConfig", "ScheduleConfig", "env_name", "find_config_file", "load_config", "read_config",
           "setting_keys", "worker_types"]
