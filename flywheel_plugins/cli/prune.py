"""``flywheel prune --older-than 14d``: delete finished jobs and their runs once."""

from __future__ import annotations

import click

from flywheel.cli import State
from flywheel.plugins import hookimpl
from flywheel_plugins.cli.output import local_time


@click.command()
@click.option("--older-than", default="14d", show_default=True, metavar="DURATION",
              help="Delete jobs finalised longer ago than this (250ms, 30s, 5m, 24h, 14d, 2w).")
@click.pass_obj
def prune(state: State, older_than: str) -> None:
    """Delete succeeded, cancelled and discarded jobs (with their runs) finalised before a cutoff."""
    from flywheel import clock
    from flywheel.api.ops import delete_finished_jobs
    from flywheel.durations import parse_duration
    from flywheel.errors import ValidationError

    try:
        age = parse_duration(older_than, field="older-than")
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint="'--older-than'") from None
    cutoff = clock.now() - age
    deleted = delete_finished_jobs(state.db(), cutoff)
    click.echo(f"pruned {deleted} finished job(s) finalized before {local_time(cutoff)}")


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(prune)
