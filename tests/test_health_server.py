"""The health server and /metrics on a real Node, over real HTTP on an ephemeral loopback port.

The database is made unreachable without touching the shared PostgreSQL server: the node
talks to it through a TCP proxy on loopback that the test stops and starts again; for
SQLite the directory holding the file is moved away (new connections cannot open it)
and moved back.
"""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

import flywheel
from flywheel import HealthConfig, Node, RunnerConfig, SchedulerConfig
from flywheel.plugins import make_plugin_manager
from flywheel_plugins.health import HealthServer, HealthServerError
from tests.helpers import run_in_thread, wait_for
from tests.tcp_proxy import TcpProxy

FAST = {"poll_interval": 0.02, "retry_backoff_base": 0.01, "max_retry_backoff": 0.05, "max_poll_backoff": 0.2}
BOUNDED_LABELS = {"kind", "queue", "outcome", "error_class", "executor_class", "state", "le"}


def get(url: str) -> tuple[int, str, str]:
    """``(status, body, content type)`` of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("Content-Type", "")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` parsed with prometheus_client's own parser: (sample name, labels) → value."""
    status, body, _ = get(url + "/metrics")
    assert status == 200, body
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= lbl)


def start_node(db: flywheel.Database, registry: flywheel.Registry, *, pm: Any = None,
               addr: str = "127.0.0.1:0", **config: Any) -> tuple[Node, threading.Thread, list[BaseException]]:
    node = Node(db, registry, runners=[RunnerConfig(concurrency=4, **{**FAST, **config})],
                scheduler=SchedulerConfig(sweep_interval=0.2), health=HealthConfig(addr=addr),
                pm=pm or make_plugin_manager(disabled=[]), drain_timeout=10)
    thread, errors = run_in_thread(node)
    return node, thread, errors


def health_server(node: Node) -> HealthServer:
    wait_for(lambda: any(isinstance(s, HealthServer) for s in node.services), timeout=10, what="the health server")
    server = next(s for s in node.services if isinstance(s, HealthServer))
    wait_for(lambda: server.address[1] != 0, timeout=10, what="the health server to listen")
    return server


def stop(node: Node, thread: threading.Thread, errors: list[BaseException]) -> None:
    node.stop()
    thread.join(20)
    assert not thread.is_alive(), "the node did not stop"
    assert errors == []


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# -- probes and metrics ---------------------------------------------------------------------


def test_metrics_count_exactly_the_jobs_that_succeeded_failed_retried_and_were_superseded(
        db: flywheel.Database, registry: flywheel.Registry) -> None:
    holding, release = threading.Event(), threading.Event()

    @registry.worker("ok")
    def ok(job: flywheel.Job[Any]) -> None:
        return None

    @registry.worker("boom")
    def boom(job: flywheel.Job[Any]) -> None:
        raise flywheel.Permanent("never works")

    @registry.worker("flaky")
    def flaky(job: flywheel.Job[Any]) -> None:
        if job.attempt == 1:
            raise RuntimeError("works the second time")

    @registry.worker("hold")
    def hold(job: flywheel.Job[Any]) -> None:
        holding.set()
        release.wait(20)

    client = flywheel.Client(db)
    ids = {kind: [client.enqueue(kind, {}, queue="q") for _ in range(n)]
           for kind, n in (("ok", 3), ("boom", 2), ("flaky", 2), ("hold", 1))}
    node, thread, errors = start_node(db, registry, queues=["q"])
    try:
        server = health_server(node)
        assert get(server.url + "/healthz")[:2] == (200, "ok\n")
        assert holding.wait(20)
        flywheel.cancel_job(db, ids["hold"][0])  # the running attempt's outcome is fenced: superseded
        release.set()

        def settled() -> bool:
            samples = scrape(server.url)
            return (total(samples, "flywheel_jobs_superseded_total") == 1
                    and total(samples, "flywheel_jobs_finished_total") == 9
                    and total(samples, "flywheel_sweep_duration_seconds_count") >= 1)

        wait_for(settled, timeout=30, what="every attempt to be finalised")
        status, body, content_type = get(server.url + "/metrics")
        samples = scrape(server.url)
    finally:
        release.set()
        stop(node, thread, errors)

    states = flywheel.overview(db).counts_by_state
    assert states == {"succeeded": 5, "discarded": 2, "cancelled": 1}
    assert content_type.startswith("text/plain")
    # one success per succeeded job; one error per failed attempt; one retry; one superseded attempt
    assert total(samples, "flywheel_jobs_finished_total", outcome="success") == states["succeeded"]
    assert total(samples, "flywheel_jobs_finished_total", outcome="error") == 2 + 2
    assert total(samples, "flywheel_jobs_errored_total", error_class="permanent") == 2
    assert total(samples, "flywheel_jobs_errored_total", error_class="transient") == 2
    assert total(samples, "flywheel_jobs_retried_total") == 2
    assert total(samples, "flywheel_jobs_retried_total", kind="flaky", error_class="transient") == 2
    assert total(samples, "flywheel_jobs_superseded_total", kind="hold", queue="q") == 1
    assert total(samples, "flywheel_jobs_discarded_total", kind="boom") == states["discarded"]
    assert total(samples, "flywheel_jobs_started_total") == 10
    assert total(samples, "flywheel_jobs_claimed_total") == 10
    assert total(samples, "flywheel_job_duration_seconds_count") == 9
    assert total(samples, "flywheel_finalize_duration_seconds_count", kind="ok", outcome="success") == 3
    assert total(samples, "flywheel_claim_duration_seconds_count", queue="q") >= 1
    assert total(samples, "flywheel_sweep_duration_seconds_count") >= 1
    assert total(samples, "flywheel_sweep_reclaimed_total") == 0
    # queue health, sampled at the scrape
    assert total(samples, "flywheel_queue_jobs", state="succeeded") == 5
    assert total(samples, "flywheel_queue_jobs", state="discarded") == 2
    assert total(samples, "flywheel_queue_jobs", state="cancelled") == 1
    assert total(samples, "flywheel_queue_ready") == 0
    assert total(samples, "flywheel_queue_inflight") == 0
    assert total(samples, "flywheel_queue_scheduled_ahead") == 0
    assert ("flywheel_queue_oldest_ready_seconds", frozenset()) in samples
    assert total(samples, "flywheel_queue_health_up") == 1
    # bounded cardinality: no job or run id anywhere
    assert {k for _, labels in samples for k, _ in labels} <= BOUNDED_LABELS
    assert not any(i in body for group in ids.values() for i in group)
    assert refused(*server.address), "the health server still listens after the node stopped"


