"""The PostgreSQL driver plugin: URLs and secrets, the claim and its index, inserts and
NOTIFY, LISTEN wake-ups, healing connections, the sweep, the advisory lock and migrate.

Every test runs against the real server in a fresh schema (``pg_schema_url``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import attrs
import peewee
import pytest

import flywheel
from flywheel.api.client import build_job_row
from flywheel.storage.driver import ClaimRequest, FinalizePlan
from flywheel.enums import JobState, RunOutcome
from flywheel_plugins import postgres
from flywheel_plugins.postgres.statements import ENQUEUE_ONE_EXECUTE, ENQUEUE_ONE_PREPARE
from flywheel_plugins.postgres import (
    INSTALL_HINT,
    PostgresDriver,
    channel_name,
    claim_sql,
    connection_params,
    hide_password,
    lost_connection,
)
from tests.conftest import PG_URL, require_pg
from tests.helpers import in_thread, wait_for

ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class Noop:
    kind: ClassVar[str] = "noop"
    n: int = 0


def admin() -> Any:
    import psycopg2

    conn = psycopg2.connect(PG_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


def with_params(url: str, **params: str) -> str:
    extra = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


@pytest.fixture
def pg(pg_schema_url: str) -> Iterator[flywheel.Database]:
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    yield db
    db.driver.close()
    db.close()


def schema_of(db: flywheel.Database) -> str:
    return str(db.pw.execute_sql("SELECT current_schema()").fetchone()[0])


def request_for(queues: tuple[str, ...] = ("default",), limit: int = 8, *, executor_class: str = "",
                claim_any_class: bool = False, now: datetime | None = None) -> ClaimRequest:
    now = now or flywheel.clock.now()
    return ClaimRequest(queues=queues, executor_class=executor_class, claim_any_class=claim_any_class,
                        limit=limit, now=now, lease_until=now + timedelta(seconds=30),
                        lease_token=flywheel.new_id(), executor_id="test:1",
                        run_ids=tuple(flywheel.new_id() for _ in range(limit)))


def terminate(application_name: str) -> int:
    """``pg_terminate_backend`` every backend with this application_name; returns how many.

    Returns once they have exited, so their clients have been told (the server's goodbye is on the socket).
    """
    conn = admin()
    with conn.cursor() as cur:
        cur.execute("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
                    " AND pid <> pg_backend_pid()", (application_name,))
        pids = {int(pid) for pid, terminated in cur.fetchall() if terminated}
    conn.close()
    wait_for(lambda: not pids & {pid for pid, _ in backends(application_name)}, what="the terminated backends to exit")
    return len(pids)


def terminate_during(application_name: str, statement: str) -> threading.Thread:
    """Terminate the backends of ``application_name`` once one of them is running ``statement``."""

    def run() -> None:
        wait_for(lambda: any(query == statement for _, query in backends(application_name)),
                 what=f"{statement!r} to run")
        terminate(application_name)

    return in_thread(run)


def waiting(db: flywheel.Database, count: int = 1) -> Any:
    """A predicate: ``count`` threads wait on the driver's LISTEN connection (for ``wait_for``)."""
    return lambda: db.driver._listener is not None and db.driver._listener.waiters == count


def backends(application_name: str) -> list[tuple[int, str]]:
    conn = admin()
    with conn.cursor() as cur:
        cur.execute("SELECT pid, query FROM pg_stat_activity WHERE application_name = %s", (application_name,))
        rows = cur.fetchall()
    conn.close()
    return rows


# -- URLs, settings and secrets -----------------------------------------------------------


def test_both_schemes_open_the_postgres_driver() -> None:
    for url in ("postgresql://u:pw@localhost/db", "postgres://u:pw@localhost/db", "POSTGRESQL://u@h/db"):
        assert isinstance(postgres.flywheel_driver(url=url), PostgresDriver)
    for url in ("sqlite:///x.db", "postgresqlx://h/db", "mysql://h/db", "postgres:/nope"):
        assert postgres.flywheel_driver(url=url) is None
    assert postgres.URL_SCHEMES == ("postgresql", "postgres")


def test_unknown_scheme_error_names_the_postgres_schemes() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        flywheel.connect("mysql://h/db")


def test_display_url_hides_the_password_everywhere() -> None:
    assert hide_password("postgresql://bob:s3cr%40t@db:5432/app?sslmode=require") == \
        "postgresql://bob:***@db:5432/app?sslmode=require"
    assert "hunter2" not in hide_password("postgres://bob@db/app?password=hunter2&sslmode=require")
    assert hide_password("postgresql://db/app") == "postgresql://db/app"
    driver = PostgresDriver("postgresql://bob:hunter2@db/app")
    assert "hunter2" not in driver.display_url()


def test_url_query_parameters_are_honoured_and_defaults_fill_the_gaps() -> None:
    require_pg()
    params = connection_params("postgres://u:p@h:6543/app?options=-csearch_path%3Dx&connect_timeout=3"
                               "&application_name=mine")
    assert (params["host"], params["port"], params["dbname"], params["user"]) == ("h", "6543", "app", "u")
    assert params["connect_timeout"] == "3" and params["application_name"] == "mine"
    assert params["options"].startswith("-csearch_path=x ") and "statement_timeout=30s" in params["options"]
    assert params["keepalives"] == 1 and params["keepalives_idle"] == 10 and params["tcp_user_timeout"] == 30000
    # The caller's own session settings win over the defaults.
    own = connection_params("postgresql://h/app?options=-c%20statement_timeout%3D5s%20-c%20TimeZone%3DEurope/Paris")
    assert own["options"].count("statement_timeout") == 1 and "statement_timeout=5s" in own["options"]
    assert own["options"].count("TimeZone") == 1


def test_a_connection_carries_the_session_settings(pg: flywheel.Database, pg_schema_url: str) -> None:
    def show(setting: str) -> str:
        return str(pg.pw.execute_sql(f"SHOW {setting}").fetchone()[0])

    assert show("statement_timeout") == "30s"
    assert show("TimeZone") == "UTC"
    assert show("search_path") == pg_schema_url.rsplit("%3D", 1)[1]
    assert show("application_name") == "flywheel"
    dsn = pg.pw.connection().get_dsn_parameters()
    assert (dsn["keepalives"], dsn["keepalives_idle"], dsn["keepalives_interval"], dsn["keepalives_count"]) == \
        ("1", "10", "5", "3")


def test_the_statement_timeout_cuts_a_hung_statement_and_is_transient(pg_schema_url: str) -> None:
    db = flywheel.connect(pg_schema_url)
    db.pw.execute_sql("SET statement_timeout = '100ms'")
    started = time.monotonic()
    with pytest.raises(peewee.OperationalError) as caught:
        db.pw.execute_sql("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 2
    assert db.driver.is_transient(caught.value) and not lost_connection(caught.value)
    assert db.pw.execute_sql("SELECT 1").fetchone()[0] == 1  # the connection is still good
    db.close()


def test_the_password_never_appears_in_connection_errors(caplog: pytest.LogCaptureFixture) -> None:
    require_pg()
    secret = "Sup3r-Secret-pw"
    url = f"postgresql://postgres:{secret}@127.0.0.1:1/flywheel_test?connect_timeout=2"
    db = flywheel.connect(url)  # connecting is lazy: the first statement fails
    assert secret not in repr(db) and secret not in db.url
    with pytest.raises(peewee.OperationalError) as caught:
        db.pw.execute_sql("SELECT 1")
    seen = [caught.value, caught.value.__cause__, caught.value.__context__, getattr(caught.value, "orig", None)]
    text = " ".join(f"{e!s} {e!r}" for e in seen if e is not None)
    assert "127.0.0.1" in text and secret not in text
    assert db.driver.is_transient(caught.value) and lost_connection(caught.value)
    wrapped = flywheel.wrap_db_error(caught.value)
    assert secret not in str(wrapped)
    # Through the runner too: a poll that fails is logged without the secret.
    caplog.set_level(logging.WARNING)
    registry = flywheel.Registry()
    with pytest.raises(TimeoutError):
        flywheel.Runner(db, registry, poll_interval=0.01).run_until_idle(timeout=0.3)
    assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)
    # A malformed URL is refused without echoing the secret either.
    with pytest.raises(ValueError) as malformed:
        flywheel.connect(f"postgresql://postgres:{secret}@127.0.0.1:5432/db?bogus=1")
    assert "bogus" in str(malformed.value) and secret not in str(malformed.value)
    # A listener or lock that cannot connect logs without the secret.
    caplog.clear()
    assert db.driver.singleton(db, "x").acquire() is False
    db.driver.wait_for_work(db, ["default"], 0.3)
    db.driver.close()
    assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)


