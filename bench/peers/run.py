"""Round-by-round comparison of flywheel with its peers, every system measured the same way.

Per round, each setting runs once per system, one after the other (so a noisy minute hits
both sides of a ratio): PostgreSQL — flywheel at concurrency 1, 8 and 32, pgqueuer capped
at the same numbers (``max_concurrent_tasks``, see :mod:`bench.peers.pgqueuer_driver`), and
pgqueuer at its defaults; SQLite — flywheel at concurrency 1 and 8, huey ``SqliteHuey`` with 1 and 8
thread workers. Each measurement gets a fresh database (schema / file).

* **drain**: N no-op jobs are enqueued first (untimed, with each system's own bulk or
  single enqueue), one runner process is started and set up, then told ``go``; the rate is
  N over the time from ``go`` to the last job's completion stamp (:mod:`bench.peers.protocol`
  says where each system stamps it). Every job must be stamped exactly once.
* **latency**: an idle runner process; a producer enqueues ``--latency-n`` jobs one at a
  time, 50–250 ms apart (seed per round); per job, from just before the enqueue call to
  its completion stamp. p50 / p99.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import flywheel

from bench import env
from bench.peers import venv
from bench.peers.protocol import paced
from bench.scenarios import Child, percentile
from bench.workload import make_registry, noop_args

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = {"postgres": "pgqueuer", "sqlite": "huey"}
#: (system, concurrency) per dialect, in the order a round runs them; None = the peer's defaults.
SETTINGS: dict[str, list[tuple[str, int | None]]] = {
    "postgres": [("flywheel", 1), ("pgqueuer", 1), ("flywheel", 8), ("pgqueuer", 8),
                 ("flywheel", 32), ("pgqueuer", 32), ("pgqueuer", None)],
    "sqlite": [("flywheel", 1), ("huey", 1), ("flywheel", 8), ("huey", 8)],
}


# -- one measurement per system -------------------------------------------------------------


@contextlib.contextmanager
def target(system: str, url: str) -> Iterator[dict[str, str]]:
    """A fresh, set-up database for ``system``: ``{"url": …}`` (flywheel), ``{"schema": …}``, ``{"path": …}``."""
    if system == "flywheel":
        with env.fresh_database(url) as fresh:
            db = flywheel.connect(fresh)
            flywheel.migrate(db)
            db.close()
            yield {"url": fresh}
    elif system == "pgqueuer":
        with env.fresh_schema(url) as schema:
            where = {"schema": schema}
            _peer_run("pgqueuer", "install", where, url)
            yield where
    else:
        with tempfile.TemporaryDirectory(prefix="flywheel-bench-huey-") as tmp:
            yield {"path": os.path.join(tmp, "huey.db")}


def _peer_cmd(system: str, role: str, where: dict[str, str], url: str, *extra: str) -> list[str]:
    cmd = [str(venv.python()), os.path.join(HERE, f"{system}_driver.py"), role]
    if system == "pgqueuer":
        cmd += ["--dsn", url, "--schema", where["schema"]]
    else:
        cmd += ["--path", where["path"]]
    return cmd + list(extra)


def _peer_run(system: str, role: str, where: dict[str, str], url: str, *extra: str) -> dict[str, Any]:
    import subprocess

    proc = subprocess.run(_peer_cmd(system, role, where, url, *extra), capture_output=True, text=True,
                          timeout=600, cwd=str(env.REPO))
    if proc.returncode != 0:
        raise RuntimeError(f"bench: {system} {role} failed:\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else {}


def produce(system: str, where: dict[str, str], url: str, n: int, *, paced_seed: int | None = None,
            on_each: Any = None) -> dict[str, float]:
    """Enqueue ``n`` no-op jobs with the system's own client; paced: ``{id: instant before the call}``."""
    if system == "flywheel":
        db = flywheel.connect(where["url"])
        try:
            client = flywheel.Client(db, registry=make_registry())
            if paced_seed is None:
                client.insert_many(noop_args(n))
                return {}
            return paced(n, paced_seed, lambda i: client.insert(noop_args(1, i)[0]))
        finally:
            db.close()
    extra = ["--n", str(n)] + ([] if paced_seed is None else ["--paced", "--seed", str(paced_seed)])
    return dict(_peer_run(system, "produce", where, url, *extra).get("enqueued", {}))


def worker(system: str, where: dict[str, str], url: str, concurrency: int | None, expect: int) -> Child:
    if system == "flywheel":
        return Child(where["url"], concurrency or 1, record_finish=True, expect=expect)
    extra = ["--expect", str(expect)]
    if system == "huey":
        extra += ["--workers", str(concurrency or 1)]
    elif concurrency is not None:
        extra += ["--concurrency", str(concurrency)]
    return Child("", 0, cmd=_peer_cmd(system, "worker", where, url, *extra))


def _run_worker(proc: Child, expect: int, limit: float, before_stop: Any = None) -> dict[str, Any]:
    try:
        proc.wait_ready()
        proc.send("go")
        if before_stop is not None:
            before_stop()
        proc.wait_for("drained", limit)
        done = proc.stop()
    finally:
        proc.kill()
    finished = done.get("finished", {})
    if len(finished) != expect:
        raise RuntimeError(f"bench: {len(finished)} of {expect} jobs reported done\n{proc.error_text()}")
    return done


def drain(system: str, url: str, concurrency: int | None, n: int) -> dict[str, Any]:
    with target(system, url) as where:
        produce(system, where, url, n)
        done = _run_worker(worker(system, where, url, concurrency, n), n, max(120.0, n / 50))
    seconds = max(done["finished"].values()) - done["started"]
    return {"seconds": seconds, "rate": n / seconds}


