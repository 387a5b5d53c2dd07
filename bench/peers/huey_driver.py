"""huey's side of ``python -m bench --peers`` (runs in the peers' virtualenv, never in the project's).

    python bench/peers/huey_driver.py produce --path FILE --n N [--paced --seed K]
    python bench/peers/huey_driver.py worker  --path FILE --workers W [--expect N]

Uses huey's public API as its documentation shows it: ``SqliteHuey(filename=...)`` at its
defaults, a ``@huey.task()`` no-op, calling the task to enqueue it, and the consumer from
``huey.create_consumer(workers=W, worker_type="thread")`` (what ``huey_consumer -w W -k
thread`` builds; its polling settings stay at their defaults). Completions are stamped by a
``SIGNAL_COMPLETE`` handler. See :mod:`protocol` for the process protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from huey import SqliteHuey, signals  # noqa: E402

from protocol import Completions, paced, report_done, say, wait_for_go, watch_for_stop  # noqa: E402


def build(path: str) -> tuple[SqliteHuey, object]:
    huey = SqliteHuey("bench", filename=path)

    @huey.task()
    def bench_noop(n: int) -> None:
        return None

    return huey, bench_noop


def produce(args: argparse.Namespace) -> None:
    huey, task = build(args.path)
    enqueued: dict[str, float] = {}
    if args.paced:
        enqueued = paced(args.n, args.seed, lambda i: task(i).id)  # type: ignore[operator]
    else:
        for i in range(args.n):
            task(i)  # type: ignore[operator]
    say(json.dumps({"enqueued": enqueued}))


def worker(args: argparse.Namespace) -> None:
    huey, _task = build(args.path)
    completions = Completions(args.expect)

    @huey.signal(signals.SIGNAL_COMPLETE)
    def on_complete(signal, task, *rest):  # type: ignore[no-untyped-def]
        completions.record([task.id])

    consumer = huey.create_consumer(workers=args.workers, worker_type="thread")
    started = wait_for_go()
    if started is None:
        return
    stopping = threading.Event()
    watch_for_stop(stopping.set)
    consumer.start()
    stopping.wait()
    consumer.stop(graceful=True)
    report_done(started, completions)


def main() -> int:
    parser = argparse.ArgumentParser(prog="huey_driver")
    parser.add_argument("role", choices=["produce", "worker"])
    parser.add_argument("--path", required=True)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--paced", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--expect", type=int, default=None)
    args = parser.parse_args()
    {"produce": produce, "worker": worker}[args.role](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
