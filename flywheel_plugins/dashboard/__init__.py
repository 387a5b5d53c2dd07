"""The web dashboard: ``flywheel dashboard`` and, with ``[dashboard] bind`` in the config, a ``serve`` service.

Pages: overview, queues, jobs, job detail, schedules, recent failures; actions: retry,
cancel, enable/disable a schedule. Standard library only; see docs/dashboard.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import click

from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel_plugins.dashboard.server import Dashboard

__all__ = ["Dashboard", "flywheel_commands", "flywheel_services"]

#: the server module (and the database layer under it) loads on first use, so that every
#: other ``flywheel`` command starts without it
DEFAULT_BIND = "127.0.0.1:8787"


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from flywheel_plugins.dashboard.server import Dashboard

        return Dashboard
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def _database(ctx: click.Context, url: str | None) -> Any:
    """The command's own ``--db`` when given, else the database the root group opened (``ctx.obj``)."""
    from flywheel.storage.db import connect

    if url:
        return connect(url, pm=getattr(ctx.obj, "pm", None))
    obj = ctx.obj
    opener = getattr(obj, "db", None)
    if callable(opener):
        return opener()
    if opener is not None:
        return opener
    from flywheel.storage import DEFAULT_URL

    return connect(DEFAULT_URL)


@click.command("dashboard")
@click.option("--bind", default=DEFAULT_BIND, show_default=True, metavar="HOST:PORT",
              help="Address to listen on (port 0 picks a free one).")
@click.option("--read-only", is_flag=True, help="Show pages only; refuse every action.")
@click.option("--db", "url", default=None, metavar="URL",
              help="Database URL (default: the global --db).")
@click.pass_context
def dashboard(ctx: click.Context, bind: str, read_only: bool, url: str | None) -> None:
    """Serve the web dashboard until interrupted.

    Actions (retry, cancel, enable/disable a schedule) are open on a loopback address.
    Bound beyond loopback the dashboard is read-only unless FLYWHEEL_DASHBOARD_TOKEN is
    set; then actions need that token.
    """
    from flywheel_plugins.dashboard.server import Dashboard

    try:
        app = Dashboard(_database(ctx, url), bind, read_only=read_only)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--bind") from exc
    app.start()
    click.echo(f"flywheel dashboard on {app.url} ({app.guard.mode}); Ctrl-C stops it")
    try:
        app.wait()
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(dashboard)


@hookimpl
def flywheel_services(node: Any) -> Dashboard | None:
    """The dashboard as a node service when the node's config sets ``[dashboard] bind``."""
    settings = getattr(getattr(node, "config", None), "dashboard", None)
    bind = getattr(settings, "bind", None)
    if not bind:
        return None
    from flywheel_plugins.dashboard.server import Dashboard

    return Dashboard(node.db, str(bind), read_only=bool(getattr(settings, "read_only", False)))
