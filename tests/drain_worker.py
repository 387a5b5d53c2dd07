"""A runner process for the multi-process tests: ``python -m tests.drain_worker URL CONCURRENCY``.

Runs no-op jobs until no job is left; logs go to stderr so the test can check that no
error reached them.
"""

from __future__ import annotations

import logging
import sys

import flywheel


def main() -> None:
    url, concurrency = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    db = flywheel.connect(url)
    registry = flywheel.Registry()
    registry.worker("noop")(lambda job: None)
    ran = flywheel.Runner(db, registry, concurrency=concurrency, poll_interval=0.05).run_until_idle(timeout=300)
    print(ran, flush=True)


if __name__ == "__main__":
    main()
