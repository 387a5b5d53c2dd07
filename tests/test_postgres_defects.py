"""Regression tests of issue 7's PostgreSQL-side defects (6, 7, 8 and the scheduler part of 10).

Each is named after its defect and failed on 1d50d84.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import flywheel
from flywheel import Scheduler
from flywheel.cli import build_cli
from flywheel.clock import SystemClock
from flywheel.plugins import make_plugin_manager
from flywheel.redact import redact_url
from flywheel_plugins.postgres import PostgresDriver
from tests.conftest import _pg_admin, require_pg
from tests.helpers import run_rows, wait_for

REPO = Path(__file__).resolve().parents[1]


# -- defect 6: passwords of malformed URLs --------------------------------------------------


class PasswordServer:
    """A loopback server speaking PostgreSQL's start-up protocol: it asks for a cleartext password
    and rejects it with SQLSTATE 28P01, as a server with password auth does for a wrong one.

    The local PostgreSQL trusts loopback (and its pg_hba must not be touched), so this is the
    way to make libpq really authenticate with a password here. Its error also quotes the
    password it received, as a pooler or proxy might: flywheel must hide it anyway.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[str, str]] = []  # (user, password) of each attempt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError, ValueError, struct.error):
                conn.settimeout(5)
                self._handle(conn)

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ValueError("client went away")
            data += chunk
        return data

    def _handle(self, conn: socket.socket) -> None:
        while True:
            length, code = struct.unpack("!ii", self._read(conn, 8))
            body = self._read(conn, length - 8)
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                conn.sendall(b"N")
                continue
            break
        pieces = body.split(b"\0")
        user = dict(zip(pieces[::2], pieces[1::2], strict=False)).get(b"user", b"").decode()
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        kind, (length,) = self._read(conn, 1), struct.unpack("!i", self._read(conn, 4))
        assert kind == b"p"
        password = self._read(conn, length - 4).rstrip(b"\0").decode()
        self.received.append((user, password))
        message = f'password authentication failed for user "{user}" (it sent "{password}")'
        fields = b"".join(tag + value.encode() + b"\0" for tag, value in (
            (b"S", "FATAL"), (b"V", "FATAL"), (b"C", "28P01"), (b"M", message))) + b"\0"
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)


@pytest.fixture
def pw_role() -> Iterator[tuple[str, str]]:
    """A real role with a real (scram) password on the local server, dropped afterwards."""
    require_pg()
    role, password = f"fw_pgops_pw_{uuid.uuid4().hex[:10]}", f"R1ght-{uuid.uuid4().hex[:8]}"
    conn = _pg_admin()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
    try:
        yield role, password
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        conn.close()


