"""What a measurement ran on (versions, commit, machine) and fresh databases to run it in."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

REPO = Path(__file__).resolve().parent.parent


def dialect_of(url: str) -> str:
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgres", "postgresql"):
        return "postgres"
    raise SystemExit(f"bench: unsupported database URL scheme {scheme!r} (use sqlite:// or postgresql://)")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """HEAD of the repository the harness runs from, ``+dirty`` when flywheel's code has local edits."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "flywheel", "flywheel_plugins"], cwd=REPO,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    cpu = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gb": mem_gb, "os": platform.platform()}


def postgres_server_version(url: str) -> str | None:
    try:
        import psycopg2
    except ImportError:
        return None
    try:
        conn = psycopg2.connect(_admin_dsn(url), connect_timeout=5)
    except Exception:  # noqa: BLE001 - reported as unknown
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def versions(url: str) -> dict[str, Any]:
    dialect = dialect_of(url)
    return {
        "python": platform.python_version(),
        "flywheel": _version("flywheel"),
        "peewee": _version("peewee"),
        "sqlite": sqlite3.sqlite_version,
        "psycopg2": _version("psycopg2-binary") or _version("psycopg2"),
        "postgres": postgres_server_version(url) if dialect == "postgres" else None,
    }


def cpu_snapshot() -> tuple[float, float, float]:
    """(host busy jiffies, host total jiffies, this process's + its reaped children's CPU seconds)."""
    busy = total = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        total = sum(fields[:8])
        busy = total - idle
    t = os.times()
    return busy, total, t.user + t.system + t.children_user + t.children_system


def noise(before: tuple[float, float, float], load_before: float) -> dict[str, Any]:
    """How busy the host was during a measurement, to judge a noisy neighbour after the fact.

    ``host_cpu_busy``: share of all cores busy (0..1) over the measurement, whoever used it;
    ``own_cpu_s``: CPU seconds of the harness and its runner processes (not the database
    server's); ``load1_before``/``load1_after``: the 1-minute load average.
    """
    after = cpu_snapshot()
    total = after[1] - before[1]
    return {
        "host_cpu_busy": round((after[0] - before[0]) / total, 3) if total > 0 else None,
        "own_cpu_s": round(after[2] - before[2], 3),
        "load1_before": round(load_before, 2),
        "load1_after": round(os.getloadavg()[0], 2),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- fresh databases -----------------------------------------------------------


def _admin_dsn(url: str) -> str:
    """The URL without flywheel-only query parameters, for a plain psycopg2 connection."""
    return url


def schema_url(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def fresh_database(url: str, *, keep: bool = False) -> Iterator[str]:
    """A URL naming an empty database: a new temp file (SQLite) or a new schema (PostgreSQL), removed after."""
    dialect = dialect_of(url)
    if dialect == "sqlite":
        base = _sqlite_dir(url)
        tmpdir = tempfile.mkdtemp(prefix="flywheel-bench-", dir=base)
        try:
            yield f"sqlite:///{os.path.join(tmpdir, 'bench.db')}"
        finally:
            if not keep:
                shutil.rmtree(tmpdir, ignore_errors=True)
        return
    with fresh_schema(url, keep=keep) as schema:
        yield schema_url(url, schema)


@contextlib.contextmanager
def fresh_schema(url: str, *, keep: bool = False) -> Iterator[str]:
    """The name of a new, empty PostgreSQL schema (dropped afterwards)."""
    import psycopg2

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(_admin_dsn(url), connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        if not keep:
            with conn.cursor() as cur:
                cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def _sqlite_dir(url: str) -> str | None:
    """``--db sqlite:`` alone means the system temp dir; ``sqlite:////some/dir/x.db`` puts files in /some/dir."""
    rest = url[len("sqlite:"):]
    if rest.startswith("///") and len(rest) > 3:
        path = Path(rest[3:].split("?", 1)[0])
        directory = path if path.is_dir() else path.parent
        if str(directory) and directory.is_dir():
            return str(directory.resolve())
    return None


def url_netloc(url: str) -> str:
    """host:port of a URL, for the report (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}:{parts.port or ''}"
