"""pytest fixtures for testing code that uses flywheel (registered under ``pytest11``).

``flywheel_db`` is a migrated database in a fresh SQLite file under ``tmp_path``;
``flywheel_registry`` an empty registry; ``flywheel_client`` a client on that database
and registry; ``flywheel_runner`` a factory for runners on them; ``flywheel_clock`` a
``FixedClock`` in scope for the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import flywheel


@pytest.fixture
def flywheel_db(tmp_path: Path) -> Iterator[flywheel.Database]:
    db = flywheel.connect(f"sqlite:///{tmp_path / 'flywheel-test.db'}")
    flywheel.migrate(db)
    yield db
    db.close()


@pytest.fixture
def flywheel_registry() -> flywheel.Registry:
    return flywheel.Registry()


@pytest.fixture
def flywheel_client(flywheel_db: flywheel.Database, flywheel_registry: flywheel.Registry) -> flywheel.Client:
    return flywheel.Client(flywheel_db, registry=flywheel_registry)


@pytest.fixture
def flywheel_runner(flywheel_db: flywheel.Database,
                    flywheel_registry: flywheel.Registry) -> Callable[..., flywheel.Runner]:
    def make(**options: Any) -> flywheel.Runner:
        options.setdefault("poll_interval", 0.02)
        options.setdefault("retry_backoff_base", 0.01)
        return flywheel.Runner(flywheel_db, flywheel_registry, **options)

    return make


@pytest.fixture
def flywheel_clock() -> Iterator[flywheel.FixedClock]:
    clock = flywheel.FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    with flywheel.use_clock(clock):
        yield clock
