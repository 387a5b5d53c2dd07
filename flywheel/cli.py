"""The ``flywheel`` command: a click group built from the plugin manager.

Commands are plugins (``flywheel_commands(cli)``; the built-in ones are in
``flywheel_plugins/cli/``). Exit status: 0 ok, 1 operational failure, 2 usage error
(a bad flag, argument or config value); failures are one line on stderr, with a traceback
only under ``-v``. Start-up stays cheap: this module imports click and pluggy only, and
every command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click
import pluggy

from flywheel.plugins import DISABLE_ENV, disabled_from_env, make_plugin_manager
from flywheel.redact import scrub_url_secrets
from flywheel.storage import DEFAULT_URL

if TYPE_CHECKING:
    from flywheel.config import Config, LoadedConfig
    from flywheel.storage.db import Database

CONFIG_ENV = "FLYWHEEL_CONFIG"


class OperationalError(click.ClickException):
    """A failure that is not the caller's mistake (exit 1): the database, a missing job, …"""

    exit_code = 1


class State:
    """What every command receives through ``click.pass_obj``: the manager, the settings, the database."""

    def __init__(self, pm: pluggy.PluginManager, url: str | None, config_path: str | None, verbose: int) -> None:
        self.pm = pm
        self.url_flag = url  # --db as given on the command line (None: env, file or default decide)
        self.config_path = config_path
        self.verbose = verbose
        self._loaded: LoadedConfig | None = None
        self._db: Database | None = None

    def loaded(self, overrides: dict[str, Any] | None = None,
               override_sources: dict[str, str] | None = None) -> LoadedConfig:
        """The settings and their sources; ``overrides`` are a command's own flags (they win over everything)."""
        from flywheel.config import read_config

        if self._loaded is None or overrides:
            flags: dict[str, Any] = {"database.url": self.url_flag, **(overrides or {})}
            sources = {"database.url": "--db", **(override_sources or {})}
            self._loaded = read_config(self.config_path, overrides=flags, override_sources=sources, pm=self.pm)
        return self._loaded

    def config(self) -> Config:
        return self.loaded().config

    @property
    def url(self) -> str:
        """The database URL in effect (flag, env, file or default)."""
        return self.config().database.url

    def db(self) -> Database:
        """The database, opened and reached on first use; an unreachable one is one clear error."""
        if self._db is None:
            self._db = open_database(self.url, self.pm)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def open_database(url: str, pm: pluggy.PluginManager) -> Database:
    """``connect`` and reach the database: ``cannot reach database at <url without password>: <why>``."""
    from flywheel.errors import SchemaMissing, wrap_db_error
    from flywheel.storage.db import connect

    db = connect(url, pm=pm)
    try:
        db.pw.connect(reuse_if_open=True)
    except Exception as exc:  # whatever the driver raises, the message is the same
        if isinstance(wrap_db_error(exc), SchemaMissing):
            return db  # reachable but not migrated: `migrate` creates it, other commands say to run it
        raise OperationalError(f"cannot reach database at {db.url}: {scrubbed_reason(db, exc)}") from exc
    return db


