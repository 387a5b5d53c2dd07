"""The four scenarios. Each returns a list of measurement dicts (one per repeat).

Every repeat runs in a fresh database (``env.fresh_database``) created by ``flywheel.migrate``.
Runner processes are real child processes (``bench.child``) so the harness's own polling
never competes with the runner for the GIL.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flywheel
from flywheel.storage.models import from_db_time

from bench.env import REPO, dialect_of, fresh_database
from bench.workload import make_registry, noop_args

DEFAULT_N = {"enqueue": 10_000, "bulk": 100_000, "drain": 20_000, "latency": 200}
DEFAULT_REPEAT = {"enqueue": 3, "bulk": 3, "drain": 3, "latency": 1}
LATENCY_GAP_S = (0.050, 0.250)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _open(url: str) -> flywheel.Database:
    db = flywheel.connect(url)
    flywheel.migrate(db)
    return db


# -- raw counting connections (the harness's own, not flywheel's) ---------------


class Counter:
    """A plain DB-API connection that counts rows, so verification does not go through flywheel."""

    def __init__(self, url: str) -> None:
        self.dialect = dialect_of(url)
        if self.dialect == "sqlite":
            path = url[len("sqlite:///"):]
            self.conn: Any = sqlite3.connect(path, isolation_level=None, timeout=60)
        else:
            import psycopg2

            self.conn = psycopg2.connect(url)
            self.conn.autocommit = True

    def scalar(self, sql: str) -> Any:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return cur.fetchone()[0]
        finally:
            cur.close()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            cur.close()

    def succeeded(self) -> int:
        # the predicate matches the jobs_state partial index, so this is an index-only count
        return int(self.scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded'"))

    def runs_success(self) -> int:
        return int(self.scalar("SELECT count(*) FROM job_runs WHERE outcome = 'success'"))

    def close(self) -> None:
        self.conn.close()


# -- runner child processes --------------------------------------------------------


class Child:
    """One ``bench.child`` runner process."""

    def __init__(self, url: str, concurrency: int, *, poll_interval: float | None = None,
                 record_finish: bool = False, expect: int | None = None, cmd: list[str] | None = None) -> None:
        if cmd is None:  # a flywheel runner; ``cmd`` runs another system's worker (bench.peers)
            cmd = [sys.executable, "-m", "bench.child", "--db", url, "--concurrency", str(concurrency)]
            if poll_interval is not None:
                cmd += ["--poll-interval", str(poll_interval)]
            if record_finish:
                cmd.append("--record-finish")
            if expect is not None:
                cmd += ["--expect", str(expect)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, env=env, cwd=str(REPO))

    def wait_for(self, word: str, timeout: float) -> None:
        """Read lines until ``word`` arrives (the process's ``drained``)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(max(0.0, deadline - time.monotonic()))
            if line.strip() == word:
                return
            if not line:
                raise RuntimeError(f"bench: runner process exited before {word!r}\n{self.error_text()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        line = self._readline(timeout)
        if line.strip() != "ready":
            raise RuntimeError(f"bench: runner process did not start: {line!r}\n{self.error_text()}")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        """Ask the runner to stop, let it finish in-flight work, and return its ``done`` line."""
        self.send("stop")
        try:  # communicate() closes stdin, which also reads as "stop"
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise RuntimeError(f"bench: runner process did not stop within {timeout}s\n{self.error_text()}") from None
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        raise RuntimeError(f"bench: runner process exited {self.proc.returncode} without a result\n{self.error_text()}")

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def error_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.kill()
                raise RuntimeError(f"bench: runner process silent for {timeout}s\n{self.error_text()}")
        return self.proc.stdout.readline()


@contextlib.contextmanager
def children(url: str, processes: int, concurrency: int, **options: Any) -> Iterator[list[Child]]:
    procs = [Child(url, concurrency, **options) for _ in range(processes)]
    try:
        for proc in procs:
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.kill()


# -- scenarios ----------------------------------------------------------------------------


#: Jobs per block of the enqueue scenario's interleaving with the raw psycopg2 baseline.
RAW_BLOCK = 10
RAW_INSERT = ("INSERT INTO jobs (id, created_at, updated_at, metadata, kind, queue, args, priority, state, attempt,"
              " max_attempts, scheduled_at, executor_class, tags)"
              " VALUES (%s, %s, %s, '{}', %s, 'default', %s, 100, 'available', 0, 25, %s, '', '[]')")


def enqueue(url: str, n: int, **_: Any) -> dict[str, Any]:
    """One ``Client.insert`` call (its own transaction) per job.

    On PostgreSQL the same run also measures the baseline of issue 13: a raw psycopg2
    one-row ``INSERT`` of the same columns plus its ``commit()`` per job, on its own
    connection, in blocks of :data:`RAW_BLOCK` jobs alternating with flywheel's blocks (so
    both see the same moment of a noisy machine). ``raw_rate`` is its rate, ``raw_ratio``
    flywheel's rate over it.
    """
    with fresh_database(url) as fresh:
        db = _open(fresh)
        client = flywheel.Client(db, registry=make_registry())
        args = noop_args(n)
        raw = _RawInserts(fresh) if dialect_of(url) == "postgres" else None
        per_call = []
        clock = time.perf_counter
        seconds = raw_seconds = 0.0
        for start in range(0, n, RAW_BLOCK if raw is not None else n):
            block_started = clock()
            for item in args[start : start + RAW_BLOCK] if raw is not None else args:
                t0 = clock()
                client.insert(item)
                per_call.append(clock() - t0)
            seconds += clock() - block_started
            if raw is not None:
                raw_seconds += raw.insert(start, min(RAW_BLOCK, n - start))
        db.close()
        counter = Counter(fresh)
        try:
            landed = int(counter.scalar("SELECT count(*) FROM jobs WHERE kind = 'bench_noop'"))
        finally:
            counter.close()
        if raw is not None:
            raw.close()
    _check(landed == n, f"enqueue: {landed} rows landed, expected {n}")
    result = {"seconds": seconds, "rate": n / seconds, "p50_ms": _ms(percentile(per_call, 50)),
              "p99_ms": _ms(percentile(per_call, 99)), "verified_rows": landed}
    if raw is not None:
        result.update(raw_rate=n / raw_seconds, raw_ratio=(n / seconds) / (n / raw_seconds))
    return result


class _RawInserts:
    """The baseline: plain psycopg2, one INSERT and one commit per job, nothing else."""

    def __init__(self, url: str) -> None:
        import psycopg2

        self.conn = psycopg2.connect(url)

    def insert(self, start: int, count: int) -> float:
        import uuid
        from datetime import UTC, datetime

        cur = self.conn.cursor()
        started = time.perf_counter()
        for i in range(start, start + count):
            now = datetime.now(UTC)
            cur.execute(RAW_INSERT, (str(uuid.uuid4()), now, now, "bench_raw", json.dumps({"n": i}), now))
            self.conn.commit()
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


def bulk(url: str, n: int, **_: Any) -> dict[str, Any]:
    """One ``Client.insert_many`` call for all N jobs (args objects built before the clock starts)."""
    with fresh_database(url) as fresh:
        db = _open(fresh)
        client = flywheel.Client(db, registry=make_registry())
        args = noop_args(n)
        started = time.perf_counter()
        ids = client.insert_many(args)
        seconds = time.perf_counter() - started
        db.close()
        counter = Counter(fresh)
        try:
            landed = int(counter.scalar("SELECT count(*) FROM jobs"))
        finally:
            counter.close()
    _check(len(ids) == n and landed == n, f"bulk: {landed} rows landed, expected {n}")
    return {"seconds": seconds, "rate": n / seconds, "verified_rows": landed}


def drain(url: str, n: int, concurrency: int, processes: int, timeout: float | None = None,
          **_: Any) -> dict[str, Any]:
    """Runner processes empty N pre-enqueued jobs; the clock stops when the DB counts N ``succeeded``."""
    limit = timeout if timeout is not None else max(120.0, n / 50)
    with fresh_database(url) as fresh:
        db = _open(fresh)
        flywheel.Client(db).insert_many(noop_args(n))
        db.close()
        counter = Counter(fresh)
        try:
            with children(fresh, processes, concurrency) as procs:
                started = time.perf_counter()
                for proc in procs:
                    proc.send("go")
                done, polls = _wait_for_count(counter, n, started, limit, procs)
                seconds = time.perf_counter() - started
                for proc in procs:
                    proc.stop()
            runs_ok = counter.runs_success()
            span = _db_span(counter)
        finally:
            counter.close()
    _check(done == n, f"drain: {done} of {n} jobs succeeded within {limit:.0f}s")
    _check(runs_ok == n, f"drain: {runs_ok} succeeded run rows for {n} jobs (exactly one each expected)")
    return {"seconds": seconds, "rate": n / seconds, "verified_rows": done, "runs_success": runs_ok,
            "db_span_s": span, "count_polls": polls}


def latency(url: str, n: int, concurrency: int, seed: int = 1, poll_interval: float | None = None,
            **_: Any) -> dict[str, Any]:
    """Jobs enqueued one at a time, 50–250 ms apart, to an idle runner process.

    Two measures: ``p50_ms``/``p99_ms`` from just before ``Client.insert`` is called to the
    commit of the job's finalisation (a ``flywheel_on_finish`` observer in the runner
    process records it); ``db_p50_ms``/``db_p99_ms`` from the database alone,
    ``jobs.created_at`` to the success run's ``finished_at`` (the worker's return, before
    the finalisation commits). The breakdown: ``insert_call`` (the ``Client.insert`` call),
    ``to_claim`` (``created_at`` → the run's ``started_at``, the instant the claim was
    issued: insert commit + wake-up), ``claim_to_done`` (``started_at`` → ``finished_at``:
    claim statement, hand-off to a worker, the no-op work) and ``finalize``
    (``finished_at`` → the finalisation's commit as the observer saw it).
    """
    rng = random.Random(seed)
    with fresh_database(url) as fresh:
        db = _open(fresh)
        client = flywheel.Client(db, registry=make_registry())
        counter = Counter(fresh)
        try:
            with children(fresh, 1, concurrency, poll_interval=poll_interval, record_finish=True) as procs:
                procs[0].send("go")
                time.sleep(0.5)  # the runner has made its first (empty) claim and is idle
                enqueued: dict[str, float] = {}
                insert_calls: list[float] = []
                loop_started = time.perf_counter()
                for i in range(n):
                    time.sleep(rng.uniform(*LATENCY_GAP_S))
                    t0 = time.time()
                    enqueued[client.insert(noop_args(1, i)[0])] = t0
                    insert_calls.append(time.time() - t0)
                done, _ = _wait_for_count(counter, n, time.perf_counter(), 60.0, procs)
                seconds = time.perf_counter() - loop_started
                result = procs[0].stop()
            rows = counter.rows(
                "SELECT j.id, j.created_at, r.started_at, r.finished_at FROM jobs j JOIN job_runs r ON r.job_id = j.id "
                "WHERE r.outcome = 'success'")
        finally:
            counter.close()
            db.close()
    _check(done == n, f"latency: {done} of {n} jobs succeeded")
    finished = result.get("finished", {})
    observed = [finished[job_id] - t0 for job_id, t0 in enqueued.items() if job_id in finished]
    _check(len(observed) == n, f"latency: the runner reported {len(observed)} of {n} finalisations")
    from_db, to_claim, claim_to_done, to_commit = [], [], [], []
    for job_id, created, started_at, finished_at in rows:
        a, s, b = from_db_time(created), from_db_time(started_at), from_db_time(finished_at)
        assert a is not None and s is not None and b is not None
        from_db.append((b - a).total_seconds())
        to_claim.append((s - a).total_seconds())
        claim_to_done.append((b - s).total_seconds())
        if job_id in finished:
            to_commit.append(finished[job_id] - b.timestamp())
    breakdown = {}
    for name, values in (("insert_call", insert_calls), ("to_claim", to_claim), ("claim_to_done", claim_to_done),
                         ("finalize", to_commit)):
        breakdown[f"{name}_p50_ms"] = _ms(percentile(values, 50))
        breakdown[f"{name}_p99_ms"] = _ms(percentile(values, 99))
    return {"seconds": seconds, "rate": None,
            "p50_ms": _ms(percentile(observed, 50)), "p99_ms": _ms(percentile(observed, 99)),
            "max_ms": _ms(max(observed) if observed else None),
            "db_p50_ms": _ms(percentile(from_db, 50)), "db_p99_ms": _ms(percentile(from_db, 99)),
            **breakdown, "verified_rows": done}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "enqueue": enqueue, "bulk": bulk, "drain": drain, "latency": latency,
}


# -- helpers ------------------------------------------------------------------------------


def _wait_for_count(counter: Counter, n: int, started: float, limit: float,
                    procs: list[Child]) -> tuple[int, int]:
    """Poll the succeeded count until it reaches n; the poll gap shrinks as the end nears."""
    polls = 0
    while True:
        done = counter.succeeded()
        polls += 1
        if done >= n:
            return done, polls
        elapsed = time.perf_counter() - started
        if elapsed > limit:
            return done, polls
        if not all(p.alive() for p in procs):
            dead = next(p for p in procs if not p.alive())
            raise RuntimeError(f"bench: a runner process exited early\n{dead.error_text()}")
        rate = done / elapsed if done and elapsed > 0 else 0.0
        eta = (n - done) / rate if rate else 0.05
        time.sleep(min(0.1, max(0.002, eta / 4)))


def _db_span(counter: Counter) -> float | None:
    """From the first run's start to the last run's finish, as the database recorded them."""
    first, last = counter.rows("SELECT min(started_at), max(finished_at) FROM job_runs")[0]
    a, b = from_db_time(first), from_db_time(last)
    return None if a is None or b is None else round((b - a).total_seconds(), 4)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(f"bench: {message}")


def median_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
