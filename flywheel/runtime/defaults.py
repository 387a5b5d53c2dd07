"""The runtime's defaults that config and the CLI read without importing the runner."""

from __future__ import annotations

import os

#: :func:`default_concurrency`'s cap, as ``concurrent.futures.ThreadPoolExecutor``'s
MAX_DEFAULT_CONCURRENCY = 32
#: the most jobs a runner claims beyond its busy workers unless told otherwise (measured:
#: docs/benchmarks.md, "Prefetch and the default concurrency")
DEFAULT_PREFETCH = 256


def default_concurrency() -> int:
    """Worker threads when none is asked for: the usable CPUs + 4, at most 32.

    Jobs are mostly I/O-bound (HTTP calls, queries, subprocesses), so a thread per CPU
    would leave the machine idle; this is the rule ``ThreadPoolExecutor`` uses for the
    same reason (dramatiq runs 8 threads per process, Celery a process per CPU).
    """
    count = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    return min(MAX_DEFAULT_CONCURRENCY, count + 4)


#: ``concurrency``'s default (Runner, RunnerConfig, ``[runtime] concurrency``)
DEFAULT_CONCURRENCY = default_concurrency()