def scrubbed_reason(db: Database, exc: BaseException) -> str:
    """The first line of an error, with the database's password hidden."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    scrub = getattr(db.driver, "scrub", None)
    return scrub(text) if callable(scrub) else text


def build_cli(pm: pluggy.PluginManager) -> click.Group:
    """A fresh command group with every plugin's commands attached."""

    @click.group(cls=FlywheelGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                      "max_content_width": 100})
    @click.option("--db", "url", envvar="FLYWHEEL_DATABASE_URL", default=None, show_envvar=True, metavar="URL",
                  help=f"Database URL (default: [database] url in the config file, else {DEFAULT_URL}).")
    @click.option("--config", "config_path", envvar=CONFIG_ENV, show_envvar=True, default=None, metavar="PATH",
                  help="Config file (default ./flywheel.toml, then [tool.flywheel] in ./pyproject.toml, then "
                       "~/.config/flywheel/flywheel.toml).")
    @click.option("-v", "--verbose", count=True, help="More logging (-vv: debug); tracebacks on errors.")
    @click.option("--disable-plugin", multiple=True, metavar="NAME",
                  help=f"Block a plugin by name for this run (repeatable; also {DISABLE_ENV}=a,b).")
    @click.version_option(package_name="flywheel-jobs", prog_name="flywheel", message="%(prog)s %(version)s")
    @click.pass_context
    def cli(ctx: click.Context, url: str | None, config_path: str | None, verbose: int,
            disable_plugin: tuple[str, ...]) -> None:
        """flywheel: durable background jobs on PostgreSQL or SQLite."""
        from click.core import ParameterSource

        if verbose:
            from flywheel.logsetup import configure_logging

            configure_logging("warning", verbose=verbose)
        # FLYWHEEL_DATABASE_URL is read by the config loader itself, so doctor can name it.
        explicit = ctx.get_parameter_source("url") == ParameterSource.COMMANDLINE
        state = State(pm, url if explicit else None, config_path, verbose)
        ctx.obj = state
        ctx.call_on_close(state.close)

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


def _verbose(argv: list[str]) -> bool:
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)


class FlywheelGroup(click.Group):
    """The root group: run as a program, every failure is one line on stderr and an exit status.

    The same handling applies under click's ``CliRunner``, so tests see what users see.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except BaseException as exc:  # every failure becomes one line and an exit status
            fail(exc, verbose=_verbose(argv), url=_preparse_url(argv))
        sys.exit(0)


def fail(exc: BaseException, *, verbose: bool, url: str | None = None) -> None:
    """Print one line for ``exc`` on stderr (a traceback first under ``-v``) and exit with its status.

    Both pass through :func:`~flywheel.redact.scrub_url_secrets`: a password given in ``url``
    (``--db`` or ``FLYWHEEL_DATABASE_URL``) never reaches the terminal, even from a malformed URL.
    """
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
        click.echo("flywheel: interrupted", err=True)
        sys.exit(130)
    code, message = describe_error(exc)
    if verbose:
        click.echo(scrub_url_secrets("".join(traceback.format_exception(exc)).rstrip(), url), err=True)
    click.echo(f"flywheel: error: {scrub_url_secrets(message, url)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None, prog_name: str = "flywheel", *,
         pm: pluggy.PluginManager | None = None) -> None:
    """Entry point of the console script and ``python -m flywheel``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        manager = pm if pm is not None else make_plugin_manager(disabled=_preparse_disabled(args))
        cli = build_cli(manager)
    except BaseException as exc:  # a plugin that fails to load is one line too
        fail(exc, verbose=_verbose(args), url=_preparse_url(args))
    cli.main(args=args, prog_name=prog_name)


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message for a failure."""
    from flywheel.config import ConfigError
    from flywheel.errors import DatabaseError, SchemaMissing

    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return 2, _one_line(exc.format_message()) + hint
    if isinstance(exc, click.ClickException):
        return exc.exit_code, _one_line(exc.format_message())
    if isinstance(exc, ConfigError):
        return 2, f"config: {_one_line(str(exc))}"
    if isinstance(exc, SchemaMissing) or (isinstance(exc, DatabaseError) and _missing_schema(str(exc))):
        return 1, "the database has no flywheel tables yet; run `flywheel migrate` first"
    if isinstance(exc, (ValueError, OSError, LookupError)) or type(exc).__module__.startswith("flywheel"):
        return 1, _one_line(str(exc)) or type(exc).__name__
    return 1, f"{type(exc).__name__}: {_one_line(str(exc))} (re-run with -v for details)"


def _missing_schema(text: str) -> bool:
    lowered = text.lower()
    return "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line.removeprefix("flywheel: ")
