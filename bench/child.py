"""A runner process driven by the harness over stdin/stdout.

``python -m bench.child --db URL --concurrency C [--poll-interval S] [--record-finish [--expect N]]``

It connects, builds its Runner, prints ``ready`` and waits for ``go`` on stdin, so
imports and connection set-up are not timed. It runs until ``stop`` (or end of input),
lets the runner finish its in-flight work, and prints ``done`` as a JSON line; with
``--record-finish`` that line carries, per job id, the wall-clock instant at which the
job's finalisation had committed (taken in a ``flywheel_on_finish`` observer), and
``started``, the instant ``go`` was read; with ``--expect N`` it prints ``drained`` once N
jobs have finished. This is the protocol of :mod:`bench.peers.protocol`, which the peers'
runner processes speak too.

With ``FLYWHEEL_BENCH_OBSERVE=1`` in its environment it also logs through the ``logging``
plugin at INFO (text, to stderr) and records metrics with a Prometheus observer, to
measure their overhead against a run with ``FLYWHEEL_DISABLE_PLUGINS=logging,prometheus``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import flywheel
from flywheel.plugins import register

from bench.workload import QUEUE, make_registry


class FinishRecorder:
    """An observer plugin: when each job's finalisation committed (time.time())."""

    def __init__(self, expect: int | None = None) -> None:
        self.finished: dict[str, float] = {}
        self.expect = expect

    @flywheel.hookimpl
    def flywheel_on_finish(self, event: Any) -> None:
        self.finished[event.job_id] = time.time()
        if self.expect is not None and len(self.finished) == self.expect:
            print("drained", flush=True)  # --expect jobs are done (the harness then says stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("--db", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds; default: the Runner's")
    parser.add_argument("--record-finish", action="store_true")
    parser.add_argument("--expect", type=int, default=None,
                        help="with --record-finish: print 'drained' once this many jobs have finished")
    args = parser.parse_args(argv)

    if os.environ.get("FLYWHEEL_BENCH_OBSERVE"):  # observers' overhead (issue 9): logging at INFO + Prometheus
        from flywheel_plugins.log_observer import configure
        from flywheel_plugins.prometheus import PrometheusObserver

        configure("info", "text")
        register(PrometheusObserver(), name="bench-prometheus")
    recorder = None
    if args.record_finish:
        recorder = FinishRecorder(args.expect)
        register(recorder, name="bench-finish-recorder")
    db = flywheel.connect(args.db)
    options: dict[str, Any] = {"queues": (QUEUE,), "concurrency": args.concurrency}
    if args.poll_interval is not None:
        options["poll_interval"] = args.poll_interval
    if os.environ.get("FLYWHEEL_BENCH_PREFETCH"):  # prefetch off vs on (issue 13); default: the Runner's
        options["prefetch"] = int(os.environ["FLYWHEEL_BENCH_PREFETCH"])
    runner = flywheel.Runner(db, make_registry(), **options)
    flywheel.count_active_jobs(db)  # opens this thread's connection before the clock starts

    print("ready", flush=True)
    line = sys.stdin.readline().strip()
    if line != "go":
        return 0
    started = time.time()
    stop = threading.Event()

    def watch_stdin() -> None:
        for command in sys.stdin:
            if command.strip() == "stop":
                break
        stop.set()
        runner.stop()

    threading.Thread(target=watch_stdin, name="bench-stdin", daemon=True).start()
    runner.run(stop)
    done: dict[str, Any] = {"done": True, "started": started}
    if recorder is not None:
        done["finished"] = recorder.finished
    sys.stdout.write(json.dumps(done) + "\n")
    sys.stdout.flush()
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
