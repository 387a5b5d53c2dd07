"""How fast the dashboard's pages answer on a big table.

    python -m bench.dashboard [--db postgresql://postgres@127.0.0.1:5432/fw_dashboard_bench]
                              [--jobs 1000000] [--repeat 9] [--reuse] [--out FILE]

Fills the database (created when missing; a PostgreSQL database of its own, since the
fill truncates the flywheel tables) with ``--jobs`` jobs in mixed states through the
driver's bulk insert (COPY on PostgreSQL), one run row per attempted job, and a few
schedules; ``ANALYZE`` s it; then serves the dashboard on loopback and times every page
over real HTTP (``--repeat`` requests each, after one warm-up). The jobs' history ends at
the fill (so the chart's hour is full); ``--reuse`` keeps an earlier fill of the same size.

Prints a table and writes one JSON document (environment, fill, per-page median and
maximum in ms) to ``bench/results/<commit>-<dialect>-dashboard.json`` or ``--out``.
The target is a median under 100 ms for every page at 1,000,000 jobs on PostgreSQL.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import flywheel
from bench import env
from flywheel.api.client import build_job_row
from flywheel.ids import new_id
from flywheel.jobs import InsertOpts

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/fw_dashboard_bench"
TARGET_MS = 100.0
CHUNK = 50_000
#: (state, share of the jobs): mostly finished work, as in a table that retention keeps for days.
MIX = (("succeeded", 0.85), ("discarded", 0.03), ("cancelled", 0.02), ("available", 0.05),
       ("scheduled", 0.03), ("retryable", 0.01), ("running", 0.01))
KINDS = tuple(f"kind_{i}" for i in range(8))
QUEUES = ("default", "email", "reports", "billing", "periodic")
HISTORY = timedelta(hours=24)


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist."""
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres", query=""))
    conn = psycopg2.connect(admin, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def _job_rows(n: int, start: int, total: int, now: datetime,
              rng: random.Random) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """``n`` job rows (index ``start`` onwards) and the run row of each attempted one."""
    template = build_job_row("kind_0", "{}", InsertOpts(), now)
    states = [s for s, _ in MIX]
    weights = [w for _, w in MIX]
    jobs, runs = [], []
    for i in range(start, start + n):
        created = now - HISTORY + HISTORY * (i / total)
        state = rng.choices(states, weights)[0]
        row = dict(template, id=new_id(), kind=KINDS[i % len(KINDS)], queue=QUEUES[i % len(QUEUES)],
                   args=json.dumps({"n": i, "to": f"user{i}@example.com"}), state=state,
                   created_at=created, updated_at=created, scheduled_at=created)
        if state == "scheduled":
            row["scheduled_at"] = now + timedelta(minutes=rng.randint(1, 600))
        elif state == "retryable":
            row.update(attempt=1, scheduled_at=now + timedelta(seconds=rng.randint(-60, 600)))
        elif state == "running":
            row.update(attempt=1, leased_until=now + timedelta(seconds=30), lease_token=new_id())
        elif state in ("succeeded", "discarded", "cancelled"):
            attempt = 25 if state == "discarded" else 1
            finished = created + timedelta(milliseconds=rng.randint(5, 5000))
            row.update(attempt=attempt, finalized_at=finished, updated_at=finished)
        jobs.append(row)
        if row["attempt"]:
            outcome = {"succeeded": "success", "discarded": "error", "cancelled": "cancelled",
                       "retryable": "error", "running": "started"}[state]
            started = row["finalized_at"] or created
            error = "TimeoutError: upstream took too long" if outcome == "error" else None
            runs.append((new_id(), row["id"], row["attempt"], "", "bench-host:1", started,
                         None if outcome == "started" else started, outcome,
                         "transient" if error else None, error,
                         json.dumps({"sent": True}) if outcome == "success" else None,
                         None if outcome == "started" else rng.randint(5, 5000), 0, started))
    return jobs, runs


_RUN_COLUMNS = ("id", "job_id", "attempt", "executor_class", "executor_id", "started_at", "finished_at", "outcome",
                "error_class", "error_message", "output", "duration_ms", "enqueued_children", "created_at")


def _copy_runs(db: flywheel.Database, runs: list[tuple[Any, ...]]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "\\N"
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    text = "".join("\t".join(cell(v) for v in run) + "\n" for run in runs)
    db.pw.cursor().copy_expert(f"COPY job_runs ({', '.join(_RUN_COLUMNS)}) FROM STDIN", io.StringIO(text))


def fill(db: flywheel.Database, n: int) -> dict[str, Any]:
    """Replace the jobs, runs and schedules with ``n`` generated jobs; return what it took."""
    t0 = time.perf_counter()
    rng = random.Random(7)
    now = datetime.now(UTC)
    db.pw.execute_sql("TRUNCATE jobs, job_runs, job_periodics")
    for start in range(0, n, CHUNK):
        jobs, runs = _job_rows(min(CHUNK, n - start), start, n, now, rng)
        with db.atomic():
            db.driver.insert_jobs(db, jobs)
            _copy_runs(db, runs)
        print(f"  filled {start + len(jobs):,} jobs", file=sys.stderr, flush=True)
    for i in range(20):
        flywheel.upsert_periodic(db, flywheel.PeriodicSpec(
            slug=f"report-{i}", kind=KINDS[i % len(KINDS)], every=timedelta(minutes=5 + i), active=i % 4 != 0))
    fill_s = time.perf_counter() - t0
    conn = db.pw.connection()
    old = conn.autocommit
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE jobs")
        cur.execute("VACUUM ANALYZE job_runs")
    conn.autocommit = old
    return {"fill_s": round(fill_s, 1), "vacuum_analyze_s": round(time.perf_counter() - t0 - fill_s, 1)}


def pages(db: flywheel.Database, total: int) -> list[tuple[str, str]]:
    """(name, path) of every page to time, with ids and cursors taken from the data."""
    middle = db.pw.execute_sql("SELECT id FROM jobs ORDER BY id OFFSET %s LIMIT 1",
                               (total // 2,)).fetchone()[0]
    discarded = db.pw.execute_sql("SELECT id FROM jobs WHERE state = 'discarded' ORDER BY id DESC LIMIT 1").fetchone()[0]
    return [
        ("overview", "/"), ("queues", "/queues"), ("jobs", "/jobs"),
        ("jobs page in the middle (cursor)", f"/jobs?before={middle}"),
        ("jobs newer page (cursor)", f"/jobs?after={middle}"),
        ("jobs state=discarded", "/jobs?state=discarded"), ("jobs state=running", "/jobs?state=running"),
        ("jobs state=succeeded", "/jobs?state=succeeded"), ("jobs kind=kind_3", "/jobs?kind=kind_3"),
        ("jobs queue=billing", "/jobs?queue=billing"),
        ("jobs queue=nowhere (no match: one search window)", "/jobs?queue=nowhere"),
        ("jobs state=succeeded&queue=billing", "/jobs?state=succeeded&queue=billing"),
        ("jobs kind=nothing (no match)", "/jobs?kind=nothing"),
        ("jobs state=available&queue=email", "/jobs?state=available&queue=email"),
        ("job detail", f"/jobs/{discarded}"), ("schedules", "/schedules"), ("failures", "/failures"),
    ]


def time_page(base: str, path: str, repeat: int) -> dict[str, Any]:
    samples = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=30) as response:
            body = response.read()
            status = response.status
        if i:  # the first request warms the connection and the caches
            samples.append((time.perf_counter() - t0) * 1000)
    return {"path": path, "status": status, "bytes": len(body), "median_ms": round(statistics.median(samples), 2),
            "max_ms": round(max(samples), 2), "min_ms": round(min(samples), 2), "requests": repeat}


def time_cold_overview(db: flywheel.Database, repeat: int) -> dict[str, Any]:
    """The overview on a freshly started dashboard: nothing cached (the chart reads its whole hour)."""
    from flywheel_plugins.dashboard import Dashboard

    samples = []
    for _ in range(repeat):
        app = Dashboard(db, "127.0.0.1:0")
        app.start()
        try:
            with urllib.request.urlopen(app.url + "schedules", timeout=30) as response:
                response.read()  # warms the connection only: the schedules page reads no jobs
            t0 = time.perf_counter()
            with urllib.request.urlopen(app.url, timeout=30) as response:
                body, status = response.read(), response.status
            samples.append((time.perf_counter() - t0) * 1000)
        finally:
            app.stop()
    return {"page": "overview, cold (fresh process: no cached chart minutes)", "path": "/", "status": status,
            "bytes": len(body), "median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2),
            "min_ms": round(min(samples), 2), "requests": repeat}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=DEFAULT_DB, help=f"PostgreSQL URL of a database of its own ({DEFAULT_DB})")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9, help="timed requests per page (default 9)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the jobs already there when their count matches (the chart then shows the "
                             "hour before the fill, which may be empty)")
    parser.add_argument("--out", default=None, help="JSON result file (default bench/results/<commit>-…)")
    args = parser.parse_args(argv)
    if env.dialect_of(args.db) != "postgres":
        raise SystemExit("bench.dashboard: the target is PostgreSQL; pass a postgresql:// URL")
    from flywheel_plugins.dashboard import Dashboard

    ensure_database(args.db)
    db = flywheel.connect(args.db)
    flywheel.migrate(db)
    have = int(db.pw.execute_sql("SELECT count(*) FROM jobs").fetchone()[0])
    filled: dict[str, Any] = {"reused": True}
    if not args.reuse or have != args.jobs:
        filled = fill(db, args.jobs)
    app = Dashboard(db, "127.0.0.1:0")
    app.start()
    load = env.cpu_snapshot(), os.getloadavg()[0]
    try:
        results = [{"page": name, **time_page(app.url.rstrip("/"), path, args.repeat)} for name, path in pages(db, args.jobs)]
    finally:
        app.stop()
    results.insert(1, time_cold_overview(db, args.repeat))
    commit = env.git_commit()
    doc = {"record": "dashboard", "jobs": args.jobs, "fill": filled, "target_ms": TARGET_MS,
           "all_under_target": all(r["median_ms"] < TARGET_MS and r["status"] == 200 for r in results),
           "pages": results, "timestamp": env.now_iso(), "dialect": "postgres", "commit": commit,
           **env.noise(*load), **env.versions(args.db), **env.machine()}
    out = Path(args.out) if args.out else env.REPO / "bench" / "results" / f"{(commit or 'unknown')[:7]}-postgres-dashboard.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    width = max(len(r["page"]) for r in results)
    for r in results:
        print(f"{r['page']:<{width}}  {r['status']}  median {r['median_ms']:7.2f} ms  max {r['max_ms']:7.2f} ms")
    print(f"all under {TARGET_MS:.0f} ms: {doc['all_under_target']}; written to {out}")


if __name__ == "__main__":
    main()
