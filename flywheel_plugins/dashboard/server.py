"""The HTTP server: routing, actions, responses, and the start/stop a Node's service needs.

Standard library only: ``http.server`` with a small fixed pool of handler threads, so each
thread keeps its one database connection (peewee connects per thread) and the number of
connections the dashboard holds is bounded. Responses are HTTP/1.0 (one request per
connection), carry a strict Content-Security-Policy, and are never cached.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import flywheel
from flywheel import clock
from flywheel.errors import JobNotFound, JobTerminal, PeriodicNotFound
from flywheel_plugins.dashboard import DEFAULT_BIND, markup, pages
from flywheel_plugins.dashboard.queries import queries_for
from flywheel_plugins.dashboard.security import CSRF_COOKIE, SESSION_COOKIE, Forbidden, Guard

if TYPE_CHECKING:
    from flywheel.storage.db import Database

log = logging.getLogger("flywheel.dashboard")

WORKERS = 4
_MAX_FORM = 16 * 1024
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_DONE = {"retried": "Retried: the job is available to run now.", "cancelled": "Cancelled.",
         "enabled": "Schedule enabled.", "disabled": "Schedule disabled.", "login": "Logged in.",
         "logout": "Logged out."}

Page = Callable[..., tuple[str, str]]
_GET: list[tuple[re.Pattern[str], str, Page]] = [
    (re.compile(r"/"), "/", pages.overview),
    (re.compile(r"/queues"), "/queues", pages.queues),
    (re.compile(r"/jobs"), "/jobs", pages.jobs),
    (re.compile(r"/jobs/([^/]+)"), "/jobs", pages.job),
    (re.compile(r"/schedules"), "/schedules", pages.schedules),
    (re.compile(r"/failures"), "/failures", pages.failures),
]
_ACTIONS = re.compile(r"/(jobs|schedules)/([^/]+)/(retry|cancel|enable|disable)")


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) into its parts; a clear ``ValueError`` otherwise."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"dashboard bind address must be HOST:PORT (e.g. {DEFAULT_BIND}), not {bind!r}")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"dashboard bind port must be 0-65535, not {port}")
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    """Requests handled on a fixed pool of threads (each keeps its database connection)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int) -> None:
        if ":" in address[0]:
            self.address_family = __import__("socket").AF_INET6
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="flywheel-dashboard")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self.process_request_thread, request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=True)


