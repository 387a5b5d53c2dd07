"""``flywheel status [--json] [--watch]``: the queue at a glance; works without a daemon."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from flywheel.cli import State
from flywheel.plugins import hookimpl
from flywheel_plugins.cli.output import age, echo_json, local_time, short

STATE_ORDER = ("available", "running", "retryable", "scheduled", "succeeded", "cancelled", "discarded")
FAILURE_WINDOW_HOURS = 24
CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home


def snapshot(state: State) -> dict[str, Any]:
    """Everything ``status`` shows, as the views themselves."""
    from datetime import timedelta

    from flywheel import clock
    from flywheel.api.ops import overview, queue_health, recent_failures
    from flywheel.scheduling.schedules import list_periodics

    db = state.db()
    health = queue_health(db)
    since = clock.now() - timedelta(hours=FAILURE_WINDOW_HOURS)
    return {"database": db.url, "sampled_at": health.sampled_at, "health": health, "overview": overview(db),
            "schedules": list_periodics(db), "recent_failures": recent_failures(db, since=since, limit=20)}


def render(snap: dict[str, Any]) -> str:
    from flywheel_plugins.cli.schedule import cadence

    health, counts = snap["health"], snap["overview"].counts_by_state
    active = [s for s in snap["schedules"] if s.active]
    lines = ["flywheel status:",
             f"  database:     {snap['database']}",
             f"  sampled:      {local_time(snap['sampled_at'])}",
             f"  ready:        {health.ready}",
             f"  in-flight:    {health.inflight}",
             f"  scheduled:    {health.scheduled_ahead} (not yet due)",
             f"  lag:          {age(health.oldest_ready_age)} (oldest ready job)",
             f"  jobs:         {snap['overview'].total} total"]
    lines += [f"    {name:<11} {counts.get(name, 0)}" for name in STATE_ORDER]
    lines.append(f"  schedules:    {len(active)} active / {len(snap['schedules'])} total")
    lines += _aligned([[f"- {s.slug}", s.kind, cadence(s), f"next {local_time(s.next_run_at)}"] for s in active])
    failures = snap["recent_failures"]
    lines.append(f"  recent failures (last {FAILURE_WINDOW_HOURS}h): {len(failures)}")
    lines += _aligned([[f"- {f.kind}", f.job_id, f"{f.error_class or '-'}: {short(f.error_message, 79)}"]
                       for f in failures])
    return "\n".join(lines)


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as columns under the section, indented (nothing for no rows)."""
    from flywheel_plugins.cli.output import table

    return ["    " + line for line in table([""] * len(rows[0]), rows).splitlines()[1:]] if rows else []


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--watch", is_flag=True, help="Redraw in place every --interval until Ctrl-C.")
@click.option("--interval", default="2s", show_default=True, metavar="DURATION", help="How often --watch redraws.")
@click.pass_obj
def status(state: State, as_json: bool, watch: bool, interval: str) -> None:
    """Ready, in-flight and scheduled jobs, lag, counts per state, schedules and the last day's failures."""
    from flywheel.durations import parse_duration
    from flywheel.errors import ValidationError

    try:
        pause = parse_duration(interval, field="interval").total_seconds()
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint="'--interval'") from None
    if pause <= 0:
        raise click.BadParameter("must be positive", param_hint="'--interval'")
    try:
        while True:
            snap = snapshot(state)
            if as_json:
                echo_json(snap)
            elif watch and sys.stdout.isatty():
                click.echo(CLEAR + render(snap), color=True)  # redraw in place
            else:
                click.echo(render(snap) + ("\n" if watch else ""))
            if not watch:
                return
            time.sleep(pause)
    except KeyboardInterrupt:
        if not watch:
            raise  # Ctrl-C is how --watch ends; anywhere else it is an interruption


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(status)
