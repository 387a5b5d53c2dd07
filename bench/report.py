"""Render harness output as the Markdown tables of docs/benchmarks.md.

    python -m bench.report results/sqlite.jsonl results/postgres.jsonl

Reads the ``"record": "run"`` lines (medians are taken over every run of a configuration,
so several files of one commit merge); prints, per dialect and commit, the
issue's targets against the measured medians (with the spread of the repeats), then every
drain configuration.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from typing import Any

#: (dialect, measure) -> (field, comparison, target, label)
TARGETS: dict[tuple[str, str], list[tuple[str, str, float]]] = {
    ("postgres", "enqueue"): [("rate", ">=", 2_000)],
    ("sqlite", "enqueue"): [("rate", ">=", 5_000)],
    ("postgres", "bulk"): [("rate", ">=", 40_000)],
    ("sqlite", "bulk"): [("rate", ">=", 100_000)],
    ("postgres", "drain"): [("rate", ">=", 4_000)],
    ("sqlite", "drain"): [("rate", ">=", 3_000)],
    ("postgres", "latency"): [("p50_ms", "<=", 5), ("p99_ms", "<=", 15)],
    ("sqlite", "latency"): [("p50_ms", "<=", 10)],
}
LABELS = {"enqueue": "enqueue, one job per call", "bulk": "bulk enqueue (`insert_many`)",
          "drain": "drain, best concurrency", "latency": "enqueue→done latency, idle runner"}
UNITS = {"rate": "jobs/s", "p50_ms": "ms p50", "p99_ms": "ms p99"}


def load(paths: list[str]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            records += [json.loads(line) for line in fh if line.strip()]
    return records


def _fmt(value: float | None, field: str) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if field == "rate" else f"{value:.1f}"


def _cell(record: dict[str, Any]) -> str:
    if record["scenario"] in ("drain", "latency"):
        return f"{record['processes']} × {record['concurrency']}"
    return "1 × 1"


def render(records: list[dict[str, Any]]) -> str:
    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["record"] == "run":
            runs[(r["dialect"], r.get("commit"), r["scenario"], r["concurrency"], r["processes"])].append(r)
    # medians over every run of a configuration, so several invocations (files) merge
    medians: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, cell in runs.items():
        merged = dict(cell[0])
        for field in set().union(*cell):
            values = [r[field] for r in cell if isinstance(r.get(field), (int, float))
                      and not isinstance(r.get(field), bool)]
            if values and field not in ("n", "concurrency", "processes", "repeat", "nproc"):
                merged[field] = statistics.median(values)
        medians[key] = merged
    out: list[str] = []
    sections = sorted({(k[0], k[1]) for k in medians}, key=lambda dc: (dc[0] != "postgres", str(dc[1])))
    for dialect, commit in sections:
        cells = {k: v for k, v in medians.items() if k[:2] == (dialect, commit)}
        sample = next(iter(cells.values()))
        name = ("PostgreSQL " + str(sample.get("postgres")).split()[0] if dialect == "postgres"
                else "SQLite " + sample["sqlite"])
        out.append(f"\n### {name} (commit {sample.get('commit')})\n")
        out.append("| measure | target | measured (median) | repeats (min–max) | config | met |")
        out.append("|---|---|---|---|---|---|")
        for scenario in ("enqueue", "bulk", "drain", "latency"):
            candidates = [m for k, m in cells.items() if k[2] == scenario]
            if not candidates:
                continue
            best = max(candidates, key=lambda m: m.get("rate") or 0) if scenario == "drain" else candidates[0]
            key = (dialect, commit, scenario, best["concurrency"], best["processes"])
            for field, op, target in TARGETS[(dialect, scenario)]:
                value = best.get(field)
                values = [r.get(field) for r in runs[key] if r.get(field) is not None]
                spread = f"{_fmt(min(values), field)}–{_fmt(max(values), field)} ({len(values)})" if values else "–"
                met = value is not None and (value >= target if op == ">=" else value <= target)
                out.append(f"| {LABELS[scenario]} | {op.replace('>=', '≥').replace('<=', '≤')} {_fmt(target, field)} "
                           f"{UNITS[field]} | **{_fmt(value, field)}** {UNITS[field]} | {spread} | {_cell(best)} "
                           f"| {'yes' if met else 'no'} |")
        drains = sorted((m for k, m in cells.items() if k[2] == "drain"),
                        key=lambda m: (m["processes"], m["concurrency"]))
        if drains:
            out.append("\nDrain of 20,000 no-op jobs per configuration (processes × concurrency):\n")
            out.append("| config | jobs/s (median) | repeats jobs/s | seconds (median) |")
            out.append("|---|---|---|---|")
            for m in drains:
                key = (dialect, commit, "drain", m["concurrency"], m["processes"])
                rates = ", ".join(f"{r['rate']:,.0f}" for r in runs[key])
                out.append(f"| {_cell(m)} | {m['rate']:,.0f} | {rates} | {m['seconds']:.2f} |")
        lat = [m for k, m in cells.items() if k[2] == "latency"]
        for m in lat:
            out.append(f"\nLatency detail ({m['n']} samples): enqueue call → finalisation committed p50 "
                       f"{_fmt(m.get('p50_ms'), 'p50_ms')} ms, p99 {_fmt(m.get('p99_ms'), 'p99_ms')} ms, max "
                       f"{_fmt(m.get('max_ms'), 'p99_ms')} ms; from the database alone (`jobs.created_at` → success "
                       f"run `finished_at`) p50 {_fmt(m.get('db_p50_ms'), 'p50_ms')} ms, p99 "
                       f"{_fmt(m.get('db_p99_ms'), 'p99_ms')} ms.")
            if m.get("to_claim_p50_ms") is not None:
                parts = [("`Client.insert` call", "insert_call"), ("created → claim issued (commit + wake-up)", "to_claim"),
                         ("claim issued → work done (claim statement, hand-off, no-op)", "claim_to_done"),
                         ("work done → finalisation committed", "finalize")]
                out.append("\n| latency part | p50 ms | p99 ms |\n|---|---|---|")
                out += [f"| {label} | {_fmt(m.get(f'{key}_p50_ms'), 'p50_ms')} | {_fmt(m.get(f'{key}_p99_ms'), 'p99_ms')} |"
                        for label, key in parts]
    return "\n".join(out).lstrip("\n")


def render_by_tag(records: list[dict[str, Any]]) -> str:
    """Runs grouped by ``--tag`` (e.g. before / after a change, interleaved in one session): per
    dialect and scenario, the median rate of each tag with its repeats, and the raw baseline's
    ratio where the enqueue scenario measured it."""
    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["record"] == "run" and r["scenario"] in ("enqueue", "bulk"):
            runs[(r["dialect"], r["scenario"], r.get("tag") or "")].append(r)
    out = ["| dialect | scenario | tag | jobs/s (median) | repeats jobs/s | vs raw psycopg2 (median; repeats) "
           "| load1 before |", "|---|---|---|---|---|---|---|"]
    for (dialect, scenario, tag), cell in sorted(runs.items()):
        rates = [r["rate"] for r in cell]
        ratios = [r["raw_ratio"] for r in cell if r.get("raw_ratio") is not None]
        raw = (f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})" if ratios else "–")
        loads = ", ".join(f"{r['load1_before']:.1f}" for r in cell if r.get("load1_before") is not None)
        out.append(f"| {dialect} | {scenario} | {tag} | **{statistics.median(rates):,.0f}** "
                   f"| {', '.join(f'{x:,.0f}' for x in rates)} | {raw} | {loads} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--by-tag", action="store_true",
                        help="enqueue and bulk runs grouped by their --tag (before/after comparisons)")
    args = parser.parse_args(argv)
    records = load(args.files)
    print(render_by_tag(records) if args.by_tag else render(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