class Dashboard:
    """The dashboard on one database: ``start()`` serves on a thread, ``stop()`` ends it (a Node service)."""

    def __init__(self, db: Database, bind: str = DEFAULT_BIND, *, read_only: bool = False,
                 token: str | None = None, workers: int = WORKERS) -> None:
        self.db = db
        self.host, self.port = parse_bind(bind)
        self.guard = Guard(self.host, read_only=read_only, token=token)
        self.queries = queries_for(db)
        self.workers = workers
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Bind and serve on a background thread (``OSError`` when the address is taken)."""
        handler = type("Handler", (_Handler,), {"app": self})
        self._server = _Server((self.host, self.port), handler, self.workers)
        self.port = self._server.server_address[1]
        self.guard.port = self.port
        self._thread = threading.Thread(target=self._server.serve_forever, name="flywheel-dashboard", daemon=True)
        self._thread.start()
        self._server.pool.submit(self._warm)
        log.info("flywheel: dashboard on %s (%s)", self.url, self.guard.mode)

    def _warm(self) -> None:
        """Fill the chart's cache before anyone asks (on a pool thread, which keeps the connection)."""
        try:
            self.queries.throughput(clock.now())
        except Exception:  # an unreachable or unmigrated database: the pages will say so
            log.debug("flywheel: dashboard warm-up failed", exc_info=True)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait(self) -> None:
        """Block until the server stops (interruptible: the ``flywheel dashboard`` command waits here)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)


class _Handler(BaseHTTPRequestHandler):
    app: Dashboard
    server_version = "flywheel-dashboard"
    timeout = 10  # seconds a client may stall mid-request before its pool thread is freed

    # -- plumbing ----------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        for cookie in self._set_cookies:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self._send(HTTPStatus.SEE_OTHER, "", {"Location": location})

    def _page(self, status: int, title: str, body: str, active: str = "", error: str | None = None) -> None:
        done = self.query.get("done")
        mode = markup.e(self.app.guard.mode)
        if self.app.guard.token and not self.app.guard.read_only:
            mode += (" · " + ('<a href="/login">log in</a>' if not self.authorised else "logged in"))
        self._send(status, markup.layout(title, body, active=active, mode=mode, notice=_DONE.get(done or ""),
                                         error=error))

    def _error(self, status: int, message: str) -> None:
        self._page(status, HTTPStatus(status).phrase, "", error=message)

    def _begin(self) -> bool:
        url = urlsplit(self.path)
        self.route = unquote(url.path).rstrip("/") or "/"
        self.query = dict(parse_qsl(url.query))
        self.cookies: SimpleCookie = SimpleCookie()
        try:
            self.cookies.load(self.headers.get("Cookie", ""))
        except Exception:  # a malformed cookie header is no cookie
            self.cookies = SimpleCookie()
        self._set_cookies: list[str] = []
        morsel = self.cookies.get(CSRF_COOKIE)
        nonce = morsel.value if morsel is not None else None
        if not nonce:
            nonce = self.app.guard.new_nonce()
            self._set_cookies.append(f"{CSRF_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict")
        self.csrf = self.app.guard.csrf_token(nonce)
        self.authorised = self.app.guard.authorised(self.headers.get("Authorization"), self.cookies)
        if not self.app.guard.host_allowed(self.headers.get("Host")):
            self._error(HTTPStatus.MISDIRECTED_REQUEST,
                        "this dashboard is bound to loopback and answers only to a loopback Host")
            return False
        return True

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run a request, turning failures into one-line error pages (and dropping a broken connection)."""
        try:
            action()
        except (JobNotFound, PeriodicNotFound) as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except Forbidden as exc:
            self._error(HTTPStatus.FORBIDDEN, str(exc))
        except (ValueError, JobTerminal) as exc:
            self._error(HTTPStatus.BAD_REQUEST if isinstance(exc, ValueError) else HTTPStatus.CONFLICT, str(exc))
        except Exception as exc:  # one page, not a dropped connection
            log.exception("flywheel: dashboard request %s %s failed", self.command, self.path)
            if not self.app.db.pw.is_closed():
                self.app.db.pw.close()
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    # -- GET -----------------------------------------------------------------------

    def do_GET(self) -> None:
        if self._begin():
            self._guarded(self._get)

    do_HEAD = do_GET

    def _get(self) -> None:
        if self.route == "/login":
            self._login_form()
            return
        for pattern, active, page in _GET:
            match = pattern.fullmatch(self.route)
            if match:
                view = pages.View(query=self.query, csrf=self.csrf, actions=self.authorised)
                title, body = page(self.app.db, self.app.queries, view, *match.groups())
                self._page(HTTPStatus.OK, title, body, active)
                return
        self._error(HTTPStatus.NOT_FOUND, f"no page at {self.route}")

    def _login_form(self) -> None:
        if not self.app.guard.token or self.app.guard.read_only:
            raise Forbidden("this dashboard has no operator token to log in with")
        body = (f'<form method="post" action="/login"><input type="hidden" name="csrf" value="{markup.e(self.csrf)}">'
                f'<label>Operator token <input type="password" name="token" autocomplete="current-password">'
                f'</label> <button type="submit">Log in</button></form>')
        self._page(HTTPStatus.OK, "Log in", body)

    # -- POST ----------------------------------------------------------------------

    def do_POST(self) -> None:
        if self._begin():
            self._guarded(self._post)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_FORM:
            raise ValueError("form too large")
        return dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))

    def _post(self) -> None:
        form = self._form()
        guard = self.app.guard
        guard.check_csrf(self.cookies, form.get("csrf"), self.headers.get("Origin"), self.headers.get("Host"))
        if self.route in ("/login", "/logout"):
            self._login(form)
            return
        match = _ACTIONS.fullmatch(self.route)
        if match is None:
            self._error(HTTPStatus.NOT_FOUND, f"no action at {self.route}")
            return
        if guard.read_only:
            raise Forbidden("this dashboard is read-only: it is bound beyond loopback without "
                            "FLYWHEEL_DASHBOARD_TOKEN, or was started with --read-only")
        if not self.authorised:
            raise Forbidden("this action needs the operator token: log in first")
        what, name, verb = match.groups()
        db = self.app.db
        if what == "jobs" and verb in ("retry", "cancel"):
            (flywheel.retry_job if verb == "retry" else flywheel.cancel_job)(db, name)
            log.info("flywheel: dashboard %s job %s", verb, name)
            self._redirect(f"/jobs/{quote(name, safe='')}?done={'retried' if verb == 'retry' else 'cancelled'}")
        elif what == "schedules" and verb in ("enable", "disable"):
            flywheel.set_periodic_active(db, name, verb == "enable")
            log.info("flywheel: dashboard %s schedule %s", verb, name)
            self._redirect(f"/schedules?done={verb}d")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no action at {self.route}")

    def _login(self, form: dict[str, str]) -> None:
        guard = self.app.guard
        if self.route == "/logout":
            self._set_cookies.append(f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
            self._redirect("/?done=logout")
            return
        if guard.read_only or not guard.check_token(form.get("token", "")):
            raise Forbidden("wrong operator token" if guard.token and not guard.read_only
                            else "this dashboard has no operator token to log in with")
        self._set_cookies.append(f"{SESSION_COOKIE}={guard.session_value()}; Path=/; HttpOnly; SameSite=Strict")
        self._redirect("/?done=login")
