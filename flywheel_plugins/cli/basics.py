"""``version``, ``migrate``, ``enqueue`` and ``plugins``."""

from __future__ import annotations

import json
from importlib import metadata

import click

from flywheel.cli import State


@click.command()
def version() -> None:
    """Print flywheel's version."""
    click.echo(metadata.version("flywheel"))


@click.command()
@click.pass_obj
def migrate(state: State) -> None:
    """Create flywheel's tables and indexes (idempotent)."""
    from flywheel.db import migrate as do_migrate

    db = state.db()
    do_migrate(db)
    click.echo(f"migrated {db.url}")


@click.command()
@click.argument("kind")
@click.argument("args_json", default="{}")
@click.option("--queue", default=None, help="Queue (default 'default').")
@click.option("--priority", type=int, default=None, help="Lower runs first (default 100).")
@click.option("--unique-key", default=None, help="Refuse a second job with this key, ever.")
@click.option("--max-attempts", type=int, default=None, help="Attempts before the job is discarded.")
@click.pass_obj
def enqueue(state: State, kind: str, args_json: str, queue: str | None, priority: int | None,
            unique_key: str | None, max_attempts: int | None) -> None:
    """Enqueue a job of KIND with a JSON payload; prints the new job's id."""
    from flywheel.client import Client

    job_id = Client(state.db()).enqueue(kind, args_json, queue=queue, priority=priority, unique_key=unique_key,
                                        max_attempts=max_attempts)
    click.echo(job_id)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(state: State, as_json: bool) -> None:
    """List the loaded plugins, where they come from and the hooks they implement."""
    dists = {id(plugin): dist for plugin, dist in state.pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in sorted(state.pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            rows.append({"name": name, "status": "blocked", "hooks": [], "distribution": None})
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(caller.name for caller in state.pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "status": "active", "hooks": hooks,
                     "distribution": f"{dist.project_name} {dist.version}" if dist else "registered in code",
                     "module": getattr(plugin, "__name__", type(plugin).__name__)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<12} {row['status']:<8} {row.get('distribution') or '':<20} {', '.join(row['hooks'])}")


COMMANDS = [version, migrate, enqueue, plugins]
