"""Shared by the dashboard tests (no tests here): a small HTTP client with cookies, workers, a served dashboard."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

import flywheel
from flywheel_plugins.dashboard import Dashboard


class Browserless:
    """Plain HTTP against a dashboard, keeping cookies like a browser would (no redirects followed)."""

    def __init__(self, url: str, *, host: str | None = None) -> None:
        parts = urlsplit(url)
        self.netloc = parts.netloc
        self.host_header = host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.netloc, timeout=30)
        sent = dict(headers or {})
        if self.host_header:
            sent["Host"] = self.host_header
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urlencode(body)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        text = response.read().decode()
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        conn.close()
        return response.status, dict(response.headers.items()), text

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path, **kw)

    def csrf(self, app: Dashboard) -> str:
        """The token a page's forms would carry for this client's ``fw_csrf`` cookie (fetched first)."""
        if "fw_csrf" not in self.cookies:
            self.get("/schedules")
        return app.guard.csrf_token(self.cookies["fw_csrf"])

    def post(self, path: str, form: dict[str, str] | None = None, **kw: Any) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, body=form or {}, **kw)


@contextmanager
def served(db: flywheel.Database, bind: str = "127.0.0.1:0", **options: Any) -> Iterator[Dashboard]:
    app = Dashboard(db, bind, **options)
    app.start()
    try:
        yield app
    finally:
        app.stop()


def local_url(app: Dashboard) -> str:
    """The dashboard's URL as reached from this machine (a wildcard bind is reached on 127.0.0.1)."""
    return f"http://127.0.0.1:{app.port}"


def flaky_registry(fail_until_retried: dict[str, bool]) -> flywheel.Registry:
    """``ok`` succeeds with an output; ``boom`` fails for good; ``flaky`` fails until the flag is set."""
    registry = flywheel.Registry()

    @registry.worker("ok")
    def ok(job: flywheel.Job[Any]) -> flywheel.Result:
        return flywheel.Result(output={"echo": job.args})

    @registry.worker("boom")
    def boom(job: flywheel.Job[Any]) -> None:
        raise flywheel.Permanent("disk <full> & on fire")

    @registry.worker("flaky")
    def flaky(job: flywheel.Job[Any]) -> flywheel.Result:
        if not fail_until_retried.get("healed"):
            raise flywheel.Permanent("upstream said no")
        return flywheel.Result(output={"healed": True})

    return registry


def run_all(db: flywheel.Database, registry: flywheel.Registry, queues: list[str] | None = None) -> int:
    runner = flywheel.Runner(db, registry, queues=queues or ["default"], poll_interval=0.02,
                             retry_backoff_base=0.01, max_retry_backoff=0.05)
    return runner.run_until_idle(timeout=60)

