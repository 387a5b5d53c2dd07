"""The stdin/stdout protocol every runner process of the harness speaks (stdlib only: it is
imported both by the project's virtualenv and by the peers' one).

A worker process prints ``ready`` once it is set up, waits for ``go``, stamps the wall-clock
instant it read it, works, prints ``drained`` when it has recorded ``--expect`` completions,
and on ``stop`` (or end of input) stops gracefully and prints one JSON line::

    {"done": true, "started": <time.time() at go>, "finished": {"<job id>": <time.time()>, ...}}

A completion is stamped where each system considers the job done, after its own write
has committed: flywheel's ``flywheel_on_finish`` observer (after the finalisation commit),
pgqueuer's status-log flush (the job deleted from the queue table and logged), huey's
``SIGNAL_COMPLETE`` (the task returned; a no-op's ``None`` result is not stored).

A producer process enqueues ``--n`` jobs, either all at once (``--paced`` not given) or one
at a time with the latency scenario's random gaps, and prints ``{"enqueued": {id: t0}}``
where ``t0`` is ``time.time()`` just before the enqueue call.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Callable

#: The gap between two enqueues of a paced producer (the latency scenario's, seconds).
GAP_S = (0.050, 0.250)


class Completions:
    """Completion stamps of one worker process; says ``drained`` once ``expect`` were recorded."""

    def __init__(self, expect: int | None) -> None:
        self.finished: dict[str, float] = {}
        self.expect = expect
        self._lock = threading.Lock()
        self._announced = False

    def record(self, job_ids: list[str]) -> None:
        now = time.time()
        with self._lock:
            for job_id in job_ids:
                self.finished[str(job_id)] = now
            if self.expect is not None and not self._announced and len(self.finished) >= self.expect:
                self._announced = True
                say("drained")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wait_for_go() -> float | None:
    """Print ``ready``; return the instant ``go`` was read (None: the harness hung up)."""
    say("ready")
    line = sys.stdin.readline().strip()
    return time.time() if line == "go" else None


def watch_for_stop(on_stop: Callable[[], None]) -> threading.Thread:
    """Call ``on_stop`` when ``stop`` arrives on stdin or stdin closes."""

    def watch() -> None:
        for command in sys.stdin:
            if command.strip() == "stop":
                break
        on_stop()

    thread = threading.Thread(target=watch, name="bench-stdin", daemon=True)
    thread.start()
    return thread


def report_done(started: float, completions: Completions) -> None:
    say(json.dumps({"done": True, "started": started, "finished": completions.finished}))


def paced(n: int, seed: int, enqueue_one: Callable[[int], str]) -> dict[str, float]:
    """Enqueue ``n`` jobs one at a time with random gaps; ``{job id: instant before the call}``."""
    rng = random.Random(seed)
    enqueued: dict[str, float] = {}
    for i in range(n):
        time.sleep(rng.uniform(*GAP_S))
        t0 = time.time()
        enqueued[str(enqueue_one(i))] = t0
    return enqueued
