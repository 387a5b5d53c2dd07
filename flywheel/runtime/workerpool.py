"""The threads a runner runs its workers on: a pool of daemon threads and an asyncio loop."""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any


class WorkerPool:
    """``size`` daemon threads running submitted calls, each in a copy of ``context``.

    Calls wait in a priority heap (lowest key first, then in submission order), so
    prefetched jobs start in the order the claim would have picked them; a claim's
    batch is queued under one lock with one wake-up.
    Not ``concurrent.futures``: its threads are joined at interpreter exit, so one stuck
    job (past a node's drain deadline) would keep the process alive forever.
    """

    def __init__(self, size: int, context: contextvars.Context) -> None:
        self._calls: list[tuple[Any, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._ready = threading.Condition(threading.Lock())
        self._closing = False
        self._seq = itertools.count()
        self._threads = [
            threading.Thread(target=context.copy().run, args=(self._serve,), name=f"flywheel-worker-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, calls: Iterable[tuple[Any, Callable[..., Any], tuple[Any, ...]]]) -> None:
        """Queue ``(key, fn, args)`` calls; each runs as ``fn(*args)`` on a free thread."""
        with self._ready:
            before = len(self._calls)
            for key, fn, args in calls:
                heapq.heappush(self._calls, (key, next(self._seq), fn, args))
            self._ready.notify(len(self._calls) - before)

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._calls:
                    if self._closing:
                        return
                    self._ready.wait()
                _, _, fn, args = heapq.heappop(self._calls)
            fn(*args)

    def shutdown(self) -> None:
        """Let threads end once the queued calls are taken; busy ones end after their call (never waited for)."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()


class EventLoop:
    """An asyncio loop on its own thread, for ``async def`` workers."""

    def __init__(self, context: contextvars.Context) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=context.run, args=(self.loop.run_forever,),
                                       name="flywheel-asyncio", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()
