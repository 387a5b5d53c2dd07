"""The http worker's transport seam and its default, stdlib ``urllib`` implementation.

The worker talks to a :class:`HTTPTransport` (one method, ``send``), so tests can swap in
``flywheel.testing.FakeHTTPTransport`` and make no network call. A transport raises
``TimeoutError`` when the request timed out and any other exception for a transport
failure (refused connection, DNS, TLS); an HTTP status, any status, is a response.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Protocol

import attrs


@attrs.frozen(kw_only=True)
class HTTPRequest:
    """One request. ``follow_redirects``: also follow redirects to other hosts (same host always)."""

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes | None = None
    timeout: float | None = None
    follow_redirects: bool = False


class HTTPResponse(Protocol):
    """What ``send`` returns: the status, the headers, and a body read in chunks."""

    status: int
    headers: Mapping[str, str]

    def read(self, amt: int) -> bytes: ...

    def close(self) -> None: ...


class HTTPTransport(Protocol):
    def send(self, request: HTTPRequest) -> HTTPResponse: ...


class _Stream(Protocol):
    """urllib's response body (or the ``HTTPError`` that stands for one)."""

    def read(self, amt: int, /) -> bytes: ...

    def close(self) -> None: ...


@attrs.define
class _Response:
    status: int
    headers: Mapping[str, str]
    _stream: _Stream

    def read(self, amt: int) -> bytes:
        return self._stream.read(amt)

    def close(self) -> None:
        self._stream.close()


class UrllibTransport:
    """Sends requests with ``urllib``; redirects to another host are followed only when asked.

    urllib is imported on the first request, so loading the plugin (every CLI call) stays cheap.
    """

    def send(self, request: HTTPRequest) -> HTTPResponse:
        import urllib.error
        import urllib.request

        opener = urllib.request.build_opener(_redirect_handler()(request.follow_redirects))
        req = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers),
                                     method=request.method)
        try:
            stream = opener.open(req, timeout=request.timeout)
        except urllib.error.HTTPError as exc:  # any non-2xx status (a refused redirect too): still a response
            return _Response(status=exc.code, headers=_headers(exc.headers), stream=exc)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise TimeoutError(f"timed out: {exc.reason}") from exc
            raise
        return _Response(status=stream.status, headers=_headers(stream.headers), stream=stream)


@functools.cache
def _redirect_handler() -> type[Any]:
    import urllib.request

    class Redirects(urllib.request.HTTPRedirectHandler):
        """Follow a redirect on the same scheme, host and port; to elsewhere only when allowed."""

        def __init__(self, anywhere: bool) -> None:
            self.anywhere = anywhere

        def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> urllib.request.Request | None:
            if not self.anywhere and _origin(newurl) != _origin(req.full_url):
                return None  # urllib then reports the 3xx itself as the response
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return Redirects


def _origin(url: str) -> tuple[str, str | None, int | None]:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, parts.port or default


def _headers(message: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in (message.items() if message is not None else ()):
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
