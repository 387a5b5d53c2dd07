"""``python -m bench --peers`` and the enqueue scenario's raw psycopg2 baseline: harness correctness, never timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import PG_URL, require_pg

pytestmark = pytest.mark.bench  # not in the default run: `pytest -m bench`

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def test_the_peers_are_never_dependencies_of_the_project() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = " ".join(project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds])
    assert "pgqueuer" not in declared and "huey" not in declared
    assert "bench/.peers-venv/" in (REPO / ".gitignore").read_text().splitlines()


def test_render_prints_the_ratio_per_setting() -> None:
    from bench.peers.run import render

    def rec(system: str, concurrency: int | None, rate: float, p50: float) -> dict:
        return {"dialect": "postgres", "system": system, "concurrency": concurrency, "n": 100, "latency_n": 5,
                "rate": rate, "p50_ms": p50, "p99_ms": p50 * 2, "load1_before": 1.5}

    records = [rec("flywheel", 1, 400, 5), rec("pgqueuer", 1, 100, 50), rec("pgqueuer", None, 800, 60),
               rec("flywheel", 1, 600, 7), rec("pgqueuer", 1, 300, 70), rec("pgqueuer", None, 1000, 80)]
    table = render(records)
    assert "medians of 2 interleaved rounds" in table
    # medians: flywheel 500, pgqueuer capped 200, pgqueuer defaults 900
    assert "| concurrency 1 | pgqueuer max_concurrent_tasks 1 | 500 | 200 | **2.50×** | 6.0 / 12.0 | 60.0 / 120.0 |" in table
    assert "| concurrency 1 | pgqueuer defaults | 500 | 900 | **0.56×** |" in table


def test_a_flywheel_runner_process_speaks_the_peers_protocol(tmp_path: Path) -> None:
    import flywheel
    from bench.scenarios import Child
    from bench.workload import noop_args

    url = f"sqlite:///{tmp_path / 'fw.db'}"
    db = flywheel.connect(url)
    flywheel.migrate(db)
    ids = flywheel.Client(db).insert_many(noop_args(7))
    db.close()
    child = Child(url, 2, record_finish=True, expect=7)
    try:
        child.wait_ready()
        child.send("go")
        child.wait_for("drained", 60)
        done = child.stop()
    finally:
        child.kill()
    assert set(done["finished"]) == set(ids)
    assert all(stamp >= done["started"] for stamp in done["finished"].values())


@pytest.mark.skipif(not (REPO / "bench" / ".peers-venv" / "bin" / "python").exists(),
                    reason="the peers' virtualenv is made by a first `python -m bench --peers` (it downloads them)")
def test_peers_comparison_runs_end_to_end_on_sqlite(tmp_path: Path) -> None:
    out = tmp_path / "peers.jsonl"
    proc = subprocess.run([sys.executable, "-m", "bench", "--db", f"sqlite:///{tmp_path}/", "--peers", "--n", "30",
                           "--rounds", "1", "--latency-n", "3", "--out", str(out)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    runs = [r for r in lines if r["record"] == "peer_run"]
    assert {(r["system"], r["concurrency"]) for r in runs} == {("flywheel", 1), ("huey", 1), ("flywheel", 8),
                                                               ("huey", 8)}
    for r in runs:
        assert r["rate"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["peers"]["huey"].startswith("3.5.") and r["peers"]["pgqueuer"].startswith("1.6.")
    assert "| concurrency 8 | huey thread workers 8 |" in proc.stderr


def test_postgres_enqueue_measures_the_raw_psycopg2_baseline_in_the_same_run(tmp_path: Path) -> None:
    require_pg()
    out = tmp_path / "enqueue.jsonl"
    proc = subprocess.run([sys.executable, "-m", "bench", "--db", PG_URL, "--scenario", "enqueue", "--n", "25",
                           "--repeat", "1", "--out", str(out)], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next(json.loads(line) for line in out.read_text().splitlines() if '"run"' in line)
    assert run["verified_rows"] == 25 and run["raw_rate"] > 0
    assert run["raw_ratio"] == pytest.approx(run["rate"] / run["raw_rate"], rel=1e-3)
