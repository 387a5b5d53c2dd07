"""The threads a runner runs its workers on: a pool of daemon threads and an asyncio loop."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import queue
import threading
from typing import Any


class WorkerPool:
    """``size`` daemon threads running submitted calls, each in a copy of ``context``.

    Calls wait in a priority queue (lowest key first, then in submission order), so
    prefetched jobs start in the order the claim would have picked them.
    Not ``concurrent.futures``: its threads are joined at interpreter exit, so one stuck
    job (past a node's drain deadline) would keep the process alive forever.
    """

    def __init__(self, size: int, context: contextvars.Context) -> None:
        self._calls: queue.PriorityQueue[tuple[Any, ...]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [
            threading.Thread(target=context.copy().run, args=(self._serve,), name=f"flywheel-worker-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Any, fn: Any, *args: Any) -> None:
        self._calls.put((0, key, next(self._seq), fn, args))

    def _serve(self) -> None:
        while (call := self._calls.get())[0] == 0:
            _, _, _, fn, args = call
            fn(*args)

    def shutdown(self) -> None:
        """Let idle threads end; busy ones end after their call (never waited for)."""
        for _ in self._threads:
            self._calls.put((1, None, next(self._seq), None, None))


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