def _exception_text(exc: BaseException | None) -> str:
    seen: list[str] = []
    while exc is not None and len(seen) < 10:
        seen.append(f"{exc!s} {exc!r} {getattr(exc, 'args', '')}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(seen)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FLYWHEEL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "flywheel", *args[:-1], "--db", url, *args[-1].split()],
                          env=env, text=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("case", ["unclosed-ipv6-bracket", "unencoded-at", "wrong-password", "server-error"])
def test_defect_6_a_url_password_never_reaches_an_error_a_log_record_or_the_cli(
    case: str, pw_role: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    role, right_password = pw_role
    server: PasswordServer | None = None
    if case == "unclosed-ipv6-bracket":
        secrets = ["Sup3rS3cretPW"]
        url, expected = "postgresql://postgres:Sup3rS3cretPW@[::1/db", "IPv6"
    elif case == "unencoded-at":
        secrets = ["Sup3r@S3cretPW", "S3cretPW"]  # libpq would make the tail part of the host name
        url, expected = "postgresql://postgres:Sup3r@S3cretPW@127.0.0.1:5432/flywheel_test", "%40"
    elif case == "wrong-password":
        server = PasswordServer()
        secrets = [f"Wr0ng-{uuid.uuid4().hex[:8]}"]
        url = f"postgresql://{role}:{secrets[0]}@127.0.0.1:{server.port}/flywheel_test?connect_timeout=5"
        expected = "password authentication failed"
    else:  # the real server refuses the login (a database that does not exist), the password in the URL
        secrets = [right_password]
        url = f"postgresql://{role}:{right_password}@127.0.0.1:5432/fw_pgops_nodb_{uuid.uuid4().hex[:6]}"
        expected = "does not exist"
    caplog.set_level(logging.DEBUG)
    try:
        assert all(s not in redact_url(url) for s in secrets)
        # the API: connect (a malformed URL is refused here) and migrate (the login fails here)
        with pytest.raises((ValueError, flywheel.FlywheelError)) as caught:
            db = flywheel.connect(url)
            assert all(s not in db.url and s not in repr(db) for s in secrets)
            flywheel.migrate(db)
        text = _exception_text(caught.value)
        assert all(s not in text for s in secrets), text
        assert expected in str(caught.value), text  # and it says what was wrong
        if server is not None:  # the password really was sent, and really rejected
            assert server.received and server.received[0] == (role, secrets[0])
            # a runner polling, the LISTEN connection and the maintenance lock: their log records too
            with pytest.raises(TimeoutError):
                flywheel.Runner(db, flywheel.Registry(), poll_interval=0.01).run_until_idle(timeout=0.3)
            assert db.driver.singleton(db, "x").acquire() is False
            db.driver.wait_for_work(db, ["default"], 0.3)
            db.driver.close()
            assert any(expected in r.getMessage() for r in caplog.records)
        assert all(s not in caplog.text for s in secrets), caplog.text
        # the CLI: in-process through click, and the real command's output (also with -v)
        result = CliRunner().invoke(build_cli(make_plugin_manager()), ["--db", url, "migrate"])
        assert result.exit_code != 0
        assert all(s not in result.output + _exception_text(result.exception) for s in secrets)
        for args in (("migrate",), ("enqueue k {}",), ("-v", "migrate")):
            done = _cli(url, *args)
            assert done.returncode == 1, done.stderr
            assert expected in done.stderr, done.stderr
            assert all(s not in done.stdout + done.stderr for s in secrets), done.stderr
    finally:
        if server is not None:
            server.close()


def test_defect_6_the_display_url_hides_the_password_of_odd_urls() -> None:
    def shown(url: str) -> str:
        return PostgresDriver(url).display_url()

    assert shown("postgresql://postgres:Sup3rS3cretPW@[::1/db") == "postgresql://postgres:***@[::1/db"
    assert shown("postgresql://u:Sup3r@S3cretPW@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert shown("postgresql://u:pa?ss#word@h/db") == "postgresql://u:***@h/db"  # libpq reads pa?ss#word
    assert shown("postgresql://u:s3cr%40t@h/db?password=x&sslmode=require") == \
        "postgresql://u:***@h/db?password=***&sslmode=require"
    assert shown("postgresql://h/db") == "postgresql://h/db"
    assert redact_url("postgresql://u:pa?ss#word@h/db") == shown("postgresql://u:pa?ss#word@h/db")
    assert flywheel.redact.scrub_url_secrets('host "S3cretPW@h" unknown', "postgresql://u:Sup3r@S3cretPW@h/db") == \
        'host "***@h" unknown'


# -- defect 7: clock skew ------------------------------------------------------------------


class SkewedWallClock(SystemClock):
    """This node's wall clock, ``offset`` off the true time (a node whose NTP is broken)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + self.offset


def _in_clock(clock: flywheel.clock.Clock, fn: Any, *args: Any) -> threading.Thread:
    def run() -> None:
        with flywheel.use_clock(clock):
            fn(*args)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_defect_7_a_node_whose_clock_is_a_minute_ahead_reclaims_no_live_job(pg_schema_url: str) -> None:
    """Runner A keeps true time; runner B and its sweeping scheduler run 60 s ahead (both are
    wall clocks, so on PostgreSQL leases, due times and the sweep go by the database's clock)."""
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    registry = flywheel.Registry()

    @registry.worker("work")
    def work(job: flywheel.Job[Any]) -> flywheel.Result:
        time.sleep(job.args["sleep"])  # several sweeps pass while it runs
        return flywheel.Result(output={"ok": True})

    client = flywheel.Client(db)
    first = [client.enqueue("work", {"sleep": 1.5}) for _ in range(3)]
    runner_a = flywheel.Runner(db, registry, concurrency=3, lease=2.0, poll_interval=0.05)
    errors: list[BaseException] = []

    def until_idle(runner: flywheel.Runner) -> None:
        try:
            runner.run_until_idle(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    a = _in_clock(flywheel.clock.SYSTEM_CLOCK, until_idle, runner_a)
    wait_for(lambda: db.Job.select().where(db.Job.state == "running").count() == 3, what="A to run its jobs")
    second = [client.enqueue("work", {"sleep": 0.5}) for _ in range(3)]
    ahead = SkewedWallClock(timedelta(seconds=60))
    scheduler = Scheduler(db, sweep_interval=0.05, tick_interval=1.0)
    stop = threading.Event()
    sweeper = _in_clock(ahead, scheduler.run, stop)
    swept: list[int] = []
    b = _in_clock(ahead, until_idle, flywheel.Runner(db, registry, concurrency=2, lease=2.0, poll_interval=0.05))
    with flywheel.use_clock(ahead):
        while a.is_alive() or b.is_alive():
            swept.append(scheduler.sweep())  # and a direct sweep from the skewed node, as fast as it goes
            time.sleep(0.02)
    stop.set()
    sweeper.join(10)
    assert not errors, errors
    assert sum(swept) == 0
    for job_id in first + second:
        runs = run_rows(db, job_id)
        assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "success")], runs
    db.close()


def test_defect_7_an_injected_clock_still_drives_the_postgres_sweep(pg_schema_url: str) -> None:
    """A FixedClock is virtual time the test controls: the sweep goes by it, not by the database's."""
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    job_id = flywheel.Client(db).enqueue("k", {})
    with flywheel.use_clock(flywheel.FixedClock(datetime.now(UTC))) as clock:
        claimed = db.driver.claim(db, _request(clock.now(), 30))
        assert [job.id for job in claimed] == [job_id]
        assert Scheduler(db).sweep() == 0
        clock.advance(31)
        assert Scheduler(db).sweep() == 1
    db.close()


def test_defect_7_nodes_ahead_or_behind_claim_and_release_by_the_database_clock(pg_schema_url: str) -> None:
    """A node a minute behind still sees a job due now; one a minute ahead that releases a job
    at shutdown makes it due now, not in a minute; and the lease is a duration on the database's clock."""
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    job_id = flywheel.Client(db).enqueue("k", {})
    behind, ahead = SkewedWallClock(timedelta(seconds=-60)), SkewedWallClock(timedelta(seconds=60))
    with flywheel.use_clock(behind):
        (claimed,) = db.driver.claim(db, _request(behind.now(), 30))
    assert claimed.id == job_id
    db_now = db.pw.execute_sql("SELECT now()").fetchone()[0]
    assert db.Job.get_by_id(job_id).leased_until > db_now + timedelta(seconds=25)  # not 35 s in the past
    with flywheel.use_clock(ahead):
        assert db.driver.release_leases(db, [(job_id, claimed.lease_token)], ahead.now()) == 1
    (again,) = db.driver.claim(db, _request(flywheel.clock.now(), 30))  # a node on true time takes it at once
    assert again.id == job_id and again.attempt == 2
    db.close()


def _request(now: datetime, lease_s: float) -> Any:
    from flywheel.storage.driver import ClaimRequest

    return ClaimRequest(queues=("default",), executor_class="", claim_any_class=False, limit=1, now=now,
                        lease_until=now + timedelta(seconds=lease_s), lease_token=flywheel.new_id(),
                        executor_id="test", run_ids=(flywheel.new_id(),))


# -- defect 8: retention racing retry_job -------------------------------------------------------


def test_defect_8_retention_racing_retry_job_never_leaves_a_live_job_without_its_runs(
    db: flywheel.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """retry_job runs between the retention batch's select and its deletes (a hook on the run
    delete): it must wait for the batch (and find the job gone), never commit in between."""
    client = flywheel.Client(db)
    old = datetime.now(UTC) - timedelta(days=30)
    job_id, other = client.enqueue("k", {}), client.enqueue("k", {})
    for jid in (job_id, other):
        db.Job.update(state="succeeded", finalized_at=old, attempt=1).where(db.Job.id == jid).execute()
        db.JobRun.insert(id=flywheel.new_id(), job_id=jid, attempt=1, executor_id="test", started_at=old,
                         finished_at=old, outcome="success", created_at=old).execute()
    outcome: dict[str, Any] = {}

    def retry() -> None:
        if db.dialect == "postgres":
            outcome["pid"] = db.pw.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        try:
            outcome["view"] = flywheel.retry_job(db, job_id)
        except flywheel.JobNotFound as exc:
            outcome["missing"] = exc
        finally:
            db.pw.close()

    real_delete = db.JobRun.delete
    threads: list[threading.Thread] = []

    def delete_hook(*args: Any, **kwargs: Any) -> Any:
        if not threads:  # the batch is selected, nothing deleted yet: retry_job now
            threads.append(threading.Thread(target=retry, daemon=True))
            threads[0].start()
            if db.dialect == "postgres":
                def blocked_or_done() -> bool:
                    if not threads[0].is_alive():
                        return True
                    if "pid" not in outcome:
                        return False
                    row = db.pw.execute_sql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                            (outcome["pid"],)).fetchone()
                    return row is not None and row[0] == "Lock"
                wait_for(blocked_or_done, what="retry_job to commit or to wait for the batch's lock")
            else:  # SQLite: writers are serialised; it cannot commit inside the batch anyway
                threads[0].join(0.3)
        return real_delete(*args, **kwargs)

    monkeypatch.setattr(db.JobRun, "delete", delete_hook)
    deleted = flywheel.delete_finished_jobs(db, datetime.now(UTC) - timedelta(days=7))
    monkeypatch.undo()
    threads[0].join(20)
    assert not threads[0].is_alive()
    live = db.Job.select().where(db.Job.id == job_id).first()
    if live is None:  # the batch won: the job and its history are gone together
        assert deleted == 2 and "missing" in outcome and run_rows(db, job_id) == []
    else:  # retry_job won: the revived job keeps its history
        assert live.state == "available" and deleted == 1
        assert [r["outcome"] for r in run_rows(db, job_id)] == ["success"]
    assert db.Job.select().where(db.Job.id == other).count() == 0 and run_rows(db, other) == []


def test_defect_8_retention_skips_a_job_another_transaction_holds(pg_schema_url: str) -> None:
    """A retry_job in flight (uncommitted) holds the row: the batch skips it, without waiting,
    and leaves its runs alone."""
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    client = flywheel.Client(db)
    old = datetime.now(UTC) - timedelta(days=30)
    held, other = client.enqueue("k", {}), client.enqueue("k", {})
    for jid in (held, other):
        db.Job.update(state="succeeded", finalized_at=old, attempt=1).where(db.Job.id == jid).execute()
        db.JobRun.insert(id=flywheel.new_id(), job_id=jid, attempt=1, executor_id="test", started_at=old,
                         finished_at=old, outcome="success", created_at=old).execute()
    schema = db.pw.execute_sql("SELECT current_schema()").fetchone()[0]
    locker = _pg_admin()
    locker.autocommit = False
    result: dict[str, Any] = {}
    try:
        with locker.cursor() as cur:
            cur.execute(f"SET search_path = {schema}")
            cur.execute("UPDATE jobs SET state = 'available', finalized_at = NULL WHERE id = %s", (held,))
        worker = threading.Thread(
            target=lambda: result.update(deleted=flywheel.delete_finished_jobs(db, datetime.now(UTC))), daemon=True)
        worker.start()
        worker.join(10)
        finished_while_held = not worker.is_alive()
    finally:
        locker.commit()
        locker.close()
    worker.join(20)
    assert finished_while_held  # it did not wait for the held row
    assert result["deleted"] == 1
    assert db.Job.get_by_id(held).state == "available"
    assert [r["outcome"] for r in run_rows(db, held)] == ["success"]
    assert run_rows(db, other) == []
    db.close()


# -- defect 10 (scheduler part): it closed the runners' LISTEN connection ------------------------


def test_defect_10_a_stopping_scheduler_leaves_the_runners_listen_connection_alone(pg_schema_url: str) -> None:
    """A runner that waits on LISTEN with a long poll interval is woken by an enqueue's NOTIFY;
    a scheduler on the same database stopping in between must not close that connection."""
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    registry = flywheel.Registry()
    done = threading.Event()

    @registry.worker("ping")
    def ping(job: flywheel.Job[Any]) -> None:
        done.set()

    runner = flywheel.Runner(db, registry, poll_interval=60, max_poll_backoff=60)
    stop_runner = threading.Event()
    runner_thread = threading.Thread(target=runner.run, args=(stop_runner,), daemon=True)
    runner_thread.start()
    wait_for(lambda: db.driver._listener is not None and db.driver._listener.is_alive(), what="the LISTEN thread")
    listener = db.driver._listener

    scheduler = Scheduler(db, tick_interval=0.05, sweep_interval=0.05)
    stop = threading.Event()
    sched_thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    sched_thread.start()
    wait_for(lambda: scheduler._leading is not None, what="the scheduler's first pass")
    stop.set()
    sched_thread.join(10)
    assert not sched_thread.is_alive()

    assert db.driver._listener is listener and listener.is_alive()
    flywheel.Client(db).enqueue("ping", {})
    wait_for(done.is_set, timeout=20, what="the NOTIFY to wake the runner (its poll interval is 60 s)")
    stop_runner.set()
    runner.stop()
    runner_thread.join(20)
    db.close()
