"""The ``flywheel`` command: a click group built from the plugin manager.

Commands are plugins (``flywheel_commands(cli)``). Exit status: 0 ok, 1 operational
failure, 2 usage error; failures are one line on stderr (a traceback only with ``-v``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
import pluggy

from flywheel.db import DEFAULT_URL
from flywheel.errors import FlywheelError
from flywheel.plugins import DISABLE_ENV, disabled_from_env, make_plugin_manager
from flywheel.redact import scrub_url_secrets


class State:
    """What every command receives through ``click.pass_obj``."""

    def __init__(self, pm: pluggy.PluginManager, url: str, config_path: str | None, verbose: int) -> None:
        self.pm = pm
        self.url = url
        self.config_path = config_path
        self.verbose = verbose
        self._db: Any = None

    def db(self) -> Any:
        """The database named by ``--db``, opened on first use."""
        if self._db is None:
            from flywheel.db import connect

            self._db = connect(self.url, pm=self.pm)
        return self._db


def build_cli(pm: pluggy.PluginManager) -> click.Group:
    """A fresh command group with every plugin's commands attached."""

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--db", "url", envvar="FLYWHEEL_DATABASE_URL", default=DEFAULT_URL, show_default=True,
                  show_envvar=True, help="Database URL.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="Config file (default ./flywheel.toml).")
    @click.option("-v", "--verbose", count=True, help="More logging; tracebacks on errors.")
    @click.option("--disable-plugin", multiple=True, metavar="NAME",
                  help=f"Block a plugin by name (also {DISABLE_ENV}).")
    @click.pass_context
    def cli(ctx: click.Context, url: str, config_path: str | None, verbose: int, disable_plugin: tuple[str, ...]) -> None:
        """flywheel: durable background jobs on PostgreSQL or SQLite."""
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        ctx.obj = State(pm, url, config_path, verbose)

    pm.hook.flywheel_commands(cli=cli)
    return cli


def _preparse_disabled(argv: list[str]) -> list[str]:
    names = list(disabled_from_env())
    for index, arg in enumerate(argv):
        if arg == "--disable-plugin" and index + 1 < len(argv):
            names.append(argv[index + 1])
        elif arg.startswith("--disable-plugin="):
            names.append(arg.split("=", 1)[1])
    return names


def _preparse_url(argv: list[str]) -> str | None:
    """The ``--db`` URL of ``argv`` (or its environment variable), to scrub its password from errors."""
    url = os.environ.get("FLYWHEEL_DATABASE_URL")
    for index, arg in enumerate(argv):
        if arg == "--db" and index + 1 < len(argv):
            url = argv[index + 1]
        elif arg.startswith("--db="):
            url = arg.split("=", 1)[1]
    return url


def main(argv: list[str] | None = None, prog_name: str = "flywheel") -> None:
    """Entry point of the console script and ``python -m flywheel``."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)
    try:
        pm = make_plugin_manager(disabled=_preparse_disabled(args))
        cli = build_cli(pm)
        cli.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("flywheel: aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        exc.show()
        sys.exit(2)
    except (click.ClickException, FlywheelError, ValueError, OSError) as exc:
        if verbose:
            raise
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"flywheel: error: {scrub_url_secrets(message, _preparse_url(args))}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001
        if verbose or os.environ.get("FLYWHEEL_TRACEBACK"):
            raise
        message = scrub_url_secrets(str(exc), _preparse_url(args))
        click.echo(f"flywheel: error: {type(exc).__name__}: {message} (re-run with -v for details)", err=True)
        sys.exit(1)
