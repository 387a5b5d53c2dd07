"""The built-in ``flywheel`` commands: one module per command group, each a plugin of its own shape.

Every module here has a ``flywheel_commands(cli)`` implementation, exactly as a third-party
plugin would; this package (entry point ``cli``) forwards the hook to each of them. The
modules import only click at load time, so ``flywheel --help`` stays fast.
"""

from __future__ import annotations

import click

from flywheel.plugins import hookimpl
from flywheel_plugins.cli import doctor, enqueue, jobs, migrate, plugins, prune, schedule, serve, status, version

MODULES = (serve, migrate, enqueue, jobs, schedule, status, prune, doctor, plugins, version)


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    for module in MODULES:
        module.flywheel_commands(cli)