def test_the_module_imports_without_psycopg2_and_hints_the_extra() -> None:
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "psycopg2" or name.startswith("psycopg2."):
            raise ImportError("No module named 'psycopg2' (blocked)")
sys.meta_path.insert(0, Block())
import flywheel
import flywheel_plugins.postgres as pg
db = flywheel.connect("sqlite://:memory:")
assert "psycopg2" not in sys.modules, "flywheel imported psycopg2"
try:
    flywheel.connect("postgresql://u:secret@localhost/db")
except flywheel.FlywheelError as exc:
    assert isinstance(exc, ImportError)
    print(exc)
else:
    raise SystemExit("no error")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert INSTALL_HINT in done.stdout and INSTALL_HINT == "pip install 'flywheel-jobs[postgres]'"
    assert "secret" not in done.stdout


def test_the_kernel_does_not_import_psycopg2() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "flywheel").rglob("*.py") if "psycopg2" in p.read_text()]
    assert offenders == []


# -- schema ---------------------------------------------------------------------------------


def test_migrate_uses_jsonb_and_timestamptz_and_sets_storage_parameters(pg: flywheel.Database) -> None:
    types = dict(pg.pw.execute_sql(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'jobs'").fetchall())
    assert types["args"] == "jsonb" and types["metadata"] == "jsonb" and types["tags"] == "jsonb"
    assert types["scheduled_at"] == "timestamp with time zone"
    flywheel.migrate(pg)  # idempotent
    options = pg.pw.execute_sql("SELECT reloptions FROM pg_class WHERE oid = to_regclass('jobs')").fetchone()[0]
    assert sorted(options) == ["autovacuum_vacuum_cost_limit=1000", "autovacuum_vacuum_scale_factor=0.02",
                               "fillfactor=80"]
    indexes = {r[0] for r in pg.pw.execute_sql(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()").fetchall()}
    assert {"jobs_ready", "jobs_unique_key", "jobs_running_leased", "job_runs_job_attempt"} <= indexes


def test_concurrent_migrations_do_not_race(pg_schema_url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            db = flywheel.connect(pg_schema_url)
            flywheel.migrate(db)
            db.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def test_json_values_round_trip_as_stored(pg: flywheel.Database) -> None:
    """A JSON string output ("done") is not decoded twice; dicts and lists come back as themselves."""
    registry = flywheel.Registry()
    registry.worker("echo")(lambda job: flywheel.Result(output="done"))
    client = flywheel.Client(pg, registry=registry)
    job_id = client.enqueue("echo", {"nested": {"a": [1, 2, "x"]}}, tags=["t1"])
    flywheel.Runner(pg, registry, poll_interval=0.01).run_until_idle(timeout=10)
    assert flywheel.find_job(pg, job_id).args == {"nested": {"a": [1, 2, "x"]}}
    # (read through the model: flywheel.list_runs decodes the already-decoded output a second
    # time, on both dialects, so a bare JSON string output breaks it — a kernel bug in ops.run_view)
    assert pg.JobRun.get(pg.JobRun.job_id == job_id).output == "done"
    assert pg.Job.get_by_id(job_id).tags == ["t1"]


# -- the claim ------------------------------------------------------------------------------


def insert_ready(db: flywheel.Database, n: int, *, queue_every: int = 0) -> None:
    """``n`` ready jobs inserted server-side in one statement (fast)."""
    other = f"CASE WHEN g %% {queue_every} = 0 THEN 'other' ELSE 'default' END" if queue_every else "'default'"
    db.pw.execute_sql(f"""
        INSERT INTO jobs (id, created_at, updated_at, metadata, kind, queue, args, priority, state, attempt,
                          max_attempts, scheduled_at, executor_class, tags)
        SELECT lpad(g::text, 12, '0'), now(), now(), '{{}}', 'noop', {other}, '{{}}', 100 + g %% 3,
               'available', 0, 25, now() - interval '1 hour' + g * interval '1 ms', '', '[]'
        FROM generate_series(1, %s) AS g""", (n,))


def test_the_claim_is_served_by_the_jobs_ready_index(pg: flywheel.Database) -> None:
    insert_ready(pg, 100_000, queue_every=10)
    pg.pw.execute_sql("ANALYZE jobs")
    cases = [
        request_for(("default",)),
        request_for(("default",), claim_any_class=True),
        request_for(("default",), executor_class="gpu", limit=32),
        request_for(("default", "other")),
        request_for(("nothing-here",)),
    ]
    for request in cases:
        sql, params = claim_sql(request)
        plan = "\n".join(row[0] for row in pg.pw.execute_sql("EXPLAIN " + sql, params).fetchall())
        assert "Seq Scan on jobs" not in plan, plan
        assert "Index Scan using jobs_ready on jobs" in plan, plan
        due = plan.split("CTE due")[1].split("CTE claimed")[0]
        if len(request.queues) == 1:  # the index hands the rows over in claim order: no sort
            assert "Sort" not in due, plan
    # and the statement itself claims in (priority, scheduled_at, id) order
    claimed = pg.driver.claim(pg, request_for(("default",), limit=5))
    assert [j.id for j in claimed] == ["000000000003", "000000000006", "000000000009", "000000000012",
                                       "000000000015"]  # priority 100 = g % 3 == 0, oldest first


def test_claim_orders_leases_and_writes_started_runs_in_one_round_trip(
    pg: flywheel.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = flywheel.Client(pg)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = {
        "late-high": client.insert(Noop(1), priority=10, schedule_at=base + timedelta(seconds=5)),
        "early-low": client.insert(Noop(2), priority=200, schedule_at=base),
        "early-high": client.insert(Noop(3), priority=10, schedule_at=base),
        "future": client.insert(Noop(4), priority=0, schedule_at=base + timedelta(days=3650)),
        "other-queue": client.insert(Noop(5), priority=0, queue="other"),
        "gpu-only": client.insert(Noop(6), priority=0, executor_class="gpu"),
    }
    calls: list[Any] = []
    real = postgres.connection.execute
    monkeypatch.setattr(postgres.driver, "execute", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    request = request_for(("default",), limit=10)
    before = pg.pw.execute_sql("SELECT clock_timestamp()").fetchone()[0]
    calls.clear()
    claimed = pg.driver.claim(pg, request)
    assert len(calls) == 1  # one statement, one round trip
    after = pg.pw.execute_sql("SELECT clock_timestamp()").fetchone()[0]
    assert [j.id for j in claimed] == [ids["early-high"], ids["late-high"], ids["early-low"]]
    assert [j.run_id for j in claimed] == list(request.run_ids[:3])
    assert all(j.attempt == 1 and j.lease_token == request.lease_token for j in claimed)
    assert json.loads(claimed[0].args) == {"n": 3}  # JSON text, decoded by the kernel as on SQLite
    rows = {r["id"]: r for r in pg.Job.select().dicts()}
    for job in claimed:
        assert rows[job.id]["state"] == "running" and rows[job.id]["lease_token"] == request.lease_token
        # the lease runs on the database's clock (the default SystemClock is in scope)
        lease = request.lease_until - request.now
        assert before + lease <= rows[job.id]["leased_until"] <= after + lease
    runs = list(pg.JobRun.select().order_by(pg.JobRun.job_id).dicts())
    assert sorted((r["id"], r["job_id"], r["outcome"], r["attempt"], r["executor_id"]) for r in runs) == sorted(
        (j.run_id, j.id, "started", 1, "test:1") for j in claimed)
    # the executor class filter: a gpu runner also takes the gpu-only job; claim_any_class takes anything
    gpu = pg.driver.claim(pg, request_for(("default",), executor_class="gpu"))
    assert [j.id for j in gpu] == [ids["gpu-only"]]
    assert pg.driver.claim(pg, request_for(("default", "other"), claim_any_class=True))[0].id == ids["other-queue"]
    assert pg.driver.claim(pg, request_for(("default",), limit=0)) == []


def test_a_multi_queue_claim_keeps_the_global_order(pg: flywheel.Database) -> None:
    client = flywheel.Client(pg)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    expected = []
    for i in range(12):
        expected.append(client.insert(Noop(i), queue=("a", "b", "c")[i % 3], schedule_at=base + timedelta(seconds=i)))
    claimed = pg.driver.claim(pg, request_for(("c", "a", "b", "a"), limit=5))
    assert [j.id for j in claimed] == expected[:5]
    assert len({j.run_id for j in claimed}) == 5
    # the candidates it looked at but did not take were not leased
    assert flywheel.overview(pg).counts_by_state == {"running": 5, "available": 7}


def test_concurrent_claims_never_take_the_same_job(pg: flywheel.Database) -> None:
    flywheel.Client(pg).insert_many([Noop(i) for i in range(3000)])
    taken: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer() -> None:
        try:
            while True:
                got = pg.driver.claim(pg, request_for(limit=7))
                if not got:
                    return
                with lock:
                    taken.extend(j.id for j in got)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(taken) == len(set(taken)) == 3000
    assert pg.JobRun.select().count() == 3000


# -- inserting and NOTIFY -------------------------------------------------------------------


def test_insert_many_is_chunked_and_skips_unique_collisions(pg: flywheel.Database) -> None:
    client = flywheel.Client(pg)
    existing = client.insert(Noop(0), unique_key="k-5")
    items: list[Any] = [(Noop(i), flywheel.InsertOpts(unique_key=f"k-{i}")) for i in range(2500)]
    ids = client.insert_many(items)
    assert len(ids) == 2500 and ids[5] is None and all(i is not None for n, i in enumerate(ids) if n != 5)
    assert pg.Job.select().count() == 2500
    with pytest.raises(flywheel.AlreadyEnqueued) as dup:
        client.insert(Noop(9), unique_key="k-9")
    assert dup.value.job_id == ids[9]
    assert flywheel.find_job(pg, existing).id == existing


def test_channel_names_are_safe_and_agree_with_the_sql(pg: flywheel.Database) -> None:
    schema = schema_of(pg)
    for queue in ("default", "Mixed Case", "émoji-🚀; DROP TABLE jobs", "x" * 200, ""):
        name = channel_name(schema, queue)
        assert len(name) <= 63 and name.replace("_", "").isalnum() and name.isascii()
        in_sql = pg.pw.execute_sql(f"SELECT {postgres.listener.CHANNEL_SQL.format(q='%s')}", (queue, queue)).fetchone()[0]
        assert in_sql == name
    assert channel_name("a", "q") != channel_name("b", "q")  # schemas do not wake each other


class Listener:
    """A raw LISTEN connection for the tests."""

    def __init__(self, db: flywheel.Database, queue: str = "default") -> None:
        import psycopg2

        self.conn = psycopg2.connect(**db.driver.params)  # type: ignore[attr-defined]
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute(f'LISTEN "{channel_name(schema_of(db), queue)}"')

    def received(self, wait: float = 0.3) -> int:
        import select

        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            select.select([self.conn], [], [], max(0.0, deadline - time.monotonic()))
            self.conn.poll()
        count = len(self.conn.notifies)
        self.conn.notifies.clear()
        return count

    def close(self) -> None:
        self.conn.close()


def test_an_insert_notifies_its_queue_in_one_round_trip(pg: flywheel.Database,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    listener = Listener(pg)
    calls: list[Any] = []
    real = postgres.connection.execute
    monkeypatch.setattr(postgres.driver, "execute", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    flywheel.Client(pg).insert(Noop(1))  # a connection's first insert also prepares the statement
    assert calls[-1] == ENQUEUE_ONE_EXECUTE and "pg_notify" in ENQUEUE_ONE_PREPARE
    assert listener.received() == 1
    calls.clear()
    flywheel.Client(pg).insert(Noop(2))
    assert calls == [ENQUEUE_ONE_EXECUTE]  # one statement: the insert, its NOTIFY and (autocommit) the commit
    assert listener.received() == 1
    flywheel.Client(pg).insert(Noop(1), queue="elsewhere")
    assert listener.received() == 0
    flywheel.Client(pg).insert_many([Noop(i) for i in range(1500)])
    assert listener.received() == 1  # one wake-up per queue per transaction, not per row
    # a unique collision lands nothing and wakes nobody
    flywheel.Client(pg).insert(Noop(1), unique_key="u")
    listener.received()
    with pytest.raises(flywheel.AlreadyEnqueued):
        flywheel.Client(pg).insert(Noop(1), unique_key="u")
    assert listener.received() == 0
    listener.close()


def test_a_rolled_back_insert_wakes_nobody_and_a_committed_outbox_insert_does(pg: flywheel.Database) -> None:
    listener = Listener(pg)
    client = flywheel.Client(pg)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), pg.atomic():
        client.insert(Noop(1))
        raise Boom
    assert listener.received() == 0 and pg.Job.select().count() == 0

    with pg.atomic():
        job_id = client.insert(Noop(2))
        assert listener.received(0.2) == 0  # not before the caller's commit
        # the insert joined the caller's transaction: another connection cannot see it yet
        other = flywheel.connect(pg.driver.url)
        assert other.Job.select().where(other.Job.id == job_id).count() == 0
        other.close()
    assert listener.received() == 1
    assert pg.Job.select().count() == 1
    listener.close()


# -- LISTEN wake-ups ------------------------------------------------------------------------


def settle(db: flywheel.Database, queues: tuple[str, ...] = ("default",)) -> None:
    """Wait until the listener is up and this thread has seen every wake-up so far."""
    db.driver.wait_for_work(db, queues, 0.01)
    wait_for(lambda: db.driver._listener is not None and db.driver._listener._conn is not None
               and not db.driver._listener._pending, what="LISTEN")
    while db.driver.wait_for_work(db, queues, 0.1):
        pass


def timed_wait(db: flywheel.Database, queues: list[str], timeout: float) -> tuple[bool, float]:
    started = time.monotonic()
    woken = db.driver.wait_for_work(db, queues, timeout)
    return woken, time.monotonic() - started


def test_an_idle_runner_wakes_on_a_notification_for_its_queues(pg: flywheel.Database) -> None:
    settle(pg)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(r=timed_wait(pg, ["default"], 5)))
    thread.start()
    wait_for(waiting(pg), what="the runner to wait")
    other = flywheel.connect(pg.driver.url)
    flywheel.Client(other).insert(Noop(1))
    thread.join(10)
    woken, waited = result["r"]
    assert woken and waited < 1.0
    # another queue's insert does not wake it; interrupt_waits does
    settle(pg)
    flywheel.Client(other).insert(Noop(1), queue="elsewhere")
    assert not pg.driver.wait_for_work(pg, ["default"], 0.3)
    interrupter = in_thread(lambda: (wait_for(waiting(pg), what="the runner to wait"), pg.driver.interrupt_waits()))
    woken, waited = timed_wait(pg, ["default"], 5)
    interrupter.join(10)
    assert woken and waited < 2
    other.close()


def test_a_notification_between_two_waits_is_not_lost(pg: flywheel.Database) -> None:
    settle(pg)
    # another thread sees the notification arrive while this one is not waiting (it would be claiming)
    witness: dict[str, bool] = {}
    thread = in_thread(lambda: witness.update(woken=pg.driver.wait_for_work(pg, ["default"], 5)))
    wait_for(waiting(pg), what="the witness to wait")
    flywheel.Client(pg).insert(Noop(1))
    thread.join(10)
    assert witness == {"woken": True}
    woken, waited = timed_wait(pg, ["default"], 5)
    assert woken and waited < 0.1
    woken, waited = timed_wait(pg, ["default"], 0.2)  # and only once
    assert not woken


def test_a_stop_between_two_waits_is_not_lost(pg: flywheel.Database) -> None:
    """A runner stopped while it was claiming must not then sleep a whole poll interval."""
    settle(pg)
    pg.driver.interrupt_waits()
    woken, waited = timed_wait(pg, ["default"], 5)
    assert woken and waited < 0.1


def test_a_stopping_runner_with_a_long_poll_interval_stops_at_once(pg: flywheel.Database) -> None:
    runner = flywheel.Runner(pg, flywheel.Registry(), poll_interval=30)
    thread = threading.Thread(target=runner.run)
    thread.start()
    wait_for(waiting(pg), what="the runner to wait out its poll interval")
    started = time.monotonic()
    runner.stop()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 2


def test_the_listen_connection_comes_back_after_it_is_terminated(
    pg_schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = f"fwtest-{uuid.uuid4().hex[:8]}"
    db = flywheel.connect(with_params(pg_schema_url, application_name=app))
    flywheel.migrate(db)
    caplog.set_level(logging.WARNING, logger="flywheel.postgres")

    def listening() -> set[int]:
        return {pid for pid, query in backends(app) if query.startswith("LISTEN")}

    settle(db)
    for _ in range(3):
        before = listening()
        assert len(before) == 1
        assert terminate(app) >= 1
        # the re-opened listener wakes the waiters once (notifications may have been missed)...
        woken, waited = timed_wait(db, ["default"], 5)
        assert woken and waited < 2
        wait_for(lambda before=before: len(listening() - before) == 1, what="LISTEN again")
        settle(db)
        # ...and real notifications wake them again
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(r=timed_wait(db, ["default"], 5)))
        thread.start()
        wait_for(waiting(db), what="the waiter")
        other = flywheel.connect(pg_schema_url)
        flywheel.Client(other).insert(Noop(1))
        other.close()
        thread.join(10)
        assert result["r"][0] and result["r"][1] < 1
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    back = [r for r in caplog.records if "re-established" in r.getMessage()]
    assert len(lost) == 3 and len(back) == 3, [r.getMessage() for r in caplog.records]  # one line each
    db.driver.close()
    db.close()


def test_the_listener_retires_when_nobody_waits(pg: flywheel.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres.listener, "LISTEN_LINGER_S", 0.2)
    pg.driver.wait_for_work(pg, ["default"], 0.05)
    listener = pg.driver._listener
    assert listener is not None
    listener.join(5)
    assert not listener.is_alive() and pg.driver._listener is None
    pg.driver.wait_for_work(pg, ["default"], 0.05)  # and comes back on demand
    assert pg.driver._listener is not None and pg.driver._listener is not listener


# -- connections that heal --------------------------------------------------------------------


def test_a_terminated_connection_is_replaced_before_it_is_used(pg_schema_url: str) -> None:
    app = f"fwtest-{uuid.uuid4().hex[:8]}"
    db = flywheel.connect(with_params(pg_schema_url, application_name=app))
    flywheel.migrate(db)
    first = db.pw.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    assert terminate(app) == 1
    # no error: the dead connection is noticed (the server said goodbye) and replaced
    second = db.pw.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    assert second != first
    assert flywheel.Client(db).insert(Noop(1))
    db.close()


def test_a_connection_lost_mid_statement_fails_once_then_heals(pg_schema_url: str) -> None:
    app = f"fwtest-{uuid.uuid4().hex[:8]}"
    db = flywheel.connect(with_params(pg_schema_url, application_name=app))
    flywheel.migrate(db)
    killer = terminate_during(app, "SELECT pg_sleep(3)")
    with pytest.raises(peewee.DatabaseError) as caught:
        db.pw.execute_sql("SELECT pg_sleep(3)")
    killer.join(10)
    assert db.driver.is_transient(caught.value) and lost_connection(caught.value)
    db.driver.reset_connection(db)
    assert db.pw.execute_sql("SELECT 1").fetchone()[0] == 1
    # even without reset_connection, the next statement outside a transaction heals
    killer = terminate_during(app, "SELECT pg_sleep(3)")
    with pytest.raises(peewee.DatabaseError):
        db.pw.execute_sql("SELECT pg_sleep(3)")
    killer.join(10)
    assert db.pw.execute_sql("SELECT 1").fetchone()[0] == 1
    db.close()


def test_a_connection_lost_inside_a_transaction_fails_the_transaction(pg_schema_url: str) -> None:
    app = f"fwtest-{uuid.uuid4().hex[:8]}"
    db = flywheel.connect(with_params(pg_schema_url, application_name=app))
    flywheel.migrate(db)
    client = flywheel.Client(db)
    with pytest.raises((peewee.PeeweeException, flywheel.FlywheelError)) as caught, db.atomic():
        client.insert(Noop(1))
        terminate(app)
        client.insert(Noop(2))  # must not silently continue on a new connection
    assert db.driver.is_transient(caught.value) and lost_connection(caught.value)
    assert not db.pw.in_transaction()
    assert db.Job.select().count() == 0  # nothing of the lost transaction survived
    client.insert(Noop(3))
    assert db.Job.select().count() == 1
    db.close()


def test_lost_connections_are_transient_and_sql_errors_are_not(pg: flywheel.Database) -> None:
    with pytest.raises(peewee.ProgrammingError) as bad_sql:
        pg.pw.execute_sql("SELECT * FROM no_such_table")
    assert not pg.driver.is_transient(bad_sql.value) and not lost_connection(bad_sql.value)
    pg.driver.reset_connection(pg)
    with pytest.raises(peewee.IntegrityError) as dup:
        pg.pw.execute_sql("INSERT INTO job_periodics (id, slug, kind, next_run_at, created_at, updated_at, "
                          "interval_seconds) VALUES ('a', 's', 'k', now(), now(), now(), 1), "
                          "('b', 's', 'k', now(), now(), now(), 1)")
    assert not pg.driver.is_transient(dup.value)
    assert pg.driver.is_transient(peewee.OperationalError("server closed the connection unexpectedly"))
    assert pg.driver.is_transient(peewee.InterfaceError("connection already closed"))


def test_a_runner_survives_a_connection_drop_between_jobs(pg_schema_url: str) -> None:
    app = f"fwtest-{uuid.uuid4().hex[:8]}"
    db = flywheel.connect(with_params(pg_schema_url, application_name=app))
    flywheel.migrate(db)
    registry = flywheel.Registry()
    done = []
    registry.worker("noop")(lambda job: done.append(job.id))
    client = flywheel.Client(db)
    stop = threading.Event()
    runner = flywheel.Runner(db, registry, concurrency=2, poll_interval=1.0)
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        for round_ in range(3):
            job_id = client.insert(Noop(round_))
            wait_for(lambda job_id=job_id: job_id in done and flywheel.find_job(db, job_id).state == "succeeded",
                       what="the job")
            terminate(app)
    finally:
        stop.set()
        thread.join(30)
    assert flywheel.overview(db).counts_by_state == {"succeeded": 3}
    db.driver.close()
    db.close()


# -- finalisation ---------------------------------------------------------------------------


def plan_for(job: Any, **changes: Any) -> FinalizePlan:
    now = flywheel.clock.now()
    fields: dict[str, Any] = dict(
        job_id=job.id, run_id=job.run_id, lease_token=job.lease_token, state=JobState.SUCCEEDED, scheduled_at=None,
        finalized_at=now, bump_max_attempts=False, outcome=RunOutcome.SUCCESS, finished_at=now, duration_ms=5,
        error_class=None, error_message=None, output_json='{"ok":true}', cost_micros=7)
    fields.update(changes)
    return FinalizePlan(**fields)


def test_a_finalize_group_keeps_the_kernel_semantics(pg: flywheel.Database) -> None:
    client = flywheel.Client(pg)
    for i in range(5):
        client.insert(Noop(i))
    jobs = pg.driver.claim(pg, request_for(limit=5))
    later = flywheel.clock.now() + timedelta(minutes=5)
    flywheel.cancel_job(pg, jobs[4].id)  # superseded while running
    child = build_job_row("noop", "{}", flywheel.InsertOpts(queue="children"), flywheel.clock.now())
    fenced_child = {**child, "id": flywheel.new_id()}
    plans = [
        plan_for(jobs[0]),
        plan_for(jobs[1], state=JobState.RETRYABLE, scheduled_at=later, finalized_at=None,
                 outcome=RunOutcome.ERROR, error_class="transient", error_message="boom", output_json=None),
        plan_for(jobs[2], state=JobState.SCHEDULED, scheduled_at=later, finalized_at=None, bump_max_attempts=True,
                 outcome=RunOutcome.SNOOZE, output_json=None),
        plan_for(jobs[3], follow_ups=(child,)),
        plan_for(jobs[4], follow_ups=(fenced_child,)),
    ]
    results = pg.driver.finalize(pg, plans)
    assert [(r.job_id, r.superseded, r.enqueued_children) for r in results] == [
        (jobs[0].id, False, 0), (jobs[1].id, False, 0), (jobs[2].id, False, 0), (jobs[3].id, False, 1),
        (jobs[4].id, True, 0)]
    rows = {r["id"]: r for r in pg.Job.select().dicts()}
    assert rows[jobs[0].id]["state"] == "succeeded" and rows[jobs[0].id]["finalized_at"] is not None
    assert rows[jobs[0].id]["lease_token"] is None and rows[jobs[0].id]["leased_until"] is None
    assert (rows[jobs[1].id]["state"], rows[jobs[1].id]["scheduled_at"], rows[jobs[1].id]["finalized_at"]) == (
        "retryable", later, None)
    assert (rows[jobs[2].id]["state"], rows[jobs[2].id]["max_attempts"]) == ("scheduled", 26)
    assert rows[jobs[4].id]["state"] == "cancelled"
    assert child["id"] in rows and fenced_child["id"] not in rows
    runs = {r["job_id"]: r for r in pg.JobRun.select().dicts()}
    assert (runs[jobs[0].id]["outcome"], runs[jobs[0].id]["output"], runs[jobs[0].id]["cost_micros"]) == (
        "success", {"ok": True}, 7)
    assert (runs[jobs[1].id]["error_payload"], runs[jobs[1].id]["error_class"]) == ({"message": "boom"}, "transient")
    assert runs[jobs[3].id]["enqueued_children"] == 1
    assert runs[jobs[4].id]["outcome"] == "success"  # the superseded attempt still records its own run
    # a sweep's verdict on a superseded attempt stands
    client.insert(Noop(9))
    (lost,) = pg.driver.claim(pg, request_for(limit=1))
    # (looking from a minute ahead takes an injected clock: the system clock defers to the database's)
    with flywheel.use_clock(flywheel.FixedClock(flywheel.clock.now() + timedelta(minutes=1))):
        pg.driver.sweep(pg, flywheel.clock.now())
    (result,) = pg.driver.finalize(pg, [plan_for(lost)])
    assert result.superseded
    assert pg.JobRun.get_by_id(lost.run_id).outcome == "crashed"


def test_renewing_leases_is_fenced_by_token(pg: flywheel.Database) -> None:
    client = flywheel.Client(pg)
    for i in range(3):
        client.insert(Noop(i))
    jobs = pg.driver.claim(pg, request_for(limit=3))
    flywheel.cancel_job(pg, jobs[0].id)
    now = flywheel.clock.now()
    before = pg.pw.execute_sql("SELECT clock_timestamp()").fetchone()[0]
    held = pg.driver.renew_leases(pg, [(j.id, j.lease_token) for j in jobs] + [(jobs[1].id, "wrong")],
                                  now + timedelta(minutes=10), now)
    after = pg.pw.execute_sql("SELECT clock_timestamp()").fetchone()[0]
    assert held == {jobs[1].id, jobs[2].id}
    # the renewed lease runs ten minutes on the database's clock (the system clock is in scope) ...
    assert before + timedelta(minutes=10) <= pg.Job.get_by_id(jobs[1].id).leased_until <= after + timedelta(minutes=10)
    # ... and on an injected clock's, when a test injects one
    with flywheel.use_clock(flywheel.FixedClock(datetime(2030, 1, 1, tzinfo=UTC))) as fixed:
        until = fixed.now() + timedelta(minutes=10)
        assert pg.driver.renew_leases(pg, [(jobs[2].id, jobs[2].lease_token)], until, fixed.now()) == {jobs[2].id}
    assert pg.Job.get_by_id(jobs[2].id).leased_until == until


# -- maintenance ----------------------------------------------------------------------------


def test_the_sweep_skips_rows_another_transaction_holds(pg: flywheel.Database) -> None:
    client = flywheel.Client(pg)
    for i in range(3):
        client.insert(Noop(i), max_attempts=1 if i == 2 else 5)
    jobs = pg.driver.claim(pg, request_for(limit=3))
    later = flywheel.clock.now() + timedelta(minutes=1)
    locker = admin()
    locker.autocommit = False
    with locker.cursor() as cur:
        cur.execute(f"SET search_path = {schema_of(pg)}")
        cur.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (jobs[0].id,))
    started = time.monotonic()
    try:
        with flywheel.use_clock(flywheel.FixedClock(later)):  # looks from a minute ahead
            result = pg.driver.sweep(pg, later, batch_size=2)
    finally:
        locker.rollback()
        locker.close()
    assert time.monotonic() - started < 2  # did not wait for the lock
    assert (result.reclaimed, result.discarded) == (1, 1)
    with flywheel.use_clock(flywheel.FixedClock(later)):
        assert pg.driver.sweep(pg, later).reclaimed == 1
    states = {r["id"]: r["state"] for r in pg.Job.select().dicts()}
    assert states == {jobs[0].id: "available", jobs[1].id: "available", jobs[2].id: "discarded"}
    assert {r["outcome"] for r in pg.JobRun.select().dicts()} == {"crashed"}


def test_the_singleton_is_an_advisory_lock_that_survives_its_connection(pg_schema_url: str) -> None:
    app = f"fwtest-{uuid.uuid4().hex[:8]}"
    db = flywheel.connect(with_params(pg_schema_url, application_name=app))
    other = flywheel.connect(pg_schema_url)
    first, second = db.driver.singleton(db, "flywheel-scheduler"), other.driver.singleton(other, "flywheel-scheduler")
    assert first.acquire() is True and first.acquire() is True  # re-entrant, not stacked
    assert second.acquire() is False
    unrelated = other.driver.singleton(other, "something-else")
    assert unrelated.acquire() is True
    unrelated.release()
    first.release()
    first.release()  # idempotent
    assert second.acquire() is True and first.acquire() is False
    second.release()
    assert first.acquire() is True
    # the holding session dies: the lock goes with it, and acquire() notices and takes it again
    assert terminate(app) >= 1
    assert first.acquire() is True
    assert second.acquire() is False
    first.release()
    assert second.acquire() is True
    second.release()
    db.close()
    other.close()


def test_singletons_of_two_schemas_are_independent(pg_schema_url: str) -> None:
    conn = admin()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        one = flywheel.connect(pg_schema_url)
        two = flywheel.connect(pg_schema_url.rsplit("%3D", 1)[0] + "%3D" + schema)
        a, b = one.driver.singleton(one, "x"), two.driver.singleton(two, "x")
        assert a.acquire() and b.acquire()
        a.release()
        b.release()
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def test_bulk_inserts_stream_with_copy_and_keep_every_value(pg: flywheel.Database) -> None:
    client = flywheel.Client(pg)
    nasty = {"tab": "a\tb", "nl": "line1\nline2\r\n", "bs": "C:\\path\\n", "quote": "it's \"q\"", "null": None,
             "uni": "ünïcødé 🚀", "pct": "100% %s %(x)s", "copy_end": "\\.\n"}
    when = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    items: list[Any] = [
        (NastyArgs(payload=nasty, n=i), flywheel.InsertOpts(
            queue="bulk\tq" if i % 2 else "bulk", priority=-i, schedule_at=when, tags=["x\ty", "z"],
            request_id="req\n1", timeout=timedelta(seconds=1.5) if i % 3 == 0 else None))
        for i in range(450)]
    with pg.atomic():  # twice in one transaction: the staging table is emptied between uses
        first = client.insert_many(items[:300])
        second = client.insert_many(items[300:] + [items[0]])
    assert None not in first and None not in second[:-1] and len(set(first + second)) == 451
    row = pg.Job.get_by_id(first[3])
    assert row.args["payload"] == nasty
    assert (row.queue, row.priority, row.scheduled_at, row.tags, row.timeout_ms, row.metadata) == (
        "bulk\tq", -3, when, ["x\ty", "z"], 1500, {"request_id": "req\n1"})
    assert pg.Job.get_by_id(first[4]).timeout_ms is None
    # unique collisions inside a COPY batch are skipped, not fatal
    keyed = [(Noop(i), flywheel.InsertOpts(unique_key=f"u{i % 250}")) for i in range(500)]
    ids = client.insert_many(keyed)
    assert sum(i is not None for i in ids) == 250 and ids[:250] == [i for i in ids[:250] if i]


@attrs.frozen
class NastyArgs:
    kind: ClassVar[str] = "nasty"
    payload: dict[str, Any]
    n: int
