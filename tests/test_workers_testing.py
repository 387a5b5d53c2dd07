"""flywheel.testing: the fake HTTP transport and the clocks, as a user's tests would use them."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flywheel
import flywheel.testing
from flywheel.testing import FakeHTTPTransport, FixedClock, MovableClock
from tests.helpers import wait_for


def test_testing_imports_no_pytest_and_no_http_library():
    tree = ast.parse(Path(flywheel.testing.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"pytest", "http", "urllib", "requests", "socket", "subprocess"}


def test_fixed_clock_is_re_exported():
    assert FixedClock is flywheel.FixedClock


def test_movable_clock_runs_and_jumps():
    start = datetime(2026, 5, 1, tzinfo=UTC)
    clock = MovableClock(start)
    first = clock.now()
    wait_for(lambda: clock.now() > first, timeout=5, what="the clock to run")  # it runs with real time
    assert first >= start
    clock.advance(timedelta(hours=1))
    assert clock.now() - start >= timedelta(hours=1)
    clock.advance(30)
    assert clock.now() - start >= timedelta(hours=1, seconds=30)
    clock.set(datetime(2030, 1, 1))  # naive means UTC
    assert datetime(2030, 1, 1, tzinfo=UTC) <= clock.now() < datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    with flywheel.use_clock(clock):
        assert flywheel.current_clock() is clock


def test_fake_transport_counts_and_records_requests():
    fake = FakeHTTPTransport().stub_url("http://a.test/", 418, "teapot", headers={"X-Y": "z"})

    class Request:
        url = "http://a.test/"

    response = fake.send(Request())
    assert (response.status, response.headers, response.read(3), response.read(100), response.read(1)) == (
        418, {"x-y": "z"}, b"tea", b"pot", b"")
    assert fake.calls() == 1 and isinstance(fake.requests[0], Request)


def test_fake_transport_body_fails_after_its_partial_content():
    fake = FakeHTTPTransport().stub_default_body_read_error(200, ConnectionResetError("cut"), body="abc")

    class Request:
        url = "http://anything.test/"

    response = fake.send(Request())
    assert response.read(10) == b"abc"
    try:
        response.read(10)
    except ConnectionResetError as exc:
        assert str(exc) == "cut"
    else:
        raise AssertionError("the body should have failed mid-read")
