"""The ``http`` worker: one HTTP request per attempt, classified by what the server said.

A status in ``success_status`` (any 2xx when the list is empty) succeeds. 408, 429 and
5xx are transient and honour ``Retry-After`` by snoozing; a redirect that was not
followed and every other 4xx are permanent (asking again will not change the answer); a
transport failure is transient, and a request past its timeout is ``timeout``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

import attrs

from flywheel import clock
from flywheel.enums import ErrorClass
from flywheel.errors import ValidationError
from flywheel.jobs import Job, Result
from flywheel_plugins.workers.base import (
    RetryLater,
    WorkerFailure,
    args_from_table,
    classify,
    ints,
    seconds,
    string_map,
    time_left,
    timeout_delta,
)
from flywheel_plugins.workers.http_transport import HTTPRequest, HTTPResponse, HTTPTransport, UrllibTransport

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 30.0  # seconds, when neither the job nor the runner sets one
DEFAULT_MAX_RETRY_AFTER = timedelta(hours=1)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@attrs.frozen(kw_only=True)
class HTTPArgs:
    """go-flywheel's HTTPArgs, plus ``follow_redirects`` (to other hosts; off by default)."""

    kind: ClassVar[str] = "http"
    method: str = "GET"
    url: str = ""
    headers: dict[str, str] | None = attrs.field(factory=dict, converter=string_map)
    body: str = ""
    timeout_seconds: float = attrs.field(default=0, converter=seconds)
    success_status: list[int] | None = attrs.field(factory=list, converter=ints)
    follow_redirects: bool = False

    def validate(self) -> None:
        if not self.url.strip():
            raise ValidationError("url", "is required (http)")
        if not re.match(r"(?i)https?://[^/\s]+", self.url):
            raise ValidationError("url", f"must be an http:// or https:// URL with a host, not {self.url!r}")
        if self.method and not _TOKEN.fullmatch(self.method):
            raise ValidationError("method", f"is not an HTTP method: {self.method!r}")
        bad = [code for code in self.success_status or () if not 100 <= code <= 599]
        if bad:
            raise ValidationError("success_status", f"holds codes that are not HTTP statuses: {bad}")


class HTTPWorker:
    """Sends ``HTTPArgs`` through ``transport`` (stdlib urllib unless another is given).

    :param transport: the :class:`HTTPTransport` seam, e.g. ``flywheel.testing.FakeHTTPTransport()``.
    :param max_body_bytes: how much of the response body is kept in the run's output.
    :param max_retry_after: the longest ``Retry-After`` honoured; longer ones are cut to it.
    """

    kind = "http"
    args_type = HTTPArgs

    def __init__(self, *, transport: HTTPTransport | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_retry_after: timedelta = DEFAULT_MAX_RETRY_AFTER,
                 default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.transport = transport if transport is not None else UrllibTransport()
        self.max_body_bytes = max_body_bytes
        self.max_retry_after = max_retry_after
        self.default_timeout = default_timeout

    def work(self, job: Job[HTTPArgs]) -> Result:
        args = job.args
        args.validate()
        method = (args.method or "GET").upper()
        limit = time_left(job, args.timeout_seconds, self.default_timeout) or self.default_timeout
        request = HTTPRequest(method=method, url=args.url, headers=dict(args.headers or {}),
                              body=args.body.encode() if args.body else None, timeout=limit,
                              follow_redirects=args.follow_redirects)
        name = f"http: {method} {args.url}"
        started = time.monotonic()
        try:
            response = self.transport.send(request)
        except TimeoutError as exc:
            raise WorkerFailure(f"{name}: timed out after {time.monotonic() - started:.1f}s",
                                error_class=ErrorClass.TIMEOUT) from exc
        except Exception as exc:  # refused, reset, DNS, TLS: the server may be back soon
            raise WorkerFailure(f"{name}: {type(exc).__name__}: {exc}") from exc
        try:
            body, truncated = self._read(response, started + limit, args.url)
        finally:
            response.close()
        output = {"status": response.status, "body": body, "duration_ms": int((time.monotonic() - started) * 1000),
                  "truncated": truncated}
        return self._verdict(name, args, response, output)

    def classify(self, exc: BaseException) -> ErrorClass | None:
        return classify(exc)

    def timeout(self, job: Job[HTTPArgs]) -> timedelta | None:
        return timeout_delta(job.args.timeout_seconds)

    def _read(self, response: HTTPResponse, deadline: float, url: str) -> tuple[str, bool]:
        """The first ``max_body_bytes`` of the body, within the deadline; the rest is not downloaded."""
        kept = bytearray()
        try:
            while len(kept) <= self.max_body_bytes:
                if time.monotonic() > deadline:
                    raise WorkerFailure(f"http: read body from {url}: timed out", error_class=ErrorClass.TIMEOUT)
                chunk = response.read(min(64 * 1024, self.max_body_bytes + 1 - len(kept)))
                if not chunk:
                    break
                kept += chunk
        except WorkerFailure:
            raise
        except TimeoutError as exc:
            raise WorkerFailure(f"http: read body from {url}: timed out", error_class=ErrorClass.TIMEOUT) from exc
        except Exception as exc:
            raise WorkerFailure(f"http: read body from {url}: {type(exc).__name__}: {exc}",
                                output={"status": response.status}) from exc
        truncated = len(kept) > self.max_body_bytes
        text = bytes(kept[: self.max_body_bytes]).decode("utf-8", errors="replace")
        if truncated:
            text += f"\n[flywheel: body truncated after {self.max_body_bytes} bytes]"
        return text, truncated

    def _verdict(self, name: str, args: HTTPArgs, response: HTTPResponse, output: dict[str, Any]) -> Result:
        status = response.status
        wanted = args.success_status or []
        if (status in wanted) if wanted else 200 <= status < 300:
            return Result(output=output)
        message = f"{name} returned status {status}"
        if status in (408, 429) or 500 <= status < 600:
            delay = _retry_after(response.headers, self.max_retry_after)
            if delay is not None:
                raise RetryLater(delay, output=output)
            raise WorkerFailure(message, output=output)
        if 300 <= status < 500:
            hint = " (a redirect to another host is followed only with follow_redirects)" if status < 400 else ""
            raise WorkerFailure(message + hint, error_class=ErrorClass.PERMANENT, output=output)
        raise WorkerFailure(message, output=output)


def _retry_after(headers: Mapping[str, str], ceiling: timedelta) -> timedelta | None:
    """``Retry-After`` as a delay (seconds or an HTTP date), at most ``ceiling``; None if absent or bad."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        delay = max(timedelta(0), when - clock.now())
    return min(delay, ceiling)


def from_table(table: Mapping[str, Any]) -> HTTPArgs:
    """``[schedules.http]`` → :class:`HTTPArgs`."""
    return args_from_table(HTTPArgs, table)


def make_worker(config: Any = None) -> HTTPWorker:
    """The worker the ``http`` plugin registers (it needs nothing from the config)."""
    return HTTPWorker()
