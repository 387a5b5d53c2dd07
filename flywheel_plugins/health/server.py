"""The ``health`` plugin's server: a node's HTTP probes and ``/metrics``, on the stdlib's ThreadingHTTPServer.

Started by the plugin's ``flywheel_services(node)`` (in :mod:`flywheel_plugins.health`) when
``node.health.addr`` (``HealthConfig(addr=…)``, ``[runtime] metrics_addr``) is set, and bound to
that address only:

- ``GET /healthz``: 200 ``ok`` while the process serves (liveness);
- ``GET /readyz``: 200 ``ready`` when the node's runners are running and its database
  answers, else 503 with the reason (draining, a runner not running, the database error);
- ``GET /metrics``: the Prometheus exposition when the ``prometheus`` plugin is active for
  the node, else 404.

It stops with the node's services, after the drain; a port already in use fails the
node's start with :class:`HealthServerError`.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    from flywheel.runtime.node import Node

log = logging.getLogger("flywheel.health")
SHUTDOWN_POLL_S = 0.1


class HealthServerError(FlywheelError):
    """The health server cannot listen where it was told to."""


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:9090"`` for IPv6, ``":9090"`` for every interface) → ``(host, port)``."""
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise HealthServerError(f"flywheel: health address {addr!r} is not host:port (e.g. 127.0.0.1:9090)")
    return host.removeprefix("[").removesuffix("]"), int(port)


def readiness(node: Node) -> str | None:
    """None when the node is ready for work, else why not (one line)."""
    if node.stopping:
        return "the node is draining"
    for index, runner in enumerate(node.runners):
        if not runner.running:
            return f"runner[{index}] is not running"
    db = node.db
    try:
        db.Job.select(db.Job.id).limit(1).execute()
    except Exception as exc:  # any failure is "not ready", with its reason
        return f"database unreachable: {' '.join(str(exc).split()) or type(exc).__name__}"
    return None


class HealthServer:
    """The node service: one listening socket, a thread serving it, a thread per request."""

    def __init__(self, node: Node, addr: str) -> None:
        self.node = node
        self.addr = addr
        self.host, self.port = parse_addr(addr)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``: the real port when the configured one was 0."""
        if self._server is None:
            return self.host, self.port
        return self.host, int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host or '127.0.0.1'}:{port}"

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._server = _Server((self.host, self.port), _Handler, node=self.node, family=family)
        except OSError as exc:
            reason = "the address is already in use (another process listens there)" \
                if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise HealthServerError(
                f"flywheel: health server cannot listen on {self.addr}: {reason}; "
                "choose another address ([runtime] metrics_addr / HealthConfig(addr=...))") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                                        name="flywheel-health", daemon=True)
        self._thread.start()
        log.info("flywheel: health server listening on %s", self.url,
                 extra={"action": "health_listening", "addr": self.addr, "url": self.url})

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stuck request never holds up the node's exit

    def __init__(self, address: tuple[str, int], handler: type[_Handler], *, node: Node, family: int) -> None:
        self.address_family = family
        self.node = node
        super().__init__(address, handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "flywheel-health"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        node = self.server.node
        try:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                reason = readiness(node)
                if reason is None:
                    self._reply(200, b"ready\n")
                else:
                    self._reply(503, f"{reason}\n".encode())
            elif path == "/metrics":
                self._metrics(node)
            else:
                self._reply(404, b"not found: try /healthz, /readyz or /metrics\n")
        finally:
            with contextlib.suppress(Exception):  # this request thread's database connection
                if not node.db.pw.is_closed():
                    node.db.pw.close()

    def _metrics(self, node: Node) -> None:
        observer = _metrics_observer(node)
        if observer is None:
            self._reply(404, b"metrics are off: the prometheus plugin is not active "
                             b"(pip install 'flywheel-jobs[prometheus]', and do not block it)\n")
            return
        try:
            body, content_type = observer.exposition(self.headers.get("Accept"))
        except Exception as exc:
            log.exception("flywheel: /metrics failed")
            self._reply(500, f"flywheel: metrics failed: {exc}\n".encode())
            return
        self._reply(200, body, content_type)

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        log.debug("flywheel: health %s - " + format, self.address_string(), *args)


def _metrics_observer(node: Node) -> Any:
    """The node's Prometheus observer when the ``prometheus`` plugin is loaded and on for it."""
    try:
        from flywheel_plugins import prometheus
    except ImportError:
        return None
    if not node.pm.is_registered(prometheus):
        return None
    return prometheus.metrics_for(node)
