"""``flywheel plugins [--json]``: what is loaded, from which distribution, implementing which hooks."""

from __future__ import annotations

from typing import Any

import click

from flywheel.cli import State
from flywheel.plugins import hookimpl
from flywheel_plugins.cli.output import echo_json, echo_table, json_option


def plugin_rows(pm: Any) -> list[dict[str, Any]]:
    """One row per plugin name: blocked ones included, in name order."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            rows.append({"name": name, "status": "blocked", "module": None, "distribution": None, "version": None,
                         "hooks": []})
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "status": "active", "module": getattr(plugin, "__name__", type(plugin).__name__),
                     "distribution": dist.project_name if dist else None, "version": dist.version if dist else None,
                     "hooks": hooks})
    return rows


@click.command()
@json_option
@click.pass_obj
def plugins(state: State, as_json: bool) -> None:
    """List the plugins: name, status (active or blocked), source distribution and hooks."""
    rows = plugin_rows(state.pm)
    if as_json:
        echo_json(rows)
        return
    echo_table(["NAME", "STATUS", "FROM", "HOOKS"],
               ([r["name"], r["status"],
                 f"{r['distribution']} {r['version']}" if r["distribution"] else
                 ("-" if r["status"] == "blocked" else "registered in code"),
                 ", ".join(h.removeprefix("flywheel_") for h in r["hooks"]) or "-"] for r in rows),
               empty="no plugins")


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(plugins)
