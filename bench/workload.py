"""The no-op job used by every scenario, and the registry that runs it."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

import flywheel

KIND = "bench_noop"
QUEUE = "default"


@attrs.frozen
class Noop:
    """Args of the no-op job: just a sequence number, so payloads are realistic and distinct."""

    kind: ClassVar[str] = KIND
    n: int = 0


class NoopWorker(flywheel.Worker[Noop]):
    """A registered worker whose work returns None."""

    kind = KIND

    def work(self, job: flywheel.Job[Noop]) -> None:
        return None


def make_registry() -> flywheel.Registry:
    registry = flywheel.Registry()
    registry.register(NoopWorker())
    return registry


def noop_args(count: int, start: int = 0) -> list[Any]:
    return [Noop(n=i) for i in range(start, start + count)]
