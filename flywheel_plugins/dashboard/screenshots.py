"""Screenshots of every dashboard page, for the docs.

    python -m flywheel_plugins.dashboard.screenshots docs/img/

Builds a demo database in a temporary SQLite file (an hour of real runs under a moved
clock, so the chart has history; failures, a retried job, work waiting, schedules), serves
the dashboard on loopback, and saves ``dashboard-<page>.png`` for each page through the
system's headless Chromium (see :mod:`flywheel_plugins.dashboard.browser`).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flywheel
from flywheel_plugins.dashboard import browser
from flywheel_plugins.dashboard.server import Dashboard

PAGES = (("overview", "/"), ("queues", "/queues"), ("jobs", "/jobs"), ("job", None), ("schedules", "/schedules"),
         ("failures", "/failures"))
VIEWPORT = {"width": 1100, "height": 720}


def _registry(rng: random.Random, healed: dict[str, bool]) -> flywheel.Registry:
    registry = flywheel.Registry()

    @registry.worker("send_email")
    def send_email(job: flywheel.Job[Any]) -> flywheel.Result:
        if rng.random() < 0.06:
            raise flywheel.Permanent(f"SMTP 550: mailbox {job.args['to']} unavailable")
        return flywheel.Result(output={"message_id": f"<{job.id[:8]}@mail.example>"})

    @registry.worker("render_report")
    def render_report(job: flywheel.Job[Any]) -> flywheel.Result:
        if rng.random() < 0.03:
            raise flywheel.Permanent("template 'q3-summary' not found")
        return flywheel.Result(output={"pages": rng.randint(2, 40)})

    @registry.worker("sync_crm")
    def sync_crm(job: flywheel.Job[Any]) -> None:
        if rng.random() < 0.02:
            raise flywheel.Cancel("account closed")

    @registry.worker("charge_card")
    def charge_card(job: flywheel.Job[Any]) -> flywheel.Result:
        if not healed.get(job.id):
            healed[job.id] = True
            raise ConnectionError("payment gateway timed out after 10s")
        return flywheel.Result(output={"charged_cents": job.args["cents"], "receipt": "rcpt_8KQ2"})

    return registry


def demo(db: flywheel.Database) -> dict[str, str]:
    """Fill ``db`` with an hour of history and some waiting work; returns ids worth showing."""
    rng = random.Random(3)
    healed: dict[str, bool] = {}
    registry = _registry(rng, healed)
    client = flywheel.Client(db, registry=registry)
    queues = ["default", "email", "reports"]
    now = datetime.now(UTC)
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    clock = flywheel.FixedClock(first)
    with flywheel.use_clock(clock):
        runner = flywheel.Runner(db, registry, queues=queues, concurrency=4, poll_interval=0.01)
        for minute in range(60):
            clock.set(min(now, first + timedelta(minutes=minute, seconds=rng.randint(0, 50))))
            for _ in range(int(12 + 9 * abs((minute % 20) - 10) / 10 + rng.randint(0, 6))):
                kind = rng.choice(["send_email", "send_email", "render_report", "sync_crm"])
                queue = {"send_email": "email", "render_report": "reports"}.get(kind, "default")
                client.enqueue(kind, {"to": f"user{rng.randint(1, 999)}@example.com", "n": minute},
                               queue=queue, max_attempts=1)
            runner.run_until_idle(timeout=60)
    charge = client.enqueue("charge_card", {"customer": "cus_1024", "cents": 4999}, queue="default",
                            tags=["billing"])
    flywheel.Runner(db, registry, queues=["default"], retry_backoff_base=0.05,
                    poll_interval=0.01).run_until_idle(timeout=60)
    for n in range(37):
        client.enqueue("send_email", {"to": f"later{n}@example.com"}, queue="email",
                       schedule_at=now - timedelta(seconds=90 - n))
    for n in range(6):
        client.enqueue("render_report", {"month": n + 1}, queue="reports", schedule_at=now + timedelta(hours=n + 1))
    flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="nightly-digest", kind="send_email", cron="0 3 * * *",
                                                       queue="email", args={"to": "team@example.com"}))
    with flywheel.use_clock(flywheel.FixedClock(now - timedelta(minutes=20))):  # so it has run once by now
        flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="crm-sync", kind="sync_crm",
                                                           every=timedelta(minutes=15)))
    flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="quarterly-report", kind="render_report",
                                                       cron="0 6 1 */3 *", timezone="Europe/Berlin", active=False))
    flywheel.Scheduler(db).tick()
    return {"job": charge}


def capture(out: Path) -> list[Path]:
    """Build the demo, serve it and save one PNG per page into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with tempfile.TemporaryDirectory() as tmp:
        db = flywheel.connect(f"sqlite:///{Path(tmp) / 'demo.db'}")
        flywheel.migrate(db)
        ids = demo(db)
        app = Dashboard(db, "127.0.0.1:0")
        app.start()
        try:
            with browser.chromium() as chromium:
                page = chromium.new_page(viewport=VIEWPORT)
                for name, path in PAGES:
                    page.goto(app.url.rstrip("/") + (path or f"/jobs/{ids[name]}"))
                    target = out / f"dashboard-{name}.png"
                    page.screenshot(path=str(target))
                    saved.append(target)
        finally:
            app.stop()
            db.close()
    return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flywheel_plugins.dashboard.screenshots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="docs/img", help="directory for the PNGs (default docs/img)")
    args = parser.parse_args(argv)
    reason = browser.unavailable()
    if reason is not None:
        raise SystemExit(f"screenshots: {reason}")
    for path in capture(Path(args.out)):
        print(path)


if __name__ == "__main__":
    main()
