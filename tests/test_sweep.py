"""Crash recovery with real processes: a frozen or killed runner's job is swept, re-run, and fenced."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import flywheel
from flywheel import Scheduler
from tests.helpers import job_row, run_rows, wait_for

REPO = Path(__file__).resolve().parents[1]
LEASE_S = 1.0

RUNNER = """
    import os, sys, time
    import flywheel
    url, marks = sys.argv[1], sys.argv[2]
    db = flywheel.connect(url)
    registry = flywheel.Registry()

    def mark(name):
        with open(os.path.join(marks, name), "w") as f:
            f.write(str(os.getpid()))

    @registry.worker("hold")
    def hold(job):
        mark(f"started-{job.attempt}")
        time.sleep(job.args["sleep"])
        mark(f"finished-{job.attempt}")
        return flywheel.Result(output={"pid": os.getpid(), "attempt": job.attempt})

    @registry.worker("crash")
    def crash(job):
        mark(f"crashing-{job.attempt}")
        os._exit(3)

    runner = flywheel.Runner(db, registry, lease=float(sys.argv[3]), poll_interval=0.05)
    print(runner.run_until_idle(timeout=60), flush=True)
"""


def spawn_runner(url: str, marks: Path, lease: float = LEASE_S) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(RUNNER), url, str(marks), str(lease)],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def holds_write_locks(db: flywheel.Database) -> bool:
    """Whether another process is inside a write transaction on this database right now."""
    if db.dialect == "sqlite":
        probe = sqlite3.connect(db.driver.path, timeout=0)  # type: ignore[attr-defined]
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    cursor = db.pw.execute_sql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname IN ('jobs', 'job_runs') AND c.relnamespace = current_schema()::regnamespace "
        "AND l.pid <> pg_backend_pid()")
    return bool(cursor.fetchone()[0])


def freeze(proc: subprocess.Popen[str], db: flywheel.Database) -> None:
    """SIGSTOP ``proc`` at a moment it holds no write lock (a frozen writer would freeze the test too)."""
    for _ in range(200):
        proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "T", 5, "SIGSTOP")
        if not holds_write_locks(db):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("could not freeze the runner outside a transaction")


def second_runner(db: flywheel.Database) -> flywheel.Runner:
    registry = flywheel.Registry()

    @registry.worker("hold")
    def hold(job: flywheel.Job[Any]) -> flywheel.Result:
        return flywheel.Result(output={"pid": os.getpid(), "attempt": job.attempt})

    return flywheel.Runner(db, registry, lease=LEASE_S, poll_interval=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigstop", "sigkill"])
def test_a_lost_runner_is_swept_rerun_elsewhere_and_its_late_outcome_fenced(
    db_url: str, db: flywheel.Database, tmp_path: Path, how: str
) -> None:
    job_id = flywheel.Client(db).enqueue("hold", {"sleep": 3.0}, max_attempts=5)
    child = spawn_runner(db_url, tmp_path)
    try:
        wait_for(lambda: (tmp_path / "started-1").exists(), what="the first attempt to start")
        if how == "sigstop":
            freeze(child, db)
        else:
            child.kill()
            child.wait(10)
        lost_at = time.monotonic()

        scheduler = Scheduler(db)
        wait_for(lambda: scheduler.sweep() == 1, timeout=LEASE_S + 5, what="the sweep to reclaim the job")
        assert time.monotonic() - lost_at >= LEASE_S * 0.5  # it waited for the lease, not less
        assert (job_row(db, job_id)["state"], job_row(db, job_id)["leased_until"]) == ("available", None)
        assert [(r["attempt"], r["outcome"]) for r in run_rows(db, job_id)] == [(1, "crashed")]

        assert second_runner(db).run_until_idle(timeout=20) == 1
        assert job_row(db, job_id)["state"] == "succeeded"

        if how == "sigstop":
            child.send_signal(signal.SIGCONT)  # the frozen attempt wakes up, finishes, is fenced
            out, err = child.communicate(timeout=30)
            assert child.returncode == 0, err
            assert (tmp_path / "finished-1").exists()
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
        child.communicate()

    job = job_row(db, job_id)
    assert (job["state"], job["attempt"]) == ("succeeded", 2)
    runs = run_rows(db, job_id)
    assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "crashed"), (2, "success")]
    assert runs[1]["output"] == {"pid": os.getpid(), "attempt": 2}
    assert sum(r["outcome"] == "success" for r in runs) == 1


@pytest.mark.slow
def test_a_job_that_kills_its_process_every_time_ends_discarded(db_url: str, db: flywheel.Database,
                                                                tmp_path: Path) -> None:
    job_id = flywheel.Client(db).enqueue("crash", {}, max_attempts=3)
    scheduler = Scheduler(db)
    for attempt in (1, 2, 3):
        child = spawn_runner(db_url, tmp_path, lease=30)
        out, err = child.communicate(timeout=30)
        assert child.returncode == 3, err
        assert (tmp_path / f"crashing-{attempt}").exists()
        assert job_row(db, job_id)["state"] == "running"
        # The lease is 30 s; look at the sweep from past its expiry instead of waiting.
        with flywheel.use_clock(flywheel.FixedClock(datetime.now(UTC) + timedelta(seconds=31))):
            assert scheduler.sweep() == 1
        assert job_row(db, job_id)["state"] == ("available" if attempt < 3 else "discarded")

    job = job_row(db, job_id)
    assert (job["attempt"], job["leased_until"], job["lease_token"]) == (3, None, None)
    assert job["finalized_at"] is not None
    assert [(r["attempt"], r["outcome"]) for r in run_rows(db, job_id)] == [(n, "crashed") for n in (1, 2, 3)]
    [failure] = flywheel.recent_failures(db)
    assert failure.job_id == job_id and "lease expired" in failure.error_message
    child = spawn_runner(db_url, tmp_path)  # nothing left to run it again
    out, err = child.communicate(timeout=30)
    assert (child.returncode, out.strip()) == (0, "0"), err


def test_the_sweep_recovers_thousands_of_expired_leases_in_batches(db: flywheel.Database,
                                                                   clock: flywheel.FixedClock) -> None:
    now = clock.now()
    rows = []
    for n in range(2_500):
        row = flywheel.api.client.build_job_row("k", "{}", flywheel.InsertOpts(max_attempts=1 if n % 5 == 0 else 3), now)
        row.update(state="running", attempt=1, leased_until=now - timedelta(seconds=1), lease_token="t")
        rows.append(row)
    db.driver.enqueue(db, rows)
    live = flywheel.Client(db).enqueue("k", {})
    db.Job.update(state="running", attempt=1, leased_until=now + timedelta(minutes=5), lease_token="u").where(
        db.Job.id == live).execute()

    assert Scheduler(db).sweep() == 2_500
    assert flywheel.overview(db).counts_by_state == {"available": 2_000, "discarded": 500, "running": 1}
    assert Scheduler(db).sweep() == 0
