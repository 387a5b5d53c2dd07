"""Shared fixtures: every database test runs on a fresh SQLite file and a fresh PostgreSQL schema.

PostgreSQL comes from ``FLYWHEEL_TEST_PG_URL`` (default: the local server's
``flywheel_test`` database). When it cannot be reached the PostgreSQL half is skipped,
except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import flywheel

PG_URL = os.environ.get("FLYWHEEL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/flywheel_test")
ON_CI = os.environ.get("CI", "").lower() == "true"
DIALECTS = ["sqlite", "postgres"]


def _pg_admin() -> Any:
    import psycopg2

    return psycopg2.connect(PG_URL, connect_timeout=3)


_pg_error: str | None = None
_pg_checked = False


def pg_available() -> bool:
    global _pg_checked, _pg_error
    if not _pg_checked:
        _pg_checked = True
        try:
            _pg_admin().close()
        except Exception as exc:  # noqa: BLE001
            _pg_error = f"{type(exc).__name__}: {exc}"
    return _pg_error is None


def require_pg() -> None:
    if not pg_available():
        message = f"PostgreSQL unreachable at {PG_URL}: {_pg_error}"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections live in a fresh schema, dropped afterwards."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = _pg_admin()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    conn.close()


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once per dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flywheel.db'}"
    return request.getfixturevalue("pg_schema_url")  # type: ignore[no-any-return]


@pytest.fixture
def db(db_url: str) -> Iterator[flywheel.Database]:
    database = flywheel.connect(db_url)
    flywheel.migrate(database)
    yield database
    database.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[flywheel.Database]:
    database = flywheel.connect(f"sqlite:///{tmp_path / 'flywheel.db'}")
    flywheel.migrate(database)
    yield database
    database.close()


# The suite dogfoods flywheel's own pytest plugin: its fixtures, on the dialect-parametrised ``db``.


@pytest.fixture
def flywheel_db(db: flywheel.Database) -> flywheel.Database:
    return db


@pytest.fixture
def registry(flywheel_registry: flywheel.Registry) -> flywheel.Registry:
    return flywheel_registry


@pytest.fixture
def client(flywheel_client: flywheel.Client) -> flywheel.Client:
    return flywheel_client


@pytest.fixture
def make_runner(flywheel_runner: Callable[..., flywheel.Runner]) -> Callable[..., flywheel.Runner]:
    return flywheel_runner


@pytest.fixture
def clock(flywheel_clock: flywheel.FixedClock) -> flywheel.FixedClock:
    return flywheel_clock
