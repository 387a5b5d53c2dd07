"""``flywheel doctor``: check the config, the database, its schema and the plugins; report, never change.

Unlike go-flywheel's doctor this writes nothing: no migration, no DDL, and a SQLite file
that does not exist is reported rather than created. Exit status 1 when a check fails.
"""

from __future__ import annotations

import textwrap
from typing import Any

import click

from flywheel.cli import State, scrubbed_reason
from flywheel.plugins import hookimpl
from flywheel_plugins.cli.output import table

TABLES = ("jobs", "job_runs", "job_periodics")


def show(value: Any) -> str:
    """A setting as it would be written in flywheel.toml."""
    from datetime import timedelta

    from flywheel.durations import format_duration

    if value is None:
        return "(unset)"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def check_database(state: State, url: str) -> tuple[bool, list[str]]:
    """Reach the database and look for flywheel's tables, read-only."""
    import os

    from flywheel.plugins import find_driver
    from flywheel.storage.db import Database

    driver = find_driver(state.pm, url)
    path = getattr(driver, "path", None)
    if driver.name == "sqlite" and path and not os.path.exists(path):
        return False, [(f"database:  {driver.display_url()}: the SQLite file {path} does not exist "
                        "(run 'flywheel migrate' to create it)")]
    db = Database(driver, state.pm)
    try:
        db.pw.connect(reuse_if_open=True)
    except Exception as exc:
        return False, [f"database:  cannot reach database at {db.url}: {scrubbed_reason(db, exc)}"]
    try:
        missing = [name for name in TABLES if not _has_table(db, name)]
        lines = [f"database:  {db.url} ({db.dialect}, reachable)"]
        if missing:
            lines.append(f"schema:    missing {', '.join(missing)} (run 'flywheel migrate')")
            return False, lines
        lines.append("schema:    " + ", ".join(TABLES) + " present")
        return True, lines + _queue_lines(db)
    finally:
        db.close()


def _has_table(db: Any, name: str) -> bool:
    model = db.models[name]
    try:
        with db.atomic():  # a failed statement must not poison the connection (PostgreSQL)
            model.select(model._meta.primary_key).limit(1).execute()
        return True
    except Exception:  # the table is missing (or unreadable): report it as missing
        return False


def _queue_lines(db: Any) -> list[str]:
    from flywheel.api.ops import queue_health
    from flywheel.scheduling.schedules import list_periodics
    from flywheel_plugins.cli.output import age

    health = queue_health(db)
    schedules = list_periodics(db)
    return [(f"queue:     ready={health.ready} in-flight={health.inflight} scheduled={health.scheduled_ahead} "
             f"lag={age(health.oldest_ready_age)} discarded={health.discarded}"),
            f"schedules: {sum(s.active for s in schedules)} active / {len(schedules)} in the database"]


@click.command()
@click.pass_obj
def doctor(state: State) -> None:
    """Check the config, database, schema and plugins; print every effective setting and its source."""
    from flywheel.config import ConfigError
    from flywheel_plugins.cli.plugins import plugin_rows

    click.echo("flywheel doctor:")
    try:
        loaded = state.loaded()
    except ConfigError as exc:
        click.echo(f"config:    INVALID: {exc}")
        click.echo("status:    FAILED")
        raise SystemExit(1) from None
    click.echo(f"config:    {loaded.path or 'no config file (defaults, environment and flags)'}")
    ok, lines = check_database(state, loaded.config.database.url)
    for line in lines:
        click.echo(line)
    rows = plugin_rows(state.pm)
    active = [r["name"] for r in rows if r["status"] == "active"]
    blocked = [r["name"] for r in rows if r["status"] == "blocked"]
    click.echo(f"plugins:   {', '.join(active) or 'none'}" + (f" (blocked: {', '.join(blocked)})" if blocked else ""))
    metrics = _metrics_status(state)
    if metrics:
        click.echo(f"metrics:   {metrics}")
    click.echo("settings:")
    config = loaded.config
    settings = []
    for key, source in loaded.sources.items():
        if key == "schedules":
            continue
        section, _, name = key.partition(".")
        value = getattr(getattr(config, section), name)
        settings.append([key, show(_display_url(state, value) if key == "database.url" else value), f"({source})"])
    click.echo(textwrap.indent(table(["KEY", "VALUE", "SOURCE"], settings), "  "))
    click.echo(f"  schedules: {len(config.schedules)} in the config file")
    for schedule in config.schedules:
        rule = f"cron {schedule.cron}" if schedule.cron else f"every {show(schedule.every)}"
        click.echo(f"    - {schedule.slug:<20} {schedule.kind:<12} {rule}{'' if schedule.active else ' (inactive)'}")
    click.echo(f"status:    {'OK' if ok else 'FAILED'}")
    if not ok:
        raise SystemExit(1)


def _metrics_status(state: State) -> str | None:
    """The ``prometheus`` plugin's own status line (how to enable /metrics), when it is loaded."""
    plugin = state.pm.get_plugin("prometheus")
    status = getattr(plugin, "status", None)
    if plugin is None or not callable(status):
        return None
    _enabled, line = status()
    return str(line)


def _display_url(state: State, url: str) -> str:
    from flywheel.plugins import find_driver

    try:
        return find_driver(state.pm, url).display_url()
    except ValueError:
        return url


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(doctor)
