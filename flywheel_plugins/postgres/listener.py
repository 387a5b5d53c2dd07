"""Wake-ups: the NOTIFY channel of each queue, and the driver's LISTEN connection on its own thread."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import select
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flywheel_plugins.postgres.connection import connect_raw, import_psycopg2

if TYPE_CHECKING:
    from flywheel_plugins.postgres.driver import PostgresDriver

logger = logging.getLogger("flywheel.postgres")

#: A LISTEN connection nobody has waited on for this long is closed (it reopens on demand).
LISTEN_LINGER_S = 5.0
#: The longest pause between attempts to re-open a lost LISTEN connection.
LISTEN_MAX_BACKOFF_S = 2.0


def _channel_suffix(queue: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", queue)[:16]


def channel_name(schema: str, queue: str) -> str:
    """The NOTIFY channel of ``queue`` in ``schema``: always a safe identifier (<= 38 bytes).

    A readable prefix of the queue name plus a hash of schema and queue, so two schemas in
    one database (or two queues that sanitise alike) do not wake each other's runners.
    Must agree with :data:`CHANNEL_SQL`.
    """
    digest = hashlib.md5(f"{schema}/{queue}".encode()).hexdigest()[:12]  # a name, not security
    return f"flywheel_{_channel_suffix(queue)}_{digest}"


#: :func:`channel_name` in SQL, for a ``queue`` column or expression ``{q}``.
CHANNEL_SQL = (
    "'flywheel_' || left(regexp_replace({q}, '[^A-Za-z0-9_]', '_', 'g'), 16) || '_' || "
    "left(md5(coalesce(current_schema(), '') || '/' || {q}), 12)"
)


class Listener(threading.Thread):
    """The driver's LISTEN connection, on its own thread.

    It listens on the channel of every queue a runner has waited on, bumps the driver's
    per-queue counters when a notification arrives, and re-opens the connection whenever
    it drops (logging once per outage). It closes itself once nobody has waited for a while.
    """

    def __init__(self, driver: PostgresDriver) -> None:
        super().__init__(name="flywheel-pg-listener", daemon=True)
        self.driver = driver
        self.pid = os.getpid()
        self.waiters = 0
        self.last_wait = time.monotonic()
        self.retiring = False
        self._queues: set[str] = set()
        self._listening: dict[str, set[str]] = {}  # channel -> queues
        self._pending = True
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._conn: Any = None
        self._schema = ""
        self._outage_logged = False

    def want(self, queues: Sequence[str]) -> None:
        with self._lock:
            new = set(queues) - self._queues
            if not new:
                return
            self._queues |= new
            self._pending = True
        self._poke()

    def stop(self) -> None:
        self._stopping.set()
        self._poke()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def run(self) -> None:
        backoff = 0.0
        try:
            while not self._stopping.is_set():
                if self._idle():
                    break
                if self._conn is None:
                    if not self._open():
                        backoff = min(max(backoff * 2, 0.05), LISTEN_MAX_BACKOFF_S)
                        self._sleep(backoff)
                        continue
                    backoff = 0.0
                try:
                    self._sync_channels()
                    self._receive(timeout=1.0)
                except Exception as exc:  # the connection dropped: reopen it
                    self._lost(exc)
        finally:
            self._close()
            self.retiring = True
            self.driver.listener_retired(self)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _idle(self) -> bool:
        if self.waiters == 0 and time.monotonic() - self.last_wait > LISTEN_LINGER_S:
            with self.driver.listener_lock:
                if self.waiters == 0 and time.monotonic() - self.last_wait > LISTEN_LINGER_S:
                    self.retiring = True
                    return True
        return False

    def _open(self) -> bool:
        try:
            conn = connect_raw(self.driver)
            with conn.cursor() as cursor:
                cursor.execute("SELECT coalesce(current_schema(), '')")
                self._schema = cursor.fetchone()[0]
        except Exception as exc:
            self._lost(exc)
            return False
        self._conn = conn
        with self._lock:
            self._listening = {}
            self._pending = True
        return True

    def _sync_channels(self) -> None:
        with self._lock:
            if not self._pending:
                return
            self._pending = False
            queues = set(self._queues)
        fresh = []
        with self._conn.cursor() as cursor:
            for queue in sorted(queues):
                channel = channel_name(self._schema, queue)
                if queue not in self._listening.get(channel, set()):
                    if channel not in self._listening:
                        cursor.execute(f'LISTEN "{channel}"')
                    self._listening.setdefault(channel, set()).add(queue)
                    fresh.append(queue)
        if fresh:
            # Work inserted before LISTEN took effect (or while the connection was down) sent
            # its notification to nobody: wake the waiters so they claim once.
            self.driver.bump_queues(fresh)
            if self._outage_logged:
                logger.warning("flywheel: LISTEN connection to %s re-established", self.driver.display_url())
                self._outage_logged = False

    def _receive(self, timeout: float) -> None:
        poller = select.poll()  # not select(): a process may have more than 1024 descriptors
        conn_fd = self._conn.fileno()
        poller.register(conn_fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        poller.register(self._wake_r, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(timeout * 1000)}
        if self._wake_r in ready:
            self._drain_pokes()
        if conn_fd in ready:
            self._conn.poll()
            if self._conn.closed:
                raise import_psycopg2().OperationalError("the LISTEN connection was closed by the server")
            if self._conn.notifies:
                queues: set[str] = set()
                for note in self._conn.notifies:
                    queues |= self._listening.get(note.channel, set())
                self._conn.notifies.clear()
                if queues:
                    self.driver.bump_queues(sorted(queues))
            if any(str(n).startswith("FATAL") for n in self._conn.notices[-2:]):
                raise import_psycopg2().OperationalError(self._conn.notices[-1].strip())

    def _lost(self, exc: BaseException) -> None:
        if not self._outage_logged:
            what = "lost" if self._conn is not None else "cannot be opened"
            logger.warning(
                "flywheel: LISTEN connection to %s %s; reconnecting (runners keep polling meanwhile): %s",
                self.driver.display_url(), what,
                self.driver.scrub(" ".join(str(exc).split()) or type(exc).__name__))
            self._outage_logged = True
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _sleep(self, seconds: float) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.poll(seconds * 1000)
        self._drain_pokes()

    def _drain_pokes(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass
