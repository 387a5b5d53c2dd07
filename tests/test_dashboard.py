"""The dashboard over real HTTP on loopback, on both dialects: every page with real data, keyset
pagination, the actions and their guards (CSRF, read-only beyond loopback, the operator token,
the Host check), the ``flywheel dashboard`` command and the ``serve`` service."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

import flywheel
from flywheel_plugins.dashboard import Dashboard, flywheel_services, queries
from flywheel_plugins.dashboard.queries import queries_for
from flywheel_plugins.dashboard.security import TOKEN_ENV, is_loopback
from flywheel_plugins.dashboard.server import parse_bind
from tests.helpers import wait_for
from tests.test_dashboard_helpers import Browserless, flaky_registry, local_url, run_all, served

ROWS = re.compile(r'<a href="/jobs/([^"]+)">')


@pytest.fixture
def data(db: flywheel.Database) -> dict[str, Any]:
    """Two succeeded jobs, a discarded one, a queued one in queue ``mail`` and a schedule."""
    flags: dict[str, bool] = {}
    registry = flaky_registry(flags)
    client = flywheel.Client(db, registry=registry)
    ok = [client.enqueue("ok", {"n": n, "note": "<b>bold</b>"}, tags=["t1"]) for n in range(2)]
    bad = client.enqueue("boom", {"n": 9})
    run_all(db, registry)
    waiting = client.enqueue("ok", {"n": 3}, queue="mail")
    flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="nightly", kind="ok", cron="0 3 * * *"))
    return {"ok": ok, "bad": bad, "waiting": waiting, "registry": registry, "flags": flags}


def _ids(text: str) -> list[str]:
    return ROWS.findall(text)


# -- pages ---------------------------------------------------------------------------


def test_overview_shows_state_counts_ready_depth_and_the_throughput_chart(db: flywheel.Database,
                                                                           data: dict[str, Any]) -> None:
    with served(db) as app:
        status, headers, text = Browserless(app.url).get("/")
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert re.search(r"<b>1</b><span>ready now</span>", text)
    assert re.search(r'<a href="/jobs\?state=succeeded">2</a></b><span>succeeded</span>', text)
    assert re.search(r'<a href="/jobs\?state=discarded">1</a></b><span>discarded</span>', text)
    assert "<svg" in text and text.count('class="bar-succeeded"') == 1 and 'class="bar-discarded"' in text
    assert "<script" not in text


def test_queues_page_lists_queues_with_work_waiting(db: flywheel.Database, data: dict[str, Any]) -> None:
    with served(db) as app:
        status, _, text = Browserless(app.url).get("/queues")
    assert status == 200
    row = re.search(r'<a href="/jobs\?queue=mail">mail</a></td><td class="n">(\d+)</td><td class="n">(\d+)</td>', text)
    assert row and row.groups() == ("1", "0")
    assert "queue=default" not in text  # nothing waiting or running there


def test_jobs_page_filters_by_state_kind_and_queue(db: flywheel.Database, data: dict[str, Any]) -> None:
    with served(db) as app:
        web = Browserless(app.url)
        assert set(_ids(web.get("/jobs")[2])) == {*data["ok"], data["bad"], data["waiting"]}
        assert _ids(web.get("/jobs?state=discarded")[2]) == [data["bad"]]
        assert set(_ids(web.get("/jobs?kind=ok&state=succeeded")[2])) == set(data["ok"])
        assert _ids(web.get("/jobs?queue=mail")[2]) == [data["waiting"]]
        assert _ids(web.get("/jobs?kind=nothing")[2]) == []
        status, _, text = web.get("/jobs?state=exploded")
    assert status == 400 and "unknown state &#x27;exploded&#x27;" in text


def test_jobs_page_pages_through_every_job_by_id_cursor(db: flywheel.Database) -> None:
    client = flywheel.Client(db)
    inserted = [client.enqueue("k", {"n": n}) for n in range(120)]
    newest_first = sorted(inserted, reverse=True)
    with served(db) as app:
        web = Browserless(app.url)
        seen, path, pages = [], "/jobs", 0
        while path:
            text = web.get(path)[2]
            seen.extend(_ids(text))
            pages += 1
            older = re.search(r'<a href="(/jobs\?before=[^"]+)">older', text)
            path = older.group(1).replace("&amp;", "&") if older else ""
        assert seen == newest_first and pages == 3
        back = re.search(r'<a href="(/jobs\?after=[^"]+)">← newer', text)
        assert back is not None
        assert _ids(web.get(back.group(1).replace("&amp;", "&"))[2]) == newest_first[50:100]


def test_job_detail_shows_args_metadata_and_every_run(db: flywheel.Database, data: dict[str, Any]) -> None:
    flags = data["flags"]
    client = flywheel.Client(db, registry=data["registry"])
    with flywheel.request_id_scope("req-42"):
        job_id = client.enqueue("flaky", {"to": "ada@example.com"}, max_attempts=1)
    run_all(db, data["registry"])
    flags["healed"] = True
    flywheel.retry_job(db, job_id)
    run_all(db, data["registry"])
    with served(db) as app:
        status, _, text = Browserless(app.url).get(f"/jobs/{job_id}")
    assert status == 200
    assert "ada@example.com" in text and "req-42" in text  # args and metadata
    assert "<h2>Runs (2)</h2>" in text
    assert "upstream said no" in text and "permanent" in text  # the failed run's error and class
    assert "&quot;healed&quot;: true" in text  # the successful run's captured output
    assert text.count('class="state" style="background:#2e7d32">success') == 1


def test_job_detail_escapes_what_workers_wrote(db: flywheel.Database, data: dict[str, Any]) -> None:
    with served(db) as app:
        web = Browserless(app.url)
        failed = web.get(f"/jobs/{data['bad']}")[2]
        args = web.get(f"/jobs/{data['ok'][0]}")[2]
    assert "disk &lt;full&gt; &amp; on fire" in failed and "<full>" not in failed
    assert "&lt;b&gt;bold&lt;/b&gt;" in args and "<b>bold</b>" not in args


def test_unknown_job_is_a_404_page(db: flywheel.Database) -> None:
    with served(db) as app:
        status, _, text = Browserless(app.url).get("/jobs/no-such-job")
    assert status == 404 and "no-such-job" in text


def test_schedules_page_shows_next_and_last_run(db: flywheel.Database, data: dict[str, Any]) -> None:
    view = flywheel.list_periodics(db)[0]
    with served(db) as app:
        text = Browserless(app.url).get("/schedules")[2]
    assert "nightly" in text and "cron 0 3 * * *" in text
    assert view.next_run_at.strftime("%Y-%m-%d %H:%M:%S") in text
    assert 'action="/schedules/nightly/disable"' in text


def test_failures_page_lists_discarded_jobs_with_their_last_error(db: flywheel.Database,
                                                                  data: dict[str, Any]) -> None:
    with served(db) as app:
        text = Browserless(app.url).get("/failures")[2]
    assert _ids(text) == [data["bad"]]
    assert "disk &lt;full&gt; &amp; on fire" in text and "permanent" in text


# -- actions -------------------------------------------------------------------------


def test_retry_with_the_csrf_token_makes_a_discarded_job_runnable(db: flywheel.Database,
                                                                  data: dict[str, Any]) -> None:
    with served(db) as app:
        web = Browserless(app.url)
        page = web.get(f"/jobs/{data['bad']}")[2]
        form = re.search(r'<form [^>]*action="/jobs/[^"]+/retry"><input type="hidden" name="csrf" value="(\w+)">', page)
        assert form is not None
        status, headers, _ = web.post(f"/jobs/{data['bad']}/retry", {"csrf": form.group(1)})
        assert status == 303 and headers["Location"] == f"/jobs/{data['bad']}?done=retried"
        assert "Retried" in web.get(headers["Location"])[2]
    assert flywheel.find_job(db, data["bad"]).state == "available"


def test_cancel_and_schedule_toggle(db: flywheel.Database, data: dict[str, Any]) -> None:
    with served(db) as app:
        web = Browserless(app.url)
        token = web.csrf(app)
        assert web.post(f"/jobs/{data['waiting']}/cancel", {"csrf": token})[0] == 303
        assert web.post("/schedules/nightly/disable", {"csrf": token})[0] == 303
        assert not flywheel.list_periodics(db)[0].active
        assert web.post("/schedules/nightly/enable", {"csrf": token})[0] == 303
        status, _, text = web.post(f"/jobs/{data['ok'][0]}/cancel", {"csrf": token})
        assert status == 409 and "succeeded" in text  # a finished job cannot be cancelled
        assert web.post("/schedules/nope/disable", {"csrf": token})[0] == 404
    assert flywheel.find_job(db, data["waiting"]).state == "cancelled"
    assert flywheel.list_periodics(db)[0].active


def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(db: flywheel.Database,
                                                                          data: dict[str, Any]) -> None:
    path = f"/jobs/{data['bad']}/retry"
    with served(db) as app:
        web = Browserless(app.url)
        assert web.post(path)[0] == 403  # no cookie, no field
        token = web.csrf(app)
        status, _, text = web.post(path, {"csrf": "0" * 64})
        assert status == 403 and "invalid CSRF token" in text
        other = Browserless(app.url)
        other.csrf(app)  # another browser's cookie: this token is not valid with it
        assert other.post(path, {"csrf": token})[0] == 403
        status, _, text = web.post(path, {"csrf": token}, headers={"Origin": "http://evil.example"})
        assert status == 403 and "cross-origin" in text
    assert flywheel.find_job(db, data["bad"]).state == "discarded"


def test_beyond_loopback_the_dashboard_is_read_only(db: flywheel.Database, data: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with served(db, "0.0.0.0:0") as app:
        web = Browserless(local_url(app))
        status, _, text = web.get(f"/jobs/{data['bad']}")
        assert status == 200 and "read-only" in text and "/retry" not in text
        assert "/disable" not in web.get("/schedules")[2]
        token = web.csrf(app)
        status, _, text = web.post(f"/jobs/{data['bad']}/retry", {"csrf": token})
        assert status == 403 and "read-only" in text
    assert flywheel.find_job(db, data["bad"]).state == "discarded"


def test_read_only_flag_on_loopback(db: flywheel.Database, data: dict[str, Any]) -> None:
    with served(db, read_only=True) as app:
        web = Browserless(app.url)
        assert "/retry" not in web.get(f"/jobs/{data['bad']}")[2]
        assert web.post(f"/jobs/{data['bad']}/retry", {"csrf": web.csrf(app)})[0] == 403


def test_beyond_loopback_the_token_unlocks_actions(db: flywheel.Database, data: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    path = f"/jobs/{data['bad']}/retry"
    with served(db, "0.0.0.0:0") as app:
        web = Browserless(local_url(app))
        assert "actions need the token" in web.get("/")[2]
        token = web.csrf(app)
        status, _, text = web.post(path, {"csrf": token})
        assert status == 403 and "log in" in text
        status, _, text = web.post("/login", {"csrf": token, "token": "guess"})
        assert status == 403 and "wrong operator token" in text
        assert flywheel.find_job(db, data["bad"]).state == "discarded"
        assert web.post("/login", {"csrf": token, "token": "s3cret-token"})[0] == 303
        assert "/retry" in web.get(f"/jobs/{data['bad']}")[2]
        assert web.post(path, {"csrf": token})[0] == 303
        assert flywheel.find_job(db, data["bad"]).state == "available"
        script = Browserless(local_url(app))  # a script: the bearer header instead of the login
        bearer = {"Authorization": "Bearer s3cret-token"}
        assert script.post(f"/jobs/{data['waiting']}/cancel", {"csrf": script.csrf(app)}, headers=bearer)[0] == 303
        web.post("/logout", {"csrf": token})
        assert web.post(path, {"csrf": token})[0] == 403


def test_loopback_answers_only_to_loopback_host_names(db: flywheel.Database) -> None:
    with served(db) as app:
        assert Browserless(app.url, host=f"localhost:{app.port}").get("/")[0] == 200
        status, _, text = Browserless(app.url, host="attacker.example").get("/")
    assert status == 421 and "loopback" in text


def test_bind_addresses() -> None:
    assert parse_bind("127.0.0.1:8787") == ("127.0.0.1", 8787)
    assert parse_bind("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_bind("8787")
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")


# -- the command and the service -----------------------------------------------------


def _start_command(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "flywheel", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"no URL on the first line: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, match.group(1)


@pytest.mark.parametrize("where", ["global", "own"])
def test_the_dashboard_command_serves_the_database_it_is_given(db: flywheel.Database, db_url: str,
                                                               data: dict[str, Any], where: str) -> None:
    args = ["--db", db_url, "dashboard", "--bind", "127.0.0.1:0"] if where == "global" else \
        ["dashboard", "--bind", "127.0.0.1:0", "--db", db_url]
    proc, url = _start_command(*args)
    try:
        status, _, text = Browserless(url).get("/failures")
        assert status == 200 and data["bad"] in text
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_dashboard_command_rejects_a_bad_bind_address(tmp_path: Any) -> None:
    result = subprocess.run([sys.executable, "-m", "flywheel", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                             "dashboard", "--bind", "nowhere"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def test_serve_runs_the_dashboard_when_the_config_sets_a_bind_address(db: flywheel.Database,
                                                                     data: dict[str, Any]) -> None:
    assert flywheel_services(node=SimpleNamespace(db=db)) is None  # no config: no service
    assert flywheel_services(node=SimpleNamespace(db=db, config=SimpleNamespace(dashboard=None))) is None
    node = flywheel.Node(db, data["registry"], scheduler=None, runners=[flywheel.RunnerConfig(poll_interval=0.05)])
    node.config = SimpleNamespace(dashboard=SimpleNamespace(bind="127.0.0.1:0"))  # what the cli branch's Node carries
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: any(isinstance(s, Dashboard) and s.port for s in node.services), what="the dashboard")
        app = next(s for s in node.services if isinstance(s, Dashboard))
        assert Browserless(app.url).get("/queues")[0] == 200
    finally:
        node.stop()
        thread.join(30)
    with pytest.raises(OSError):
        Browserless(app.url).get("/")



# -- the queries behind the pages -----------------------------------------------------


def test_lag_is_the_age_of_the_oldest_ready_job_across_priorities(db: flywheel.Database,
                                                                 clock: flywheel.FixedClock) -> None:
    now = clock.now()
    client = flywheel.Client(db)
    client.enqueue("k", {}, queue="x", priority=5, schedule_at=now - timedelta(seconds=30))
    client.enqueue("k", {}, queue="x", priority=100, schedule_at=now - timedelta(seconds=90))
    client.enqueue("k", {}, queue="x", priority=1, schedule_at=now + timedelta(seconds=60))
    client.enqueue("k", {}, queue="y", priority=1, schedule_at=now - timedelta(seconds=10))
    client.enqueue("k", {}, queue="y", priority=2, schedule_at=now + timedelta(seconds=600))
    q = queries_for(db)
    assert q.lags(now) == {"x": timedelta(seconds=90), "y": timedelta(seconds=10)}
    assert q.snapshot().lag == timedelta(seconds=90)
    rows = {r.queue: r for r in q.queues()}
    assert (rows["x"].ready.value, rows["x"].scheduled_ahead.value, rows["y"].lag) == (2, 1, timedelta(seconds=10))


def test_counts_past_the_cap_come_from_the_planner_on_postgres(db: flywheel.Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "EXACT_CAP", 5)
    client = flywheel.Client(db)
    for n in range(30):
        client.enqueue("k", {"n": n})
    client.enqueue("k", {}, queue="other")
    db.pw.execute_sql("ANALYZE jobs")
    counts = queries_for(db).state_counts()
    assert counts["running"] == queries.Count(value=0)
    if db.dialect == "postgres":
        assert not counts["available"].exact and counts["available"].value >= 5
        with served(db) as app:
            assert "≈" in Browserless(app.url).get("/")[2]
    else:
        assert counts["available"] == queries.Count(value=31)


def test_a_queue_filter_searches_a_bounded_window_and_continues_past_it(db: flywheel.Database,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "SEARCH_WINDOW", 10)
    client = flywheel.Client(db)
    rare = [client.enqueue("k", {"n": n}, queue="rare") for n in range(3)]
    for n in range(25):
        client.enqueue("k", {"n": n}, queue="busy")
    for job_id in rare + [client.enqueue("k", {}, queue="rare")]:
        flywheel.cancel_job(db, job_id)  # finished jobs: no index finds them by queue
    with served(db) as app:
        web = Browserless(app.url)
        seen, path, hops = [], "/jobs?queue=rare", 0
        while path and hops < 20:
            text = web.get(path)[2]
            seen.extend(_ids(text))
            hops += 1
            older = re.search(r'<a href="(/jobs\?[^"]+)">(?:search )?older', text)
            path = older.group(1).replace("&amp;", "&") if older else ""
            if older and "search older" in older.group(0):
                assert "Only the next 10 jobs were searched" in text
    newest_first = sorted(flywheel.list_jobs(db, queue="rare", limit=10), key=lambda j: j.id, reverse=True)
    assert seen == [j.id for j in newest_first] and len(seen) == 4
    assert hops > 2  # it took more than one window


def test_a_stalled_client_does_not_hold_the_dashboard(db: flywheel.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from flywheel_plugins.dashboard import server

    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    with served(db, workers=1) as app:
        idle = socket.create_connection(("127.0.0.1", app.port))  # connects, never sends a request
        try:
            assert Browserless(app.url).get("/schedules")[0] == 200  # served once the idle one times out
        finally:
            idle.close()


def test_the_chart_caches_ended_minutes_and_refreshes_them_in_the_background(db: flywheel.Database,
                                                                           clock: flywheel.FixedClock) -> None:
    registry = flaky_registry({})
    start = clock.now()
    flywheel.Client(db, registry=registry).enqueue("ok", {})
    run_all(db, registry)  # finalised at `start`, under the fixed clock
    q = queries_for(db)

    def finished_at(now: Any, minute: Any) -> dict[str, int]:
        return dict(q.throughput(now))[minute]

    minute = start.replace(second=0, microsecond=0)
    later = start + timedelta(minutes=2)
    assert finished_at(later, minute) == {"succeeded": 1}  # fills the cache up to `later`'s minute
    flywheel.delete_finished_jobs(db, start + timedelta(seconds=1))
    assert finished_at(later, minute) == {"succeeded": 1}  # an ended minute is served from the cache
    stale = later + queries.CHART_REFRESH + timedelta(minutes=1)
    finished_at(stale, minute)  # starts the background refresh
    wait_for(lambda: finished_at(stale, minute) == {}, what="the refreshed chart")
