"""``flywheel serve``: the daemon, one node built from the config, run until SIGINT/SIGTERM.

The registry always holds the workers of every installed plugin (``flywheel_register_workers``)
plus, with ``--app`` / ``[runtime] app``, the user's own ``Registry``: a node never claims
jobs it could run with a plugin's worker and discards them as unknown.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from flywheel.cli import State
from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel.config import Config, LoadedConfig, ScheduleConfig
    from flywheel.registry import Registry
    from flywheel.storage.db import Database

log = logging.getLogger("flywheel.serve")


def load_app(spec: str, source: str = "runtime.app") -> Registry:
    """The ``Registry`` of ``module`` or ``module:attribute``, importable from the working directory."""
    from flywheel.config import ConfigError
    from flywheel.registry import Registry

    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the app lives in the project
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError("runtime.app", f"no module named {module_name!r} (from {os.getcwd()})", source) from exc
        raise
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, Registry):
            raise ConfigError("runtime.app", f"{spec} is not a flywheel.Registry", source)
        return found
    registries = [value for value in vars(module).values() if isinstance(value, Registry)]
    if len(registries) != 1:
        problem = "has no flywheel.Registry" if not registries else "has several flywheel.Registry objects"
        raise ConfigError("runtime.app", f"module {module_name} {problem}; name one as {module_name}:ATTRIBUTE",
                          source)
    return registries[0]


def build_registry(pm: Any, config: Config, source: str = "runtime.app") -> Registry:
    """The plugins' workers plus the app's (a kind registered by both is an error)."""
    from flywheel.config import ConfigError
    from flywheel.errors import DuplicateKind
    from flywheel.registry import Registry

    registry = Registry().load_plugins(pm, config=config)
    if config.runtime.app:
        for entry in load_app(config.runtime.app, source):
            try:
                registry.register(entry.worker, kind=entry.kind)
            except DuplicateKind:
                raise ConfigError("runtime.app", f"kind {entry.kind!r} is registered by both the app and a plugin",
                                  source) from None
    return registry


def reconcile_schedules(db: Database, schedules: tuple[ScheduleConfig, ...]) -> list[str]:
    """Upsert the configured schedules; pause active ones the file no longer lists. Returns the paused slugs."""
    from flywheel.scheduling.schedules import list_periodics, set_periodic_active, upsert_periodic

    for schedule in schedules:
        upsert_periodic(db, schedule.spec())
    configured = {schedule.slug for schedule in schedules}
    paused = [view.slug for view in list_periodics(db) if view.active and view.slug not in configured]
    for slug in paused:
        set_periodic_active(db, slug, False)
        log.warning("flywheel serve: schedule %s is not in the config file; deactivated (kept for inspection)", slug,
                    extra={"action": "schedule_deactivated", "slug": slug})
    return paused


def build_node(state: State, loaded: LoadedConfig, registry: Registry) -> Any:
    from flywheel.runtime.node import HealthConfig, Node, RunnerConfig, SchedulerConfig

    runtime = loaded.config.runtime
    runner = RunnerConfig(queues=runtime.queues, concurrency=runtime.concurrency, prefetch=runtime.prefetch,
                          claim_any_class=True,
                          lease=runtime.lease, poll_interval=runtime.poll_interval,
                          retry_backoff_base=runtime.retry_backoff_base)
    scheduler = SchedulerConfig(retention=runtime.retention, health_sample_interval=runtime.health_sample_interval)
    return Node(state.db(), registry, runners=[runner], scheduler=scheduler,
                health=HealthConfig(addr=runtime.metrics_addr), drain_timeout=runtime.drain_timeout, pm=state.pm,
                config=loaded.config)


@click.command()
@click.option("--app", default=None, metavar="MODULE[:ATTR]",
              help="Import your module and run the workers of its flywheel.Registry ([runtime] app).")
@click.option("--queue", "queues", multiple=True, metavar="NAME",
              help="A queue to work (repeatable; [runtime] queues).")
@click.option("--concurrency", type=int, default=None, help="Jobs run at once ([runtime] concurrency).")
@click.pass_obj
def serve(state: State, app: str | None, queues: tuple[str, ...], concurrency: int | None) -> None:
    """Run the daemon: migrate, write the configured schedules, then run jobs until SIGINT/SIGTERM.

    The first signal drains (in-flight jobs finish, up to [runtime] drain_timeout); a second
    one exits at once.
    """
    from flywheel import __version__
    from flywheel.logsetup import configure_logging
    from flywheel.storage.db import migrate

    flags = {"runtime.app": app, "runtime.queues": list(queues) or None, "runtime.concurrency": concurrency}
    loaded = state.loaded({k: v for k, v in flags.items() if v is not None},
                          {"runtime.app": "--app", "runtime.queues": "--queue", "runtime.concurrency": "--concurrency"})
    config = loaded.config
    configure_logging(config.log.level, config.log.format, verbose=state.verbose)
    registry = build_registry(state.pm, config, loaded.sources.get("runtime.app", "runtime.app"))
    if not len(registry):  # a node with no worker would claim every job and discard it as an unknown kind
        from flywheel.config import ConfigError

        raise ConfigError("runtime.app", "no workers to run: pass --app MODULE (a module with a flywheel.Registry) "
                          "or install a worker plugin")
    db = state.db()
    migrate(db)
    paused = reconcile_schedules(db, config.schedules)
    node = build_node(state, loaded, registry)
    runtime = config.runtime
    log.info("flywheel serve: started (version %s, db %s, queues %s, concurrency %d, kinds %s)", __version__,
             db.url, ",".join(runtime.queues), runtime.concurrency, ",".join(registry.kinds()), extra={
        "action": "serve_started", "version": __version__, "db": db.url, "config": str(loaded.path or "-"),
        "queues": list(runtime.queues), "concurrency": runtime.concurrency, "kinds": registry.kinds(),
        "app": runtime.app, "schedules": len(config.schedules), "schedules_paused": paused,
        "retention": None if runtime.retention is None else runtime.retention.total_seconds(),
        "metrics_addr": runtime.metrics_addr})
    node.run()


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(serve)
