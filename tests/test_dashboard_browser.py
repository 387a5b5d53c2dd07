"""The dashboard in a real headless Chromium (Playwright driving the system's ``chromium``), on both
dialects: clicking "Retry" on a discarded job that a running Runner then completes, cancelling,
disabling and enabling a schedule, logging in with the operator token, and every page rendering
with no browser error (the strict CSP would report one for any script or outside asset).

Skipped when Playwright or Chromium is missing, except under ``CI=true``, where that fails.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import flywheel
from flywheel_plugins.dashboard import browser as chromium
from flywheel_plugins.dashboard.security import TOKEN_ENV
from tests.test_dashboard_helpers import flaky_registry, local_url, run_all, served

ON_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = chromium.unavailable()
    if reason is not None:
        if ON_CI:
            pytest.fail(f"browser tests need a browser under CI: {reason}")
        pytest.skip(reason)
    with chromium.chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    problems: list[str] = []
    tab.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    tab.problems = problems
    yield tab
    context.close()


@pytest.fixture
def running(db: flywheel.Database) -> Iterator[dict[str, Any]]:
    """A registry whose ``flaky`` kind fails until healed, and a Runner working in the background."""
    flags: dict[str, bool] = {}
    registry = flaky_registry(flags)
    stop = threading.Event()
    runner = flywheel.Runner(db, registry, queues=["default"], poll_interval=0.05, retry_backoff_base=0.01)
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    yield {"registry": registry, "flags": flags, "start": thread.start}
    stop.set()
    if thread.is_alive():
        thread.join(30)


def _state(page: Any) -> str:
    return str(page.locator("dl dd .state").first.inner_text())


def test_clicking_retry_on_a_discarded_job_runs_it_to_success(db: flywheel.Database, page: Any,
                                                             running: dict[str, Any]) -> None:
    client = flywheel.Client(db, registry=running["registry"])
    job_id = client.enqueue("flaky", {"to": "ada@example.com"})
    run_all(db, running["registry"])
    assert flywheel.find_job(db, job_id).state == "discarded"
    running["flags"]["healed"] = True
    running["start"]()
    with served(db) as app:
        page.goto(f"{app.url}failures")
        page.get_by_role("link", name=job_id).click()
        assert _state(page) == "discarded"
        page.get_by_role("button", name="Retry").click()
        assert "Retried" in page.get_by_role("status").inner_text()
        for _ in range(100):  # the runner picks it up; the operator reloads
            if _state(page) == "succeeded":
                break
            page.wait_for_timeout(100)
            page.reload()
        assert _state(page) == "succeeded"
        assert page.locator("h2", has_text="Runs (2)").count() == 1
        assert "healed" in page.content()
        assert page.problems == []


def test_clicking_cancel_and_toggling_a_schedule(db: flywheel.Database, page: Any) -> None:
    job_id = flywheel.Client(db).enqueue("later", {}, queue="elsewhere")
    flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="hourly-report", kind="report", every=3600))
    with served(db) as app:
        page.goto(f"{app.url}jobs/{job_id}")
        page.get_by_role("button", name="Cancel").click()
        assert _state(page) == "cancelled"
        assert page.get_by_role("button", name="Cancel").count() == 0
        page.goto(f"{app.url}schedules")
        page.get_by_role("button", name="Disable").click()
        assert "Schedule disabled" in page.get_by_role("status").inner_text()
        assert not flywheel.list_periodics(db)[0].active
        page.get_by_role("button", name="Enable").click()
        assert flywheel.list_periodics(db)[0].active
        assert page.problems == []
    assert flywheel.find_job(db, job_id).state == "cancelled"


def test_every_page_renders_from_the_navigation_without_browser_errors(db: flywheel.Database, page: Any) -> None:
    registry = flaky_registry({})
    client = flywheel.Client(db, registry=registry)
    for n in range(3):
        client.enqueue("ok", {"n": n})
    client.enqueue("boom", {})
    run_all(db, registry)
    client.enqueue("ok", {"n": 9}, queue="mail")
    with served(db) as app:
        page.goto(app.url)
        assert page.locator("svg rect.bar-succeeded").count() == 1
        for label, heading in (("Queues", "Queues"), ("Jobs", "Jobs"), ("Schedules", "Schedules"),
                               ("Failures", "Recent failures"), ("Overview", "Overview")):
            page.get_by_role("link", name=label, exact=True).click()
            assert page.locator("h1").inner_text() == heading
        page.goto(f"{app.url}jobs")
        page.select_option("select[name=state]", "succeeded")
        page.get_by_role("button", name="Filter").click()
        assert page.locator("tbody tr").count() == 3
        assert page.problems == []


def test_logging_in_with_the_token_beyond_loopback(db: flywheel.Database, page: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "open-sesame")
    job_id = flywheel.Client(db).enqueue("later", {}, queue="elsewhere")
    with served(db, "0.0.0.0:0") as app:
        base = local_url(app)
        page.goto(f"{base}/jobs/{job_id}")
        assert page.get_by_role("button", name="Cancel").count() == 0
        page.get_by_role("link", name="log in").click()
        page.get_by_label("Operator token").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        assert "wrong operator token" in page.get_by_role("alert").inner_text()
        page.goto(f"{base}/login")
        page.get_by_label("Operator token").fill("open-sesame")
        page.get_by_role("button", name="Log in").click()
        assert "Logged in" in page.get_by_role("status").inner_text()
        page.goto(f"{base}/jobs/{job_id}")
        page.get_by_role("button", name="Cancel").click()
        assert _state(page) == "cancelled"
