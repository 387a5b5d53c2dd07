"""``flywheel schedule ls|add|rm|enable|disable``: periodic schedules in the database.

Schedules declared in ``flywheel.toml`` are written by ``flywheel serve`` at start-up, which
also pauses active schedules that the file no longer lists; ``schedule add`` is for
schedules managed by hand (keep them in the file too if a daemon runs with one).
"""

from __future__ import annotations

from typing import Any

import click

from flywheel.cli import OperationalError, State
from flywheel.plugins import hookimpl
from flywheel_plugins.cli.output import echo_json, echo_table, json_option, local_time


@click.group()
def schedule() -> None:
    """List, add, remove, pause and resume periodic schedules."""


def cadence(view: Any) -> str:
    """``cron 0 2 * * * (Europe/Berlin)`` or ``every 5m``."""
    from datetime import timedelta

    from flywheel.durations import format_duration

    if view.interval_seconds is not None:
        return f"every {format_duration(timedelta(seconds=view.interval_seconds))}"
    zone = "" if view.timezone == "UTC" else f" ({view.timezone})"
    return f"cron {view.cron}{zone}"


@schedule.command("ls")
@json_option
@click.pass_obj
def ls(state: State, as_json: bool) -> None:
    """List every schedule with its cadence and next run."""
    from flywheel.scheduling.schedules import list_periodics

    views = list_periodics(state.db())
    if as_json:
        echo_json(views)
        return
    echo_table(["SLUG", "KIND", "QUEUE", "SCHEDULE", "ACTIVE", "NEXT RUN", "LAST ENQUEUED"],
               ([v.slug, v.kind, v.queue, cadence(v), "yes" if v.active else "no",
                 local_time(v.next_run_at) if v.active else "-", local_time(v.last_enqueued_at)] for v in views),
               empty="no schedules")


@schedule.command()
@click.argument("slug")
@click.argument("kind")
@click.option("--cron", default=None, metavar="EXPR", help="A 5-field cron expression (or @daily, @hourly, …).")
@click.option("--every", default=None, metavar="DURATION", help="A fixed interval of at least 1s (30s, 5m, 24h, 2w).")
@click.option("--args", "args_json", default="{}", metavar="JSON", help="The args of every job it enqueues.")
@click.option("--queue", default="periodic", show_default=True, help="The queue its jobs go to.")
@click.option("--tz", "timezone", default="UTC", show_default=True, metavar="ZONE",
              help="The IANA zone the cron expression is read in.")
@click.option("--inactive", is_flag=True, help="Create it paused.")
@click.pass_obj
def add(state: State, slug: str, kind: str, cron: str | None, every: str | None, args_json: str, queue: str,
        timezone: str, inactive: bool) -> None:
    """Create (or update) schedule SLUG enqueueing jobs of KIND; exactly one of --cron and --every."""
    import json
    from datetime import timedelta

    from flywheel.durations import parse_duration
    from flywheel.errors import ValidationError
    from flywheel.scheduling.schedules import PeriodicSpec, upsert_periodic, validate

    if (cron is None) == (every is None):
        raise click.UsageError("give exactly one of --cron and --every")
    try:
        args = json.loads(args_json)
    except ValueError as exc:
        raise click.BadParameter(f"must be valid JSON: {exc}", param_hint="'--args'") from None
    try:
        interval = None if every is None else parse_duration(every, field="every")
        if interval is not None and interval < timedelta(seconds=1):
            raise ValidationError("every", f"must be at least 1s, not {every!r}")
        spec = PeriodicSpec(slug=slug, kind=kind, queue=queue, args=args, cron=cron, every=interval,
                            active=not inactive, timezone=timezone)
        validate(spec)
    except ValidationError as exc:
        hints = {"every": "'--every'", "cron": "'--cron'", "timezone": "'--tz'", "args": "'--args'"}
        raise click.BadParameter(exc.message, param_hint=hints.get(exc.field, exc.field.upper())) from None
    view = upsert_periodic(state.db(), spec)
    click.echo(f"scheduled {view.slug} ({view.kind}, {cadence(view)}), next run {local_time(view.next_run_at)}")


@schedule.command()
@click.argument("slug")
@click.pass_obj
def rm(state: State, slug: str) -> None:
    """Delete a schedule (jobs it already enqueued stay)."""
    from flywheel.scheduling.schedules import delete_periodic

    _named(slug, lambda: delete_periodic(state.db(), slug))
    click.echo(f"removed {slug}")


@schedule.command()
@click.argument("slug")
@click.pass_obj
def enable(state: State, slug: str) -> None:
    """Resume a schedule (fires missed while paused are skipped)."""
    from flywheel.scheduling.schedules import set_periodic_active

    view = _named(slug, lambda: set_periodic_active(state.db(), slug, True))
    click.echo(f"enabled {slug}, next run {local_time(view.next_run_at)}")


@schedule.command()
@click.argument("slug")
@click.pass_obj
def disable(state: State, slug: str) -> None:
    """Pause a schedule."""
    from flywheel.scheduling.schedules import set_periodic_active

    _named(slug, lambda: set_periodic_active(state.db(), slug, False))
    click.echo(f"disabled {slug}")


def _named(slug: str, operation: Any) -> Any:
    from flywheel.errors import PeriodicNotFound

    try:
        return operation()
    except PeriodicNotFound as exc:
        raise OperationalError(f"no schedule named {slug!r} (see 'flywheel schedule ls')") from exc


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(schedule)
