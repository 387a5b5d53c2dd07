"""Workers, the registry, and typed args that survive the round trip through the database."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

import attrs
import pytest

import flywheel


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Address:
    street: str
    city: str


@attrs.frozen
class Order:
    kind: ClassVar[str] = "order"
    id: int
    ship_to: Address
    placed_at: datetime
    colour: Colour
    note: str | None = None
    lines: list[Address] = attrs.field(factory=list)


@dataclasses.dataclass
class Thumb:
    kind: ClassVar[str] = "thumb"
    path: str
    sizes: list[int]


def test_attrs_args_round_trip_through_the_database(db, registry, client, make_runner):
    received: list[Order] = []

    class OrderWorker(flywheel.Worker[Order]):
        kind = "order"

        def work(self, job: flywheel.Job[Order]) -> None:
            received.append(job.args)

    registry.register(OrderWorker())
    sent = Order(id=7, ship_to=Address("1 Main St", "Springfield"), placed_at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
                 colour=Colour.BLUE, lines=[Address("a", "b")])
    client.insert(sent)
    make_runner().run_until_idle(timeout=10)
    assert received == [sent]
    assert isinstance(received[0].ship_to, Address) and received[0].colour is Colour.BLUE


def test_function_workers_take_their_args_type_from_the_annotation(db, registry, client, make_runner):
    seen: list[Any] = []

    @registry.worker("thumb")
    def thumb(job: flywheel.Job[Thumb]) -> None:
        seen.append(job.args)

    @registry.worker("raw")
    def raw(job) -> None:  # no annotation: the args arrive as a dict
        seen.append(job.args)

    client.insert(Thumb(path="a.png", sizes=[64, 128]))
    client.enqueue("raw", {"any": ["json", 1]})
    make_runner().run_until_idle(timeout=10)
    assert Thumb(path="a.png", sizes=[64, 128]) in seen and {"any": ["json", 1]} in seen


def test_async_workers_run_on_the_runners_event_loop(db, registry, client, make_runner):
    import asyncio
    import threading

    loops: set[int] = set()
    threads: set[str] = set()

    @registry.worker("thumb")
    async def thumb(job: flywheel.Job[Thumb]) -> flywheel.Result:
        await asyncio.sleep(0.01)
        loops.add(id(asyncio.get_running_loop()))
        threads.add(threading.current_thread().name)
        return flywheel.Result(output={"request": flywheel.request_id()})

    with flywheel.request_id_scope("r-async"):
        job_id = client.insert(Thumb(path="x", sizes=[]))
    for _ in range(3):
        client.insert(Thumb(path="y", sizes=[]))
    make_runner(concurrency=4).run_until_idle(timeout=10)
    assert len(loops) == 1 and threads == {"flywheel-asyncio"}
    assert flywheel.list_runs(db, job_id)[0].output == {"request": "r-async"}


def test_request_id_reaches_sync_workers_and_their_logger(db, registry, client, make_runner):
    seen = {}

    @registry.worker("thumb")
    def thumb(job: flywheel.Job[Thumb]) -> None:
        seen["scope"] = flywheel.request_id()
        seen["job"] = job.request_id
        seen["extra"] = job.logger.extra

    with flywheel.request_id_scope("r-sync"):
        job_id = client.insert(Thumb(path="x", sizes=[]))
    make_runner().run_until_idle(timeout=10)
    assert seen["scope"] == seen["job"] == "r-sync"
    assert seen["extra"]["job_id"] == job_id and seen["extra"]["request_id"] == "r-sync"


def test_a_duplicate_kind_raises_at_registration(registry):
    registry.worker("thumb")(lambda job: None)
    with pytest.raises(flywheel.DuplicateKind, match="thumb"):
        registry.worker("thumb")(lambda job: None)


def test_a_worker_needs_a_kind(registry):
    class Nameless:
        def work(self, job):
            return None

    with pytest.raises(flywheel.ValidationError, match="kind"):
        registry.register(Nameless())


def test_worker_plugins_register_their_kinds():
    class Plugin:
        @flywheel.hookimpl
        def flywheel_register_workers(self, registry):
            registry.worker("from-plugin")(lambda job: None)

    pm = flywheel.plugins.make_plugin_manager(plugins=[Plugin()])
    assert "from-plugin" in flywheel.Registry().load_plugins(pm)


def test_a_worker_returning_something_else_fails_the_attempt(db, registry, client, make_runner):
    @registry.worker("thumb")
    def thumb(job: flywheel.Job[Thumb]) -> Any:
        return 42

    job_id = client.insert(Thumb(path="x", sizes=[]), max_attempts=1)
    make_runner().run_until_idle(timeout=10)
    [run] = flywheel.list_runs(db, job_id)
    assert run.outcome == "error" and "must return a flywheel.Result" in (run.error or "")


def test_unstorable_output_is_a_permanent_failure_not_a_stuck_job(db, registry, client, make_runner):
    @registry.worker("thumb")
    def thumb(job: flywheel.Job[Thumb]) -> flywheel.Result:
        return flywheel.Result(output={"bad": object()})

    job_id = client.insert(Thumb(path="x", sizes=[]))
    make_runner().run_until_idle(timeout=10)
    assert flywheel.find_job(db, job_id).state == "discarded"
    [run] = flywheel.list_runs(db, job_id)
    assert run.error_class == "permanent" and "cannot be stored" in (run.error or "")
