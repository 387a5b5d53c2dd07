"""The built-in CLI commands, attached through ``flywheel_commands``."""

from __future__ import annotations

import click

from flywheel.plugins import hookimpl
from flywheel_plugins.cli import basics


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    for command in basics.COMMANDS:
        cli.add_command(command)
