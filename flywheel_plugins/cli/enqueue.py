"""``flywheel enqueue KIND JSON``: insert one job and print its id alone."""

from __future__ import annotations

from datetime import datetime

import click

from flywheel.cli import State
from flywheel.plugins import hookimpl


def parse_at(value: str) -> datetime:
    """``--at``: RFC 3339 (``2026-05-01T09:00:00Z``), a local time without offset, or ``+DURATION`` from now."""
    from datetime import UTC

    text = value.strip()
    if text.startswith("+"):
        from flywheel.clock import now
        from flywheel.durations import parse_duration
        from flywheel.errors import ValidationError

        try:
            return now() + parse_duration(text[1:])
        except ValidationError as exc:
            raise click.BadParameter(f"{value!r} {exc.message}", param_hint="'--at'") from None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time (want RFC 3339 such as 2026-05-01T09:00:00Z, a local "
            "'2026-05-01 09:00', or +DURATION such as +5m)", param_hint="'--at'") from None
    return (moment.astimezone() if moment.tzinfo is None else moment).astimezone(UTC)


@click.command()
@click.argument("kind")
@click.argument("args_json", metavar="JSON", default="{}")
@click.option("--queue", default=None, help="Queue (default 'default').")
@click.option("--priority", type=int, default=None, help="Lower runs first; negatives allowed (default 100).")
@click.option("--unique", "--unique-key", "unique_key", default=None, metavar="KEY",
              help="Refuse a second job with this key, ever.")
@click.option("--unique-active", "unique_active_key", default=None, metavar="KEY",
              help="Refuse a second job with this key while one is still active.")
@click.option("--at", "at", default=None, metavar="TIME",
              help="Run no earlier than TIME: RFC 3339, a local time, or +DURATION (e.g. +5m).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None, help="Attempts before it is discarded.")
@click.option("--executor-class", default=None, metavar="CLASS", help="Only runners of this executor class take it.")
@click.pass_obj
def enqueue(state: State, kind: str, args_json: str, queue: str | None, priority: int | None,
            unique_key: str | None, unique_active_key: str | None, at: str | None, max_attempts: int | None,
            executor_class: str | None) -> None:
    """Enqueue a job of KIND with JSON args (default {}) and print its id.

    No worker for KIND is needed here: the daemon that runs it must know the kind.
    """
    import json

    from flywheel.api.client import Client
    from flywheel.errors import AlreadyEnqueued, ValidationError

    try:
        json.loads(args_json)
    except ValueError as exc:
        raise click.BadParameter(f"must be valid JSON: {exc}", param_hint="'JSON'") from None
    options = {"queue": queue, "priority": priority, "unique_key": unique_key,
               "unique_active_key": unique_active_key, "max_attempts": max_attempts,
               "executor_class": executor_class, "schedule_at": None if at is None else parse_at(at)}
    try:
        job_id = Client(state.db()).enqueue(kind, args_json, **{k: v for k, v in options.items() if v is not None})
    except AlreadyEnqueued as exc:
        from flywheel.cli import OperationalError

        existing = f" by job {exc.job_id}" if exc.job_id else ""
        raise OperationalError(f"already enqueued: unique key {exc.key!r} is taken{existing}") from exc
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint=f"'{exc.field}'") from None
    click.echo(job_id)


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(enqueue)
