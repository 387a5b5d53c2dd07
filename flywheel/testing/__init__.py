"""Test doubles for code that uses flywheel; plain Python, usable with any test runner.

* :class:`FakeHTTPTransport`: a programmable stand-in for the http worker's transport
  (go-flywheel's ``FakeHTTPDoer``): replies stubbed by URL, a default reply, transport
  errors, a body that fails mid-read, and a count of the calls made. No network.
* :class:`FixedClock`: a clock that stands still until moved (``advance`` / ``set``).
* :class:`MovableClock`: a clock that runs with real time from a chosen instant and can be
  moved ahead (or set) on top of that, for tests where time must pass *and* jump.
* :class:`DriverConformance`: the driver conformance suite (:mod:`flywheel.testing.conformance`),
  loaded on first use: a driver plugin's tests subclass it to prove the driver keeps the
  contract the built-in drivers keep.

Use a clock with ``with flywheel.use_clock(clock):``. This module imports neither pytest
nor any HTTP library.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from flywheel.clock import FixedClock

if TYPE_CHECKING:
    from flywheel.testing.conformance import DriverConformance

__all__ = ["DriverConformance", "FakeHTTPResponse", "FakeHTTPTransport", "FixedClock", "MovableClock"]


def __getattr__(name: str) -> Any:
    if name == "DriverConformance":  # the suite imports the storage layer: only when asked for
        return importlib.import_module("flywheel.testing.conformance").DriverConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MovableClock:
    """Wall-clock time elapsed since ``start``, plus whatever ``advance`` added; thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._anchor = _as_utc(start) if start is not None else datetime.now(UTC)
        self._since = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._anchor + timedelta(seconds=time.monotonic() - self._since)

    def advance(self, delta: timedelta | float) -> datetime:
        """Jump ahead by ``delta`` (a number is seconds); time keeps running from there."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._anchor += step
            return self._anchor + timedelta(seconds=time.monotonic() - self._since)

    def set(self, at: datetime) -> None:
        """Move to ``at``; time keeps running from there."""
        with self._lock:
            self._anchor, self._since = _as_utc(at), time.monotonic()


@attrs.frozen(kw_only=True)
class _Reply:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    error: BaseException | None = None  # raised by send()
    read_error: BaseException | None = None  # raised by read() once ``body`` is consumed


class FakeHTTPResponse:
    """A canned response: ``body`` in chunks, then ``read_error`` if one was stubbed."""

    def __init__(self, reply: _Reply) -> None:
        self.status = reply.status
        self.headers = {k.lower(): v for k, v in reply.headers.items()}
        self._body = reply.body
        self._read_error = reply.read_error
        self.closed = False

    def read(self, amt: int) -> bytes:
        if not self._body and self._read_error is not None:
            raise self._read_error
        chunk, self._body = self._body[:amt], self._body[amt:]
        return chunk

    def close(self) -> None:
        self.closed = True


class FakeHTTPTransport:
    """Replies by request URL, else the default (200, empty body); safe across threads.

    Every ``stub_*`` method returns the transport, so stubs chain. ``requests`` holds every
    request sent, in order, for assertions.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stubs: dict[str, _Reply] = {}
        self._default = _Reply()
        self.requests: list[Any] = []

    def stub_url(self, url: str, status: int, body: str | bytes = "",
                 headers: Mapping[str, str] | None = None) -> FakeHTTPTransport:
        """Requests to ``url`` get ``status`` with ``body`` (and ``headers``)."""
        return self._stub(url, _Reply(status=status, body=_bytes(body), headers=dict(headers or {})))

    def stub_default(self, status: int, body: str | bytes = "",
                     headers: Mapping[str, str] | None = None) -> FakeHTTPTransport:
        """The reply for every URL without a stub of its own."""
        return self._stub(None, _Reply(status=status, body=_bytes(body), headers=dict(headers or {})))

    def stub_error(self, url: str, error: BaseException) -> FakeHTTPTransport:
        """Requests to ``url`` fail before any response: ``send`` raises ``error``.

        A ``TimeoutError`` reads as a timed-out request, anything else as a transport failure.
        """
        return self._stub(url, _Reply(error=error))

    def stub_body_read_error(self, url: str, status: int, error: BaseException,
                             body: str | bytes = "") -> FakeHTTPTransport:
        """Requests to ``url`` get ``status``; reading the body yields ``body`` and then raises ``error``."""
        return self._stub(url, _Reply(status=status, body=_bytes(body), read_error=error))

    def stub_default_body_read_error(self, status: int, error: BaseException,
                                     body: str | bytes = "") -> FakeHTTPTransport:
        """Like :meth:`stub_body_read_error`, for every URL without a stub of its own."""
        return self._stub(None, _Reply(status=status, body=_bytes(body), read_error=error))

    def calls(self) -> int:
        """How many requests have been sent."""
        with self._lock:
            return len(self.requests)

    def send(self, request: Any) -> FakeHTTPResponse:
        """The transport interface: record ``request`` and answer from the stubs."""
        with self._lock:
            self.requests.append(request)
            reply = self._stubs.get(request.url, self._default)
        if reply.error is not None:
            raise reply.error
        return FakeHTTPResponse(reply)

    def _stub(self, url: str | None, reply: _Reply) -> FakeHTTPTransport:
        with self._lock:
            if url is None:
                self._default = reply
            else:
                self._stubs[url] = reply
        return self


def _bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _as_utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
