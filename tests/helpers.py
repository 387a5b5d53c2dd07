"""Small readers used by the tests: raw rows straight from the tables."""

from __future__ import annotations

from typing import Any

import flywheel


def job_row(db: flywheel.Database, job_id: str) -> dict[str, Any]:
    row = db.Job.select().where(db.Job.id == job_id).dicts().get()
    return dict(row)


def run_rows(db: flywheel.Database, job_id: str) -> list[dict[str, Any]]:
    Run = db.JobRun
    return [dict(r) for r in Run.select().where(Run.job_id == job_id).order_by(Run.attempt).dicts()]


def states(db: flywheel.Database) -> dict[str, int]:
    return flywheel.overview(db).counts_by_state


def in_thread(fn: Any, *args: Any) -> Any:
    """Start ``fn`` in a thread that sees this thread's context (its clock, its request id)."""
    import contextvars
    import threading

    thread = threading.Thread(target=contextvars.copy_context().run, args=(fn, *args), daemon=True)
    thread.start()
    return thread


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` every 20 ms until it holds; return its (truthy) value.

    Fails naming ``what`` after ``timeout`` s: a deadline, never a guess at how long things take.
    """
    import time

    end = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return value


def run_job(db: flywheel.Database, client: flywheel.Client, make_runner: Any, args: Any,
            **opts: Any) -> tuple[flywheel.JobView, list[flywheel.JobRunView]]:
    """Insert ``args``, run until idle, return the job and its runs oldest first."""
    job_id = client.insert(args, **opts)
    make_runner().run_until_idle(timeout=60)
    return flywheel.find_job(db, job_id), list(reversed(flywheel.list_runs(db, job_id)))


def run_output(run: flywheel.JobRunView) -> Any:
    """A run's stored output, decoded."""
    import json

    value = run.output
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def run_in_thread(node: flywheel.Node) -> tuple[Any, list[BaseException]]:
    """``node.run()`` on a thread that sees this context; what it raised lands in the list."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            node.run()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    return in_thread(target), errors