def _pg_url_through(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_readyz_is_503_while_the_database_is_unreachable_and_200_again_after(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    proxy: TcpProxy | None = None
    data = tmp_path / "data"
    if dialect == "sqlite":
        data.mkdir()
        url = f"sqlite:///{data / 'flywheel.db'}"
    else:
        direct = request.getfixturevalue("pg_schema_url")
        parts = urlsplit(direct)
        proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
        proxy.start()
        url = _pg_url_through(direct, proxy.port)
    pm = make_plugin_manager(disabled=[])
    db = flywheel.connect(url, pm=pm)
    flywheel.migrate(db)
    registry = flywheel.Registry()
    done: list[str] = []

    @registry.worker("ok")
    def ok(job: flywheel.Job[Any]) -> None:
        done.append(job.id)

    node, thread, errors = start_node(db, registry, pm=pm)
    try:
        server = health_server(node)
        wait_for(lambda: get(server.url + "/readyz")[0] == 200, timeout=10, what="/readyz to be 200")
        assert get(server.url + "/readyz")[1] == "ready\n"

        if proxy is not None:
            proxy.stop()
        else:
            data.rename(tmp_path / "away")
        wait_for(lambda: get(server.url + "/readyz")[0] == 503, timeout=10, what="/readyz to be 503")
        status, reason, _ = get(server.url + "/readyz")
        assert status == 503 and reason.startswith("database unreachable: "), reason
        assert get(server.url + "/healthz")[:2] == (200, "ok\n")  # alive all along
        metrics = scrape(server.url)  # the counters are still served; queue health says it failed
        assert total(metrics, "flywheel_queue_health_up") == 0

        if proxy is not None:
            proxy.start()
        else:
            (tmp_path / "away").rename(data)
        wait_for(lambda: get(server.url + "/readyz")[0] == 200, timeout=20, what="/readyz to be 200 again")
        job_id = flywheel.Client(db).enqueue("ok", {})  # and the node works again
        wait_for(lambda: job_id in done, timeout=30, what="a job after the database came back")
    finally:
        stop(node, thread, errors)
        db.close()
        if proxy is not None:
            proxy.stop()


def test_readyz_is_503_until_the_runners_run_and_once_the_node_drains(db: flywheel.Database,
                                                                       registry: flywheel.Registry) -> None:
    node = Node(db, registry, runners=[RunnerConfig(**FAST)], health=HealthConfig(addr="127.0.0.1:0"),
                pm=make_plugin_manager(disabled=[]))
    server = HealthServer(node, "127.0.0.1:0")
    server.start()
    try:
        status, reason, _ = get(server.url + "/readyz")
        assert (status, reason) == (503, "runner[0] is not running\n")
        node._stopping.set()  # what the node's drain sets first
        assert get(server.url + "/readyz")[:2] == (503, "the node is draining\n")
    finally:
        server.stop()


def test_metrics_is_404_when_the_prometheus_plugin_is_blocked(db: flywheel.Database,
                                                             registry: flywheel.Registry) -> None:
    node, thread, errors = start_node(db, registry, pm=make_plugin_manager(disabled=["prometheus"]))
    try:
        server = health_server(node)
        status, body, _ = get(server.url + "/metrics")
        assert status == 404 and "prometheus" in body
        assert get(server.url + "/healthz")[0] == 200
        assert get(server.url + "/nothing-here")[0] == 404
    finally:
        stop(node, thread, errors)


def test_it_binds_only_the_configured_address(db: flywheel.Database, registry: flywheel.Registry) -> None:
    node, thread, errors = start_node(db, registry)
    try:
        server = health_server(node)
        host, port = server.address
        assert host == "127.0.0.1"
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        assert refused("127.0.0.2", port), "the server answers on another loopback address"
    finally:
        stop(node, thread, errors)


def test_a_port_in_use_fails_the_node_start_with_a_clear_message(db: flywheel.Database,
                                                                 registry: flywheel.Registry) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    ran: list[str] = []

    @registry.worker("ok")
    def ok(job: flywheel.Job[Any]) -> None:
        ran.append(job.id)

    flywheel.Client(db).enqueue("ok", {})
    node = Node(db, registry, runners=[RunnerConfig(**FAST)], health=HealthConfig(addr=f"127.0.0.1:{port}"),
                pm=make_plugin_manager(disabled=[]))
    try:
        with pytest.raises(HealthServerError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*already in use"):
            node.run()
    finally:
        taken.close()
    assert ran == [] and flywheel.count_active_jobs(db) == 1  # no runner started


def test_a_malformed_address_is_rejected_naming_it(db: flywheel.Database, registry: flywheel.Registry) -> None:
    node = Node(db, registry, runners=[RunnerConfig(**FAST)], health=HealthConfig(addr="localhost"),
                pm=make_plugin_manager(disabled=[]))
    with pytest.raises(HealthServerError, match="'localhost' is not host:port"):
        node.run()
