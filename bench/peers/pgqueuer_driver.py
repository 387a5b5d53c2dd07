"""pgqueuer's side of ``python -m bench --peers`` (runs in the peers' virtualenv, never in the project's).

    python bench/peers/pgqueuer_driver.py install --dsn URL --schema S
    python bench/peers/pgqueuer_driver.py produce --dsn URL --schema S --n N [--paced --seed K]
    python bench/peers/pgqueuer_driver.py worker  --dsn URL --schema S [--concurrency C] [--expect N]

Uses pgqueuer's public API as its documentation shows it: an ``asyncpg`` connection per
process, ``Queries.install()``, ``Queries.enqueue()`` (lists for a batch), a
``QueueManager`` with one async no-op entrypoint and ``QueueManager.run()`` at its defaults
(``batch_size=10``, no ``max_concurrent_tasks``: as many jobs at once as it picks).
``--concurrency C`` caps the worker at C jobs picked at once — ``max_concurrent_tasks=C``
with ``batch_size=C // 2`` (pgqueuer requires the cap to be at least twice the batch; at
C=1 that means batch 1, cap 2). The entrypoint's own ``concurrency_limit`` is not used: it
counts a finished job until its status-log flush, which made it dispatch ~9 jobs/s at
limit 1 here. The objects live in the schema ``S``
(``search_path``). See :mod:`protocol` for the process protocol and when a job counts as done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import asyncpg  # noqa: E402
from pgqueuer import AsyncpgDriver, Job, QueueManager, Queries  # noqa: E402

from protocol import Completions, paced, report_done, say, wait_for_go, watch_for_stop  # noqa: E402

ENTRYPOINT = "bench_noop"


async def connect(args: argparse.Namespace) -> asyncpg.Connection:
    return await asyncpg.connect(args.dsn, server_settings={"search_path": args.schema})


async def install(args: argparse.Namespace) -> None:
    conn = await connect(args)
    await Queries(AsyncpgDriver(conn)).install()
    await conn.close()


async def produce(args: argparse.Namespace) -> None:
    conn = await connect(args)
    queries = Queries(AsyncpgDriver(conn))
    enqueued: dict[str, float] = {}
    if args.paced:
        loop = asyncio.get_running_loop()

        def one(i: int) -> str:  # paced() sleeps and stamps in a thread; the enqueue runs on the loop
            return str(asyncio.run_coroutine_threadsafe(
                queries.enqueue(ENTRYPOINT, str(i).encode()), loop).result()[0])

        enqueued = await asyncio.to_thread(paced, args.n, args.seed, one)
    else:
        for start in range(0, args.n, 1000):
            count = min(1000, args.n - start)
            await queries.enqueue([ENTRYPOINT] * count, [str(i).encode() for i in range(start, start + count)],
                                  [0] * count)
    await conn.close()
    say(json.dumps({"enqueued": enqueued}))


class StampedQueries(Queries):
    """pgqueuer's Queries, stamping each job when the flush that logs it as done has returned."""

    completions: Completions

    async def log_jobs(self, job_status):  # type: ignore[no-untyped-def]
        await super().log_jobs(job_status)
        self.completions.record([str(job.id) for job, _status, _tb in job_status])


async def worker(args: argparse.Namespace) -> None:
    conn = await connect(args)
    queries = StampedQueries(AsyncpgDriver(conn))
    queries.completions = completions = Completions(args.expect)
    qm = QueueManager(queries)
    run_options = {}
    if args.concurrency is not None:
        # The worker's own cap: max_concurrent_tasks must be at least twice batch_size.
        batch = max(1, args.concurrency // 2)
        run_options = {"batch_size": batch, "max_concurrent_tasks": max(2 * batch, args.concurrency)}

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        return None

    started = await asyncio.to_thread(wait_for_go)
    if started is None:
        return
    loop = asyncio.get_running_loop()
    watch_for_stop(lambda: loop.call_soon_threadsafe(qm.shutdown.set))
    await qm.run(**run_options)
    await conn.close()
    report_done(started, completions)


def main() -> int:
    parser = argparse.ArgumentParser(prog="pgqueuer_driver")
    parser.add_argument("role", choices=["install", "produce", "worker"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--paced", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--expect", type=int, default=None)
    args = parser.parse_args()
    asyncio.run({"install": install, "produce": produce, "worker": worker}[args.role](args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
