"""``flywheel migrate``: create the schema (idempotent)."""

from __future__ import annotations

import click

from flywheel.cli import State
from flywheel.plugins import hookimpl


@click.command()
@click.pass_obj
def migrate(state: State) -> None:
    """Create flywheel's tables and indexes that do not exist yet (idempotent)."""
    from flywheel.storage.db import migrate as create_schema

    db = state.db()
    create_schema(db)
    click.echo(f"schema up to date ({db.url})")


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(migrate)
