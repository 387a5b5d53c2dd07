"""Advisory locks: the key of a named lock, and the session lock behind :meth:`PostgresDriver.singleton`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from flywheel.storage.driver import Singleton
from flywheel_plugins.postgres.connection import connect_raw, peer_hung_up

if TYPE_CHECKING:
    from flywheel_plugins.postgres.driver import PostgresDriver

logger = logging.getLogger("flywheel.postgres")


def lock_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` within ``schema``."""
    digest = hashlib.sha256(f"flywheel/{schema}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock(Singleton):
    """A PostgreSQL session advisory lock held on its own connection.

    ``acquire()`` never blocks: it checks that the holding connection is still alive (a lock
    dies with its session) and takes the lock again, on a new connection, if it was lost.
    ``release()`` unlocks and closes the connection.
    """

    def __init__(self, driver: PostgresDriver, name: str) -> None:
        self.driver = driver
        self.name = name
        self._conn: Any = None
        self._key: int | None = None
        self._held = False
        self._lock = threading.Lock()
        self._failing = False

    def acquire(self) -> bool:
        with self._lock:
            try:
                if self._held and self._alive():
                    return True
                self._held = False
                if self._conn is None or self._conn.closed or not self._alive():
                    self._drop()
                    self._conn = connect_raw(self.driver, fallback_application_name="flywheel-lock")
                    with self._conn.cursor() as cursor:
                        cursor.execute("SELECT coalesce(current_schema(), '')")
                        self._key = lock_key(cursor.fetchone()[0], self.name)
                with self._conn.cursor() as cursor:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
                    self._held = bool(cursor.fetchone()[0])
                if self._failing:
                    logger.warning("flywheel: lock %r: database reachable again", self.name)
                    self._failing = False
                return self._held
            except Exception as exc:  # unreachable database: not held, try next round
                if not self._failing:
                    logger.warning("flywheel: lock %r: cannot reach %s: %s", self.name, self.driver.display_url(),
                                   self.driver.scrub(" ".join(str(exc).split())))
                    self._failing = True
                self._drop()
                return False

    def _alive(self) -> bool:
        if self._conn is None or self._conn.closed or peer_hung_up(self._conn):
            return False
        try:
            with self._conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:
            return False

    def release(self) -> None:
        with self._lock:
            if self._conn is not None and self._held and not self._conn.closed:
                with contextlib.suppress(Exception), self._conn.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            self._held = False
            self._drop()

    @property
    def held(self) -> bool:
        return self._held

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._held = False
