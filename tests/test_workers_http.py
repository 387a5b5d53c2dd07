"""The http worker: against a real HTTP server on loopback through a real Runner (both
dialects), and against ``flywheel.testing.FakeHTTPTransport`` for the unit cases."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import flywheel
from flywheel.testing import FakeHTTPTransport, FixedClock
from flywheel_plugins.workers.base import RetryLater, WorkerFailure
from flywheel_plugins.workers.http import HTTPArgs, HTTPWorker
from tests.helpers import run_job
from tests.helpers import run_output as output


class Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._route()

    def do_POST(self) -> None:  # noqa: N802
        self._route()

    def _route(self) -> None:
        path = self.path
        count = Handler.hits[path] = Handler.hits.get(path, 0) + 1
        if path == "/ok":
            self._reply(200, b"hello")
        elif path == "/no-content":
            self._reply(204, b"")
        elif path == "/missing":
            self._reply(404, b"no such thing")
        elif path == "/busy":  # busy once, then fine
            if count == 1:
                self._reply(503, b"come back later", {"Retry-After": "2"})
            else:
                self._reply(200, b"recovered")
        elif path == "/slow":
            time.sleep(3)
            self._reply(200, b"too late")
        elif path == "/to-same-host":
            self._reply(302, b"", {"Location": "/ok"})
        elif path == "/to-other-host":
            self._reply(302, b"", {"Location": f"http://localhost:{self.server.server_address[1]}/ok"})
        elif path == "/echo":
            length = int(self.headers.get("Content-Length") or 0)
            payload = {"method": self.command, "header": self.headers.get("X-Token"),
                       "body": self.rfile.read(length).decode()}
            self._reply(200, json.dumps(payload).encode())
        else:
            self._reply(500, b"unknown route")

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False  # the slow handler must not hold up the test's end
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def http_worker(registry: flywheel.Registry) -> HTTPWorker:
    return registry.register(HTTPWorker())  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# A real server on loopback, a real Runner, both dialects
# ---------------------------------------------------------------------------


def test_200_succeeds_with_status_and_body(db, client, make_runner, http_worker, server):
    job, runs = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/ok"))
    assert job.state == "succeeded"
    assert {k: output(runs[0])[k] for k in ("status", "body", "truncated")} == {
        "status": 200, "body": "hello", "truncated": False}


def test_204_succeeds_when_listed_in_success_status(db, client, make_runner, http_worker, server):
    job, runs = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/no-content", success_status=[204]))
    assert (job.state, output(runs[0])["status"]) == ("succeeded", 204)


def test_200_fails_when_success_status_asks_for_another(db, client, make_runner, http_worker, server):
    job, runs = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/ok", success_status=[201]),
                        max_attempts=1)
    assert (job.state, runs[0].error_class) == ("discarded", "transient")


def test_404_is_permanent_and_keeps_the_response(db, client, make_runner, http_worker, server):
    job, runs = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/missing"))
    assert job.state == "discarded"
    assert [(r.outcome, r.error_class) for r in runs] == [("error", "permanent")]
    assert "returned status 404" in runs[0].error
    assert (output(runs[0])["status"], output(runs[0])["body"]) == (404, "no such thing")


def test_503_with_retry_after_snoozes_for_that_long(db, client, make_runner, http_worker, server):
    job_id = client.insert(HTTPArgs(url=f"{server}/busy"))
    make_runner().run_available()
    first = flywheel.list_runs(db, job_id)[0]
    job = flywheel.find_job(db, job_id)
    assert (first.outcome, job.state) == ("snooze", "scheduled")
    assert job.scheduled_at - first.finished_at == timedelta(seconds=2)
    assert output(first)["status"] == 503
    make_runner().run_until_idle(timeout=30)
    runs = list(reversed(flywheel.list_runs(db, job_id)))
    assert [r.outcome for r in runs] == ["snooze", "success"]
    assert runs[1].started_at - runs[0].finished_at >= timedelta(seconds=1.9)
    assert flywheel.find_job(db, job_id).state == "succeeded"


def test_connection_refused_is_transient(db, client, make_runner, http_worker):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job, runs = run_job(db, client, make_runner, HTTPArgs(url=f"http://127.0.0.1:{port}/"), max_attempts=2)
    assert [(r.outcome, r.error_class) for r in runs] == [("error", "transient")] * 2
    assert "Connection refused" in runs[0].error or "refused" in runs[0].error.lower()


def test_a_slow_server_times_out(db, client, make_runner, http_worker, server):
    job, runs = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/slow", timeout_seconds=0.5),
                        max_attempts=1)
    assert (job.state, runs[0].outcome, runs[0].error_class) == ("discarded", "timeout", "timeout")
    assert "timed out after" in runs[0].error


def test_method_headers_and_body_are_sent(db, client, make_runner, http_worker, server):
    args = HTTPArgs(method="post", url=f"{server}/echo", headers={"X-Token": "t0k"}, body='{"a":1}')
    job, runs = run_job(db, client, make_runner, args)
    assert json.loads(output(runs[0])["body"]) == {"method": "POST", "header": "t0k", "body": '{"a":1}'}


def test_redirects_stay_on_the_same_host_unless_asked(db, client, make_runner, http_worker, server):
    _, same = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/to-same-host"))
    _, other = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/to-other-host"))
    _, allowed = run_job(db, client, make_runner, HTTPArgs(url=f"{server}/to-other-host", follow_redirects=True))
    assert output(same[0])["body"] == "hello"
    assert (other[0].error_class, output(other[0])["status"]) == ("permanent", 302)
    assert "follow_redirects" in other[0].error
    assert output(allowed[0])["body"] == "hello"


# ---------------------------------------------------------------------------
# The fake transport: unit cases, no database, no network
# ---------------------------------------------------------------------------

URL = "https://api.example.test/ping"


def make_job(args: HTTPArgs) -> flywheel.Job[HTTPArgs]:
    return flywheel.Job(id="j1", kind="http", queue="default", args=args, attempt=1, max_attempts=25,
                        parent_job_id=None, enqueued_at=datetime.now(UTC), tags=[], run_id="r1", request_id=None,
                        logger=logging.LoggerAdapter(logging.getLogger("test"), {}))


def fail(worker: HTTPWorker, args: HTTPArgs) -> BaseException:
    with pytest.raises(Exception) as info:
        worker.work(make_job(args))
    return info.value


def test_fake_stubbed_url_and_default_reply():
    fake = FakeHTTPTransport().stub_url(URL, 201, "made").stub_default(202, "anything else")
    worker = HTTPWorker(transport=fake)
    assert worker.work(make_job(HTTPArgs(url=URL))).output["body"] == "made"
    assert worker.work(make_job(HTTPArgs(url=URL + "?x"))).output["status"] == 202
    assert fake.calls() == 2


def test_fake_unstubbed_gets_200_empty():
    result = HTTPWorker(transport=FakeHTTPTransport()).work(make_job(HTTPArgs(url=URL)))
    assert (result.output["status"], result.output["body"]) == (200, "")


def test_request_carries_method_headers_body_and_timeout():
    fake = FakeHTTPTransport()
    HTTPWorker(transport=fake).work(make_job(HTTPArgs(method="put", url=URL, headers={"A": "b"}, body="x",
                                                      timeout_seconds=7)))
    sent = fake.requests[0]
    assert (sent.method, sent.url, dict(sent.headers), sent.body, sent.timeout) == ("PUT", URL, {"A": "b"}, b"x", 7)


@pytest.mark.parametrize(("status", "error_class"), [
    (400, "permanent"), (401, "permanent"), (404, "permanent"), (422, "permanent"), (301, "permanent"),
    (408, "transient"), (429, "transient"), (500, "transient"), (502, "transient"), (503, "transient"),
])
def test_status_classification(status, error_class):
    worker = HTTPWorker(transport=FakeHTTPTransport().stub_default(status, "why"))
    exc = fail(worker, HTTPArgs(url=URL))
    assert isinstance(exc, WorkerFailure)
    assert worker.classify(exc) == error_class
    assert exc.output["status"] == status and exc.output["body"] == "why"


def test_transport_error_is_transient_without_output():
    worker = HTTPWorker(transport=FakeHTTPTransport().stub_error(URL, ConnectionResetError("reset by peer")))
    exc = fail(worker, HTTPArgs(url=URL))
    assert worker.classify(exc) == "transient" and exc.output is None
    assert str(exc) == f"http: GET {URL}: ConnectionResetError: reset by peer"


def test_transport_timeout_is_timeout():
    worker = HTTPWorker(transport=FakeHTTPTransport().stub_error(URL, TimeoutError("slow")))
    assert worker.classify(fail(worker, HTTPArgs(url=URL, timeout_seconds=1))) == "timeout"


def test_body_failing_mid_read_is_transient():
    fake = FakeHTTPTransport().stub_body_read_error(URL, 200, ConnectionResetError("eof"), body="partial")
    worker = HTTPWorker(transport=fake)
    exc = fail(worker, HTTPArgs(url=URL))
    assert worker.classify(exc) == "transient"
    assert str(exc).startswith(f"http: read body from {URL}: ConnectionResetError")
    fake.stub_default_body_read_error(200, OSError("boom"))
    assert "boom" in str(fail(worker, HTTPArgs(url=URL + "/other")))


def test_retry_after_as_an_http_date_snoozes_until_then():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    fake = FakeHTTPTransport().stub_url(URL, 429, "slow down", headers={"Retry-After": "Sun, 01 Mar 2026 12:00:30 GMT"})
    with flywheel.use_clock(FixedClock(now)):
        exc = fail(HTTPWorker(transport=fake), HTTPArgs(url=URL))
    assert isinstance(exc, RetryLater) and isinstance(exc, flywheel.Snooze)
    assert exc.delay == timedelta(seconds=30)
    assert exc.output["status"] == 429


def test_retry_after_is_capped_and_garbage_is_ignored():
    fake = FakeHTTPTransport().stub_url(URL, 503, headers={"Retry-After": "86400"})
    fake.stub_url(URL + "/bad", 503, headers={"Retry-After": "soon"})
    worker = HTTPWorker(transport=fake, max_retry_after=timedelta(minutes=5))
    assert fail(worker, HTTPArgs(url=URL)).delay == timedelta(minutes=5)
    garbage = fail(worker, HTTPArgs(url=URL + "/bad"))
    assert isinstance(garbage, WorkerFailure) and worker.classify(garbage) == "transient"


def test_big_body_is_cut_with_a_marker():
    fake = FakeHTTPTransport().stub_default(200, b"x" * 100_000)
    result = HTTPWorker(transport=fake, max_body_bytes=1000).work(make_job(HTTPArgs(url=URL)))
    assert result.output["truncated"] is True
    assert result.output["body"] == "x" * 1000 + "\n[flywheel: body truncated after 1000 bytes]"


@pytest.mark.parametrize(("args", "field"), [
    (HTTPArgs(), "url"), (HTTPArgs(url="ftp://x/y"), "url"), (HTTPArgs(url="/relative"), "url"),
    (HTTPArgs(url=URL, method="GE T"), "method"), (HTTPArgs(url=URL, success_status=[42]), "success_status"),
])
def test_bad_args_are_validation_errors_and_send_nothing(args, field):
    fake = FakeHTTPTransport()
    worker = HTTPWorker(transport=fake)
    exc = fail(worker, args)
    assert isinstance(exc, flywheel.ValidationError) and exc.field == field
    assert worker.classify(exc) == "validation"
    assert fake.calls() == 0


def test_missing_url_is_discarded_at_once_through_the_runner(db, client, make_runner, registry):
    registry.register(HTTPWorker(transport=FakeHTTPTransport()))
    job, runs = run_job(db, client, make_runner, HTTPArgs())
    assert (job.state, runs[0].error_class) == ("discarded", "validation")