def latency(system: str, url: str, concurrency: int | None, n: int, seed: int) -> dict[str, Any]:
    enqueued: dict[str, float] = {}
    with target(system, url) as where:
        proc = worker(system, where, url, concurrency, n)

        def enqueue() -> None:
            time.sleep(0.5)  # the runner is idle and waiting
            enqueued.update(produce(system, where, url, n, paced_seed=seed))

        done = _run_worker(proc, n, 120.0 + n * 0.5, before_stop=enqueue)
    waits = [done["finished"][job_id] - t0 for job_id, t0 in enqueued.items() if job_id in done["finished"]]
    if len(waits) != n:
        raise RuntimeError(f"bench: {len(waits)} of {n} paced jobs matched a completion")
    return {"p50_ms": round(percentile(waits, 50) * 1000, 3),  # type: ignore[operator]
            "p99_ms": round(percentile(waits, 99) * 1000, 3)}  # type: ignore[operator]


# -- the comparison ---------------------------------------------------------------------------


def run(url: str, *, n: int, rounds: int, latency_n: int, sink: Any, common: dict[str, Any]) -> int:
    dialect = env.dialect_of(url)
    versions = venv.ensure()
    common = {**common, "peers": versions}
    failures = 0
    records: list[dict[str, Any]] = []
    for round_no in range(rounds):
        for system, concurrency in SETTINGS[dialect]:
            head = {"record": "peer_run", "system": system, "concurrency": concurrency, "round": round_no,
                    "n": n, "latency_n": latency_n}
            load_before, cpu_before = os.getloadavg()[0], env.cpu_snapshot()
            started = time.time()
            try:
                measured = drain(system, url, concurrency, n)
                if latency_n:
                    measured.update(latency(system, url, concurrency, latency_n, seed=1 + round_no))
            except Exception as exc:  # noqa: BLE001 - one failed cell must not hide the rest
                failures += 1
                print(f"bench: {system} concurrency={concurrency} round {round_no}: {exc}", file=sys.stderr)
                sink.write({**head, "record": "peer_error", "error": str(exc).splitlines()[0],
                            "timestamp": env.now_iso(), **common})
                continue
            record = {**head, **{k: round(v, 3) for k, v in measured.items()}, "timestamp": env.now_iso(),
                      "wall_s": round(time.time() - started, 3), **env.noise(cpu_before, load_before), **common}
            records.append(record)
            sink.write(record)
    for system, concurrency in SETTINGS[dialect]:
        cell = [r for r in records if (r["system"], r["concurrency"]) == (system, concurrency)]
        if cell:
            sink.write({"record": "peer_median", "system": system, "concurrency": concurrency, "n": n,
                        "rounds": len(cell), **_medians(cell), "timestamp": env.now_iso(), **common})
    print(render(records), file=sys.stderr)
    return failures


def _medians(cell: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for field in ("rate", "seconds", "p50_ms", "p99_ms", "load1_before", "host_cpu_busy"):
        values = [r[field] for r in cell if isinstance(r.get(field), (int, float))]
        if values:
            out[field] = round(statistics.median(values), 3)
    return out


def render(records: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table: per setting, medians of the rounds and flywheel's ratio."""
    if not records:
        return "(no measurements)"
    dialect = records[0]["dialect"]
    peer = PEER[dialect]
    med = {}
    for system, concurrency in SETTINGS[dialect]:
        cell = [r for r in records if (r["system"], r["concurrency"]) == (system, concurrency)]
        if cell:
            med[(system, concurrency)] = {**_medians(cell), "rounds": len(cell)}
    loads = sorted(r["load1_before"] for r in records if r.get("load1_before") is not None)
    lines = [f"{'PostgreSQL' if dialect == 'postgres' else 'SQLite'}: medians of {max(m['rounds'] for m in med.values())} "
             f"interleaved rounds, {records[0]['n']:,} no-op jobs per drain, {records[0]['latency_n']} latency samples "
             f"(load average 1 min: {loads[0]:.2f}–{loads[-1]:.2f})", "",
             "| flywheel setting | against | flywheel jobs/s | peer jobs/s | ratio | flywheel p50 / p99 ms "
             "| peer p50 / p99 ms |", "|---|---|---|---|---|---|---|"]
    for concurrency in sorted({c for s, c in med if s == "flywheel"}):
        ours = med[("flywheel", concurrency)]
        peer_label = "max_concurrent_tasks" if peer == "pgqueuer" else "thread workers"
        against = [((peer, concurrency), f"{peer} {peer_label} {concurrency}")]
        if (peer, None) in med:
            against.append(((peer, None), f"{peer} defaults"))
        for key, label in against:
            theirs = med.get(key)
            if theirs is None:
                continue
            ratio = ours.get("rate", 0) / theirs["rate"] if theirs.get("rate") else float("nan")
            lines.append(f"| concurrency {concurrency} | {label} | {_n(ours.get('rate'))} | {_n(theirs.get('rate'))} "
                         f"| **{ratio:.2f}×** | {_ms(ours)} | {_ms(theirs)} |")
    return "\n".join(lines)


def _n(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _ms(m: dict[str, Any]) -> str:
    if m.get("p50_ms") is None:
        return "–"
    return f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f}"


def default_out(dialect: str, commit: str | None) -> str:
    return str(env.REPO / "bench" / "results" / f"peers-{(commit or 'unknown').replace('+', '-')}-{dialect}.jsonl")
