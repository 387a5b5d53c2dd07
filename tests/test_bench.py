"""Smoke test of the benchmark harness (``python -m bench``): correctness of the harness, never timing.

Every scenario of the standard matrix runs at a tiny N on SQLite in a subprocess; the
JSON lines must parse and carry the fields docs/benchmarks.md relies on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench  # not in the default run: `pytest -m bench`

REPO = Path(__file__).resolve().parent.parent
COMMON = ("record", "scenario", "dialect", "n", "concurrency", "processes", "repeat", "seconds", "rate",
          "python", "flywheel", "peewee", "sqlite", "postgres", "commit", "timestamp", "nproc")
MATRIX = {("enqueue", None, None), ("bulk", None, None), ("drain", 1, 1), ("drain", 8, 1), ("drain", 32, 1),
          ("drain", 8, 2), ("latency", 8, 1)}


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    out = tmp_path / "results.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--db", f"sqlite:///{tmp_path}/", *args, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    written = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    assert lines == written, "--out must receive exactly the lines printed to stdout"
    return proc, lines


def test_every_scenario_at_tiny_n_emits_parseable_complete_lines(tmp_path: Path) -> None:
    proc, lines = run_bench(tmp_path, "--scenario", "all", "--n", "6", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [r for r in lines if r["record"] == "error"], proc.stderr[-3000:]

    runs = [r for r in lines if r["record"] == "run"]
    medians = [r for r in lines if r["record"] == "median"]
    assert {(r["scenario"], r["concurrency"], r["processes"]) for r in medians} == MATRIX
    for record in lines:
        missing = [f for f in COMMON if f not in record]
        assert not missing, f"{record['scenario']} line lacks {missing}"
        assert record["dialect"] == "sqlite"
        assert record["n"] == 6
        assert record["postgres"] is None
        assert record["seconds"] > 0
    for record in runs:
        assert record["repeat"] in (0, 1)
        assert record["verified_rows"] == 6
        if record["scenario"] in ("enqueue", "bulk", "drain"):
            assert record["rate"] == pytest.approx(record["n"] / record["seconds"], rel=1e-3)
        if record["scenario"] in ("enqueue", "latency"):
            assert 0 < record["p50_ms"] <= record["p99_ms"]
        if record["scenario"] == "drain":
            assert record["runs_success"] == 6  # exactly one success run per job
        if record["scenario"] == "latency":
            assert 0 < record["db_p50_ms"] <= record["db_p99_ms"]
            for part in ("insert_call", "to_claim", "claim_to_done", "finalize"):
                assert record[f"{part}_p50_ms"] <= record[f"{part}_p99_ms"]
    for record in medians:
        assert record["repeat"] is None
        cell = [r for r in runs if (r["scenario"], r["concurrency"], r["processes"])
                == (record["scenario"], record["concurrency"], record["processes"])]
        assert record["repeats"] == len(cell) == 2
        seconds = sorted(r["seconds"] for r in cell)
        assert seconds[0] <= record["seconds"] <= seconds[-1]

    from bench.report import render

    table = render(lines)
    assert table.startswith("### SQLite ")
    assert table.count("| drain, best concurrency | ≥ 3,000 jobs/s |") == 1


def test_single_scenario_honours_concurrency_and_processes(tmp_path: Path) -> None:
    proc, lines = run_bench(tmp_path, "--scenario", "drain", "--n", "5", "--concurrency", "3",
                            "--processes", "2", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(r["record"], r["concurrency"], r["processes"]) for r in lines] == [("run", 3, 2), ("median", 3, 2)]


def test_hotspots_summarises_collapsed_stacks(tmp_path: Path) -> None:
    from bench.hotspots import parse, summarise

    raw = [
        'process 1:"python -m bench.child";thread (1): MainThread;run (flywheel/runtime/runner.py:10);claim (flywheel/storage/driver.py:5) 3\n',
        'process 1:"python -m bench.child";thread (1): MainThread;run (flywheel/runtime/runner.py:10) 1\n',
        'process 2:"python -m bench";thread (2): MainThread;insert (flywheel/api/client.py:1) 9\n',
    ]
    stacks = parse(raw, "bench.child")
    assert [(t, f, c) for t, f, c in stacks] == [
        ("MainThread", ["run (flywheel/runtime/runner.py)", "claim (flywheel/storage/driver.py)"], 3),
        ("MainThread", ["run (flywheel/runtime/runner.py)"], 1),
    ]
    table = summarise(stacks, top=5, by_thread=False)
    assert "| 100.0 | 25.0 | `run (flywheel/runtime/runner.py)` |" in table
    assert "| 75.0 | 75.0 | `claim (flywheel/storage/driver.py)` |" in table
