"""``flywheel version``: the installed version (``--json`` adds Python and the platform)."""

from __future__ import annotations

import click

from flywheel.plugins import hookimpl
from flywheel_plugins.cli.output import echo_json, json_option


@click.command()
@json_option
def version(as_json: bool) -> None:
    """Print flywheel's version."""
    import platform

    from flywheel import __version__

    if as_json:
        echo_json({"version": __version__, "distribution": "flywheel-jobs", "python": platform.python_version(),
                   "platform": f"{platform.system().lower()}/{platform.machine()}"})
    else:
        click.echo(__version__)


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(version)
