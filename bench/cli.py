"""Command line of the harness.

    python -m bench --db URL --scenario {enqueue,bulk,drain,latency,all}
                    [--n N] [--concurrency C] [--processes P] [--repeat R] [--out FILE]
    python -m bench --db URL --peers [--n N] [--rounds R] [--latency-n L] [--out FILE]

Prints one JSON object per line: a ``"record": "run"`` line per repeat, then a
``"record": "median"`` line per configuration with the medians of its repeats.
``--scenario all`` runs the standard matrix: enqueue; bulk; drain at concurrency 1, 8
and 32 in one process and at 2 processes x concurrency 8; latency at concurrency 8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any

from bench import env
from bench.scenarios import DEFAULT_N, DEFAULT_REPEAT, SCENARIOS, median_of

#: (scenario, concurrency, processes) of ``--scenario all``
MATRIX: tuple[tuple[str, int | None, int | None], ...] = (
    ("enqueue", None, None),
    ("bulk", None, None),
    ("drain", 1, 1),
    ("drain", 8, 1),
    ("drain", 32, 1),
    ("drain", 8, 2),
    ("latency", 8, 1),
)
DEFAULT_CONCURRENCY = {"drain": 8, "latency": 8}
MEDIAN_FIELDS = ("seconds", "rate", "raw_rate", "raw_ratio", "p50_ms", "p99_ms", "max_ms", "db_p50_ms", "db_p99_ms", "db_span_s",
                 *(f"{part}_{q}_ms" for part in ("insert_call", "to_claim", "claim_to_done", "finalize")
                   for q in ("p50", "p99")))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite:",
                        help="sqlite: (fresh temp files) or postgresql://user@host:port/db (fresh schemas)")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], help="required unless --peers")
    parser.add_argument("--peers", action="store_true",
                        help="compare with pgqueuer (PostgreSQL --db) or huey (SQLite --db), installed into "
                             "bench/.peers-venv; round by round, see bench.peers.run")
    parser.add_argument("--rounds", type=int, default=3, help="--peers: interleaved rounds (default 3)")
    parser.add_argument("--latency-n", type=int, default=100,
                        help="--peers: latency samples per system and setting (default 100; 0 skips latency)")
    parser.add_argument("--n", type=int, default=None,
                        help="jobs per measurement (default: enqueue 10000, bulk 100000, drain 20000, latency 200)")
    parser.add_argument("--concurrency", type=int, default=None, help="runner concurrency (drain, latency)")
    parser.add_argument("--processes", type=int, default=None, help="runner processes (drain)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per configuration (default 3; latency 1)")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--seed", type=int, default=1, help="seed of the latency scenario's gaps")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="latency: the runner's poll interval in seconds (default: the Runner's, 250 ms)")
    parser.add_argument("--max-cell-seconds", type=float, default=180.0,
                        help="stop repeating a configuration once its repeats have taken this long "
                             "(the median line says how many ran); default 180")
    parser.add_argument("--tag", default=None, help="free text stored in every line (e.g. a variant name)")
    args = parser.parse_args(argv)
    if not args.peers and args.scenario is None:
        parser.error("--scenario is required (or --peers)")
    if args.rounds < 1 or args.latency_n < 0:
        parser.error("--rounds must be at least 1 and --latency-n not negative")
    for name in ("n", "concurrency", "processes", "repeat"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, int | None, int | None]]:
    if args.scenario == "all":
        return list(MATRIX)
    concurrency = args.concurrency
    processes = args.processes
    if args.scenario in ("drain", "latency"):
        concurrency = concurrency or DEFAULT_CONCURRENCY[args.scenario]
        processes = 1 if args.scenario == "latency" else (processes or 1)
    return [(args.scenario, concurrency, processes)]


class Sink:
    def __init__(self, path: str | None) -> None:
        self.file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dialect = env.dialect_of(args.db)
    common = {"dialect": dialect, **env.versions(args.db), "commit": env.git_commit(), **env.machine()}
    if args.tag:
        common["tag"] = args.tag
    if args.peers:
        from bench.peers import run as peers

        sink = Sink(args.out or peers.default_out(dialect, common["commit"]))
        try:
            return 1 if peers.run(args.db, n=args.n or 20_000, rounds=args.rounds, latency_n=args.latency_n,
                                  sink=sink, common=common) else 0
        finally:
            sink.close()
    sink = Sink(args.out)
    failures = 0
    try:
        for scenario, concurrency, processes in plan(args):
            n = args.n or DEFAULT_N[scenario]
            repeats = args.repeat or DEFAULT_REPEAT[scenario]
            head = {"scenario": scenario, "n": n, "concurrency": concurrency, "processes": processes}
            runs: list[dict[str, Any]] = []
            cell_started = time.time()
            for index in range(repeats):
                if index and time.time() - cell_started > args.max_cell_seconds:
                    print(f"bench: {scenario} {head}: {index} of {repeats} repeats ran within "
                          f"--max-cell-seconds={args.max_cell_seconds:g}", file=sys.stderr)
                    break
                started = time.time()
                load_before, cpu_before = os.getloadavg()[0], env.cpu_snapshot()
                try:
                    measured = SCENARIOS[scenario](args.db, n=n, concurrency=concurrency or 1,
                                                   processes=processes or 1, seed=args.seed + index,
                                                   poll_interval=args.poll_interval)
                except Exception as exc:  # noqa: BLE001 - one failed cell must not hide the rest
                    failures += 1
                    traceback.print_exc(file=sys.stderr)
                    sink.write({"record": "error", **head, "repeat": index, "error": str(exc).splitlines()[0],
                                "timestamp": env.now_iso(), **common})
                    continue
                measured = {k: _round(v) if isinstance(v, float) else v for k, v in measured.items()}
                record = {"record": "run", **head, "repeat": index, **measured, "timestamp": env.now_iso(),
                          "wall_s": round(time.time() - started, 3), **env.noise(cpu_before, load_before), **common}
                runs.append(record)
                sink.write(record)
            if runs:
                medians = {f: _round(median_of([r.get(f) for r in runs])) for f in MEDIAN_FIELDS
                           if any(f in r for r in runs)}
                sink.write({"record": "median", **head, "repeat": None, "repeats": len(runs),
                            "repeats_planned": repeats, **medians,
                            "timestamp": env.now_iso(), **common})
    finally:
        sink.close()
    return 1 if failures else 0


def _round(value: float | None) -> float | None:
    """Seven significant digits: enough for a tiny run's seconds, no noise digits for a rate."""
    return None if value is None else float(f"{value:.7g}")
