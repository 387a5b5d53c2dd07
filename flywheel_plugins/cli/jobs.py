"""``flywheel jobs ls|inspect|retry|cancel``: look at jobs and act on one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import click

from flywheel.cli import OperationalError, State
from flywheel.plugins import hookimpl
from flywheel_plugins.cli.output import echo_json, echo_table, json_option, local_time, short

T = TypeVar("T")
STATES = ("available", "running", "retryable", "scheduled", "succeeded", "cancelled", "discarded")


@click.group()
def jobs() -> None:
    """List, inspect, retry and cancel jobs."""


@jobs.command("ls")
@click.option("--state", "state_name", type=click.Choice(STATES), default=None, help="Only jobs in this state.")
@click.option("--kind", default=None, help="Only jobs of this kind.")
@click.option("--queue", default=None, help="Only jobs in this queue.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@json_option
@click.pass_obj
def ls(state: State, state_name: str | None, kind: str | None, queue: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    from flywheel.api.ops import list_jobs

    views = list_jobs(state.db(), state=state_name, kind=kind, queue=queue, limit=limit)
    if as_json:
        echo_json(views)
        return
    echo_table(["ID", "KIND", "QUEUE", "STATE", "ATTEMPT", "ENQUEUED"],
               ([v.id, v.kind, v.queue, v.state, f"{v.attempt}/{v.max_attempts}", local_time(v.enqueued_at)]
                for v in views), empty="no jobs")


@jobs.command()
@click.argument("job_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many runs.")
@json_option
@click.pass_obj
def inspect(state: State, job_id: str, limit: int, as_json: bool) -> None:
    """Show a job and its runs (newest first) with their errors and output."""
    from flywheel.api.ops import find_job, list_runs

    db = state.db()
    job = _find(lambda: find_job(db, job_id))
    runs = list_runs(db, job_id, limit=limit)
    if as_json:
        echo_json({"job": job, "runs": runs})
        return
    fields = [("kind", job.kind), ("queue", job.queue), ("state", job.state),
              ("attempt", f"{job.attempt}/{job.max_attempts}"), ("priority", job.priority),
              ("enqueued", local_time(job.enqueued_at)), ("scheduled", local_time(job.scheduled_at)),
              ("finalized", local_time(job.finalized_at)), ("args", json.dumps(job.args))]
    fields += [(label, value) for label, value in (
        ("unique key", job.unique_key), ("unique active", job.unique_active_key), ("parent", job.parent_job_id),
        ("executor", job.executor_class), ("tags", ", ".join(job.tags)), ("request id", job.request_id)) if value]
    fields.append(("runs", len(runs)))
    click.echo("\n".join([f"Job {job.id}"] + [f"  {label + ':':<15}{value}" for label, value in fields]))
    if not runs:
        return
    from flywheel_plugins.cli.output import table

    click.echo(table(["RUN ID", "ATTEMPT", "OUTCOME", "EXECUTOR", "STARTED", "DURATION"],
                     [[r.id, r.attempt, r.outcome, r.executor_class or "-", local_time(r.started_at),
                       "-" if r.duration_ms is None else f"{r.duration_ms}ms"] for r in runs]))
    for run in runs:
        if run.error or run.output is not None:
            click.echo(f"run {run.id} ({run.outcome}):")
            if run.error:
                click.echo(f"  error:  {run.error_class or '-'}: {short(run.error, 200)}")
            if run.output is not None:
                click.echo(f"  output: {json.dumps(run.output)}")


@jobs.command()
@click.argument("job_id", metavar="ID")
@click.pass_obj
def retry(state: State, job_id: str) -> None:
    """Make a job run again now (any state; it gets at least one more attempt)."""
    from flywheel.api.ops import retry_job

    db = state.db()
    view = _find(lambda: retry_job(db, job_id))
    click.echo(f"retried {view.id}")


@jobs.command()
@click.argument("job_id", metavar="ID")
@click.pass_obj
def cancel(state: State, job_id: str) -> None:
    """Cancel a job that has not finished (a running attempt is fenced, not interrupted)."""
    from flywheel.api.ops import cancel_job
    from flywheel.errors import JobTerminal

    db = state.db()
    try:
        view = _find(lambda: cancel_job(db, job_id))
    except JobTerminal as exc:
        raise OperationalError(f"job {job_id} has already finished ({exc.state}); nothing to cancel") from exc
    click.echo(f"cancelled {view.id}")


def _find(operation: Callable[[], T]) -> T:
    from flywheel.errors import JobNotFound

    try:
        return operation()
    except JobNotFound as exc:
        raise OperationalError(f"job not found: {exc.job_id}") from exc


@hookimpl
def flywheel_commands(cli: click.Group) -> None:
    cli.add_command(jobs)
