"""PostgreSQL under load and under connection faults, with real runner processes (spawned).

* 20,000 no-op jobs drained by 4 runner processes x concurrency 8: each job succeeds exactly
  once and ``job_runs`` holds exactly one ``success`` row per job and nothing else.
* ``pg_terminate_backend`` of every backend of a running runner, twice: the runner recovers on
  its own, and a job enqueued afterwards is picked up through the restored LISTEN within
  200 ms although the runner polls only every 5 s.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import attrs
import pytest

import flywheel
from tests.helpers import wait_for

SPAWN = multiprocessing.get_context("spawn")


@attrs.frozen
class Noop:
    kind: ClassVar[str] = "noop"
    n: int = 0


def _drain(url: str, concurrency: int, results: Any) -> None:
    """Child process: run no-op jobs until none is left; report how many attempts it ran."""
    logging.basicConfig(level=logging.WARNING)
    db = flywheel.connect(url)
    registry = flywheel.Registry()
    registry.worker("noop")(lambda job: None)
    ran = flywheel.Runner(db, registry, concurrency=concurrency, poll_interval=0.05).run_until_idle(timeout=600)
    results.put(ran)


def _serve(url: str, log_path: str, stop: Any) -> None:
    """Child process: a long-polling runner (5 s) that only LISTEN can wake quickly."""
    logging.basicConfig(level=logging.INFO, filename=log_path, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    db = flywheel.connect(url)
    registry = flywheel.Registry()
    registry.worker("noop")(lambda job: None)

    @registry.worker("slow")
    def slow(job: flywheel.Job[Any]) -> None:
        time.sleep(0.6)  # long enough for the lease keeper (lease 1.2 s, heartbeat 0.4 s) to renew

    flywheel.Runner(db, registry, concurrency=4, poll_interval=5, lease=timedelta(seconds=1.2)).run(stop)


def _admin(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg2

    from tests.conftest import PG_URL

    conn = psycopg2.connect(PG_URL, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.mark.slow
def test_four_processes_drain_20000_jobs_exactly_once(pg_schema_url: str) -> None:
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    ids = flywheel.Client(db).insert_many([Noop(i) for i in range(20_000)])
    assert len(set(ids)) == 20_000
    results = SPAWN.Queue()
    started = time.monotonic()
    procs = [SPAWN.Process(target=_drain, args=(pg_schema_url, 8, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(600)
    elapsed = time.monotonic() - started
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ran = [results.get(timeout=5) for _ in procs]
    print(f"\n4 processes x 8: 20,000 jobs in {elapsed:.1f}s ({20_000 / elapsed:.0f} jobs/s incl. start-up); "
          f"per process {ran}")
    assert sum(ran) == 20_000

    def one(sql: str) -> Any:
        return db.pw.execute_sql(sql).fetchone()

    assert one("SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'), max(attempt), min(attempt) "
               "FROM jobs") == (20_000, 20_000, 1, 1)
    assert one("SELECT count(*), count(DISTINCT job_id), count(*) FILTER (WHERE outcome = 'success') "
               "FROM job_runs") == (20_000, 20_000, 20_000)
    assert one("SELECT count(*) FROM jobs j WHERE (SELECT count(*) FROM job_runs r "
               "WHERE r.job_id = j.id AND r.outcome = 'success') <> 1") == (0,)
    db.close()


@pytest.mark.slow
def test_a_runner_recovers_from_terminated_backends_and_listens_again(pg_schema_url: str, tmp_path: Path) -> None:
    app = f"fwfault-{uuid.uuid4().hex[:8]}"
    url = f"{pg_schema_url}&application_name={quote(app)}"
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    client = flywheel.Client(db)
    log_path = tmp_path / "runner.log"
    stop = SPAWN.Event()
    proc = SPAWN.Process(target=_serve, args=(url, str(log_path), stop))
    proc.start()

    def listener_pids() -> set[int]:
        rows = _admin("SELECT pid, query FROM pg_stat_activity WHERE application_name = %s", app)
        return {pid for pid, query in rows if query.startswith("LISTEN")}

    def pickup_ms(kind: str = "noop") -> float:
        """Enqueue a job; wait until it succeeded; the ms from its insert to its claim."""
        job_id = client.enqueue(kind, {})
        wait_for(lambda: flywheel.find_job(db, job_id).state == "succeeded", 15, f"{kind} job {job_id} to succeed")
        created, started = db.pw.execute_sql(
            "SELECT j.created_at, r.started_at FROM jobs j JOIN job_runs r ON r.job_id = j.id WHERE j.id = %s",
            (job_id,)).fetchone()
        runs = db.pw.execute_sql("SELECT outcome FROM job_runs WHERE job_id = %s", (job_id,)).fetchall()
        assert runs == [("success",)]
        return (started - created).total_seconds() * 1000

    try:
        first = wait_for(listener_pids, 30, "the runner to LISTEN")
        time.sleep(0.5)
        warm = [pickup_ms() for _ in range(3)]
        assert pickup_ms("slow") < 200  # lease keeper and finaliser connections exist now
        latencies = []
        for outage in range(2):
            backends = _admin("SELECT pid FROM pg_stat_activity WHERE application_name = %s", app)
            assert len(backends) >= 3, backends  # claim loop, finaliser, lease keeper, listener
            killed = _admin("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = %s", app)[0][0]
            assert killed == len(backends)
            # the runner re-opens its LISTEN connection by itself...
            restored = wait_for(lambda first=first: listener_pids() - first, 10, "LISTEN to be re-established")
            first = first | restored
            time.sleep(0.5)
            # ...and a job enqueued now is claimed through it, not by the 5 s poll
            latencies.append(pickup_ms())
            assert latencies[-1] < 200, (outage, latencies)
            assert pickup_ms("slow") < 200  # finaliser and lease keeper healed too
        print(f"\npickup after start {[round(x, 1) for x in warm]} ms; after each outage "
              f"{[round(x, 1) for x in latencies]} ms")
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0
    log = log_path.read_text()
    assert "Traceback" not in log, log
    lost = [line for line in log.splitlines() if "LISTEN connection" in line and "lost" in line]
    assert len(lost) == 2, log  # one line per outage, no storm
    failures = [line for line in log.splitlines() if "failed" in line]
    assert len(failures) <= 2, log  # connections were replaced before use, not after errors
    assert flywheel.overview(db).counts_by_state == {"succeeded": 8}
    db.close()
