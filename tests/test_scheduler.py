"""The scheduler: periodic firing by the cursor, validation, DST, concurrent schedulers, the singleton."""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import flywheel
from flywheel import PeriodicSpec, Scheduler, ValidationError
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
T = datetime(2026, 1, 1, tzinfo=UTC)


def jobs_of(db: flywheel.Database, kind: str | None = None) -> list[Any]:
    query = db.Job.select().order_by(db.Job.scheduled_at)
    if kind is not None:
        query = query.where(db.Job.kind == kind)
    return list(query)


def key(slug: str, at: datetime) -> str:
    return f"{slug}@{int(at.timestamp())}"


def python(code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


# -- tick arithmetic ---------------------------------------------------------------


def test_every_minute_fires_the_bucket_after_the_cursor_once(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="minutely", kind="ping", every=timedelta(minutes=1)))
    scheduler = Scheduler(db)

    assert scheduler.tick() == 0
    clock.set(T + timedelta(seconds=90))
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0

    [job] = jobs_of(db)
    assert job.unique_key == key("minutely", T + timedelta(seconds=60))
    assert job.scheduled_at == T + timedelta(seconds=60)
    assert (job.kind, job.queue, job.state) == ("ping", "periodic", "available")
    assert (job.priority, job.max_attempts) == (100, 25)
    [view] = flywheel.list_periodics(db)
    assert view.next_run_at == T + timedelta(seconds=120)
    assert view.last_enqueued_at == T + timedelta(seconds=90)


def test_an_hour_late_fires_the_ten_most_recent_buckets(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="late", kind="ping", every=60, args={"n": 1}, queue="q"))
    clock.set(T + timedelta(hours=1))

    assert Scheduler(db).tick() == 10

    jobs = jobs_of(db)
    buckets = [T + timedelta(minutes=m) for m in range(51, 61)]
    assert [j.unique_key for j in jobs] == [key("late", b) for b in buckets]
    assert [j.scheduled_at for j in jobs] == buckets
    assert {j.queue for j in jobs} == {"q"} and all(j.args == {"n": 1} for j in jobs)
    assert flywheel.list_periodics(db)[0].next_run_at == T + timedelta(minutes=61)


def test_backfill_cap_is_configurable_and_anchored_to_the_cursor(db: flywheel.Database,
                                                                clock: flywheel.FixedClock) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=60))
    clock.set(T + timedelta(minutes=2))  # due 1 min ago: the due bucket and due + 60 s = now
    assert Scheduler(db, backfill_cap=3).tick() == 2
    clock.set(T + timedelta(minutes=10, seconds=30))
    assert Scheduler(db, backfill_cap=3).tick() == 3
    assert [j.scheduled_at for j in jobs_of(db)][-3:] == [T + timedelta(minutes=m) for m in (8, 9, 10)]


def test_a_new_schedule_never_fires_at_once_and_inactive_ones_never(db: flywheel.Database,
                                                                   clock: flywheel.FixedClock) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="cron", kind="ping", cron="* * * * *"))
    flywheel.upsert_periodic(db, PeriodicSpec(slug="off", kind="ping", every=1, active=False))
    scheduler = Scheduler(db)
    assert scheduler.tick() == 0
    clock.set(T + timedelta(minutes=1))
    assert scheduler.tick() == 1
    assert [j.unique_key for j in jobs_of(db)] == [key("cron", T + timedelta(minutes=1))]


def test_enqueued_rows_match_client_inserts(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="same", kind="ping", every=60, args={"a": [1, 2]}))
    clock.set(T + timedelta(minutes=1))
    Scheduler(db).tick()
    client_id = flywheel.Client(db).enqueue("ping", {"a": [1, 2]}, queue="periodic", unique_key="other",
                                           schedule_at=T + timedelta(minutes=1))
    fired, inserted = (db.Job.select().where(db.Job.unique_key == k).dicts().get() for k in ("same@1767225660",
                                                                                            "other"))
    assert inserted["id"] == client_id
    differing = {c for c in fired if fired[c] != inserted[c]}
    assert differing == {"id", "unique_key"}


def test_a_unique_collision_is_skipped_silently(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="dup", kind="ping", every=60))
    flywheel.Client(db).enqueue("ping", {}, unique_key=key("dup", T + timedelta(minutes=1)))
    clock.set(T + timedelta(minutes=2))
    assert Scheduler(db).tick() == 1  # the second bucket; the first was already there
    assert len(jobs_of(db)) == 2
    assert flywheel.list_periodics(db)[0].next_run_at == T + timedelta(minutes=3)


def test_a_crash_before_the_cursor_commits_enqueues_nothing_and_refires_once(
    db: flywheel.Database, clock: flywheel.FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=60))
    clock.set(T + timedelta(minutes=3))

    def crash(*args: Any, **kwargs: Any) -> None:  # after the inserts and the cursor update, before commit
        raise ConnectionError("connection lost")

    monkeypatch.setattr(db.driver, "notify", crash)
    assert Scheduler(db).tick() == 0
    assert jobs_of(db) == []
    assert flywheel.list_periodics(db)[0].next_run_at == T + timedelta(minutes=1)
    monkeypatch.undo()

    assert Scheduler(db).tick() == 3
    assert Scheduler(db).tick() == 0
    assert [j.unique_key for j in jobs_of(db)] == [key("s", T + timedelta(minutes=m)) for m in (1, 2, 3)]


def test_a_broken_definition_does_not_stop_the_others(db: flywheel.Database, clock: flywheel.FixedClock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="a-broken", kind="ping", cron="* * * * *"))
    flywheel.upsert_periodic(db, PeriodicSpec(slug="b-fine", kind="ping", every=60))
    db.JobPeriodic.update(cron_expr="not a cron").where(db.JobPeriodic.slug == "a-broken").execute()
    clock.set(T + timedelta(minutes=1))

    with caplog.at_level(logging.ERROR, logger="flywheel.scheduler"):
        assert Scheduler(db).tick() == 1

    assert [j.unique_key for j in jobs_of(db)] == [key("b-fine", T + timedelta(minutes=1))]
    broken = flywheel.scheduling.schedules.find_periodic(db, "a-broken")
    assert broken.next_run_at == T + timedelta(minutes=1)  # cursor not advanced
    assert any("periodic a-broken failed to fire" in r.getMessage() for r in caplog.records)


# -- daylight saving ---------------------------------------------------------------


def _drive(db: flywheel.Database, clock: flywheel.FixedClock, start: datetime, end: datetime,
           step: timedelta) -> None:
    scheduler = Scheduler(db)
    clock.set(start)
    while clock.now() < end:
        clock.advance(step)
        scheduler.tick()


@pytest.mark.parametrize(("zone", "cron", "days", "transition"), [
    # spring forward, 2026-03-29 02:00 → 03:00: the missing 02:00 fires at 03:00 CEST
    ("Europe/Berlin", "0 2 * * *", (date(2026, 3, 26), date(2026, 4, 1)), datetime(2026, 3, 29, 1, tzinfo=UTC)),
    # fall back, 2026-10-25 03:00 → 02:00: the repeated 02:00 fires once, at its first (CEST) occurrence
    ("Europe/Berlin", "0 2 * * *", (date(2026, 10, 22), date(2026, 10, 28)), datetime(2026, 10, 25, 0, tzinfo=UTC)),
    # America/New_York 2026: 02:30 does not exist on March 8 (→ 03:00 EDT); 01:30 happens twice on
    # November 1 (→ the first, EDT)
    ("America/New_York", "CRON_TZ=America/New_York 30 2 * * *", (date(2026, 3, 6), date(2026, 3, 11)),
     datetime(2026, 3, 8, 7, tzinfo=UTC)),
    ("America/New_York", "30 1 * * *", (date(2026, 10, 30), date(2026, 11, 4)),
     datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
])
def test_a_daily_cron_fires_once_per_calendar_day_across_dst(
    db: flywheel.Database, clock: flywheel.FixedClock, zone: str, cron: str, days: tuple[date, date],
    transition: datetime,
) -> None:
    tz = ZoneInfo(zone)
    first, last = days
    start = datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=tz).astimezone(UTC)
    clock.set(start)
    timezone = "UTC" if cron.startswith("CRON_TZ") else zone  # the prefix sets the zone
    flywheel.upsert_periodic(db, PeriodicSpec(slug="nightly", kind="ping", cron=cron, timezone=timezone))
    assert flywheel.list_periodics(db)[0].timezone == zone

    _drive(db, clock, start, end, timedelta(minutes=10))

    fires = [j.scheduled_at for j in jobs_of(db)]
    assert [f.astimezone(tz).date() for f in fires] == [first + timedelta(days=n) for n in range((last - first).days)]
    minute, hour = (int(v) for v in cron.split()[-5:-3])
    for fire in fires:
        wall = fire.astimezone(tz)
        if wall.date() == transition.astimezone(tz).date():
            assert fire == transition
        else:
            assert (wall.hour, wall.minute) == (hour, minute)
    assert len({j.unique_key for j in jobs_of(db)}) == len(fires)


def test_dst_minute_by_minute_across_the_berlin_nights(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    for night in (datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 10, 24, 22, tzinfo=UTC)):
        clock.set(night)
        flywheel.upsert_periodic(db, PeriodicSpec(slug=f"n{night.month}", kind="ping", cron="0 2 * * *",
                                                  timezone="Europe/Berlin"))
        _drive(db, clock, night, night + timedelta(hours=6), timedelta(minutes=1))
        flywheel.delete_periodic(db, f"n{night.month}")
    assert [j.scheduled_at for j in jobs_of(db)] == [
        datetime(2026, 3, 29, 1, tzinfo=UTC),  # 03:00 CEST, the first minute after the gap
        datetime(2026, 10, 25, 0, tzinfo=UTC),  # 02:00 CEST, the first of the two 02:00s
    ]


# -- validation and the definitions table --------------------------------------------


@pytest.mark.parametrize(("spec", "field"), [
    (dict(cron="61 * * * *"), "cron"),
    (dict(cron="* * *"), "cron"),
    (dict(cron="0 0 30 2 *"), "cron"),  # February 30th never comes
    (dict(cron="@every 5m"), "cron"),  # robfig-only: every= says it
    (dict(cron="@fortnightly"), "cron"),
    (dict(cron="* * * * *", every=60), "cron"),
    (dict(), "cron"),
    (dict(every=0.5), "every"),
    (dict(every=timedelta(0)), "every"),
    (dict(every="1m"), "every"),
    (dict(every=60, timezone="Mars/Olympus_Mons"), "timezone"),
    (dict(cron="CRON_TZ=Nowhere/Else * * * * *"), "timezone"),
    (dict(every=60, slug=""), "slug"),
    (dict(every=60, kind=""), "kind"),
    (dict(every=60, args="{not json"), "args"),
])
def test_invalid_schedules_name_the_field_and_persist_nothing(db: flywheel.Database, clock: flywheel.FixedClock,
                                                              spec: dict[str, Any], field: str) -> None:
    fields = {"slug": "s", "kind": "ping", **spec}
    with pytest.raises(ValidationError) as caught:
        flywheel.upsert_periodic(db, PeriodicSpec(**fields))
    assert caught.value.field == field
    assert flywheel.list_periodics(db) == []


def test_upsert_keeps_the_cursor_unless_the_cadence_changes(db: flywheel.Database,
                                                            clock: flywheel.FixedClock) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=60))
    clock.advance(30)
    view = flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="pong", every=60, args={"x": 1}, queue="q2"))
    assert view.next_run_at == T + timedelta(seconds=60)
    assert (view.kind, view.queue, view.args) == ("pong", "q2", {"x": 1})

    view = flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="pong", every=120))
    assert view.next_run_at == T + timedelta(seconds=150)
    view = flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="pong", cron="0 * * * *"))
    assert (view.next_run_at, view.interval_seconds, view.cron) == (T + timedelta(hours=1), None, "0 * * * *")
    view = flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="pong", cron="0 * * * *",
                                                     timezone="Asia/Kolkata"))  # a half-hour zone
    assert view.next_run_at == T + timedelta(minutes=30)


def test_descriptors_and_names_are_accepted(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    daily = flywheel.upsert_periodic(db, PeriodicSpec(slug="d", kind="k", cron="@Daily", timezone="Europe/Berlin"))
    assert (daily.cron, daily.next_run_at) == ("@daily", datetime(2026, 1, 1, 23, tzinfo=UTC))  # Berlin midnight
    hourly = flywheel.upsert_periodic(db, PeriodicSpec(slug="h", kind="k", cron="@hourly"))
    assert hourly.next_run_at == T + timedelta(hours=1)
    weekdays = flywheel.upsert_periodic(db, PeriodicSpec(slug="w", kind="k", cron="0 9 * * MON-FRI"))
    assert weekdays.next_run_at == datetime(2026, 1, 1, 9, tzinfo=UTC)  # a Thursday
    clock.set(datetime(2026, 1, 3, 12, tzinfo=UTC))  # Saturday noon: Thursday 9:00 and Friday 9:00 are due
    assert Scheduler(db).tick() == 2 + 2 + 10  # daily: Jan 2 and 3 (Berlin); weekdays: Thu, Fri; hourly: capped


def test_missing_definitions_raise_periodic_not_found(db: flywheel.Database, clock: flywheel.FixedClock) -> None:
    with pytest.raises(flywheel.PeriodicNotFound):
        flywheel.delete_periodic(db, "nope")
    with pytest.raises(flywheel.PeriodicNotFound):
        flywheel.set_periodic_active(db, "nope", True)
    flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=60))
    flywheel.set_periodic_active(db, "s", False)
    clock.advance(600)
    assert Scheduler(db).tick() == 0
    flywheel.delete_periodic(db, "s")
    assert flywheel.list_periodics(db) == []


# -- several schedulers ------------------------------------------------------------


def test_two_schedulers_in_threads_enqueue_each_bucket_once(db_url: str, db: flywheel.Database,
                                                            clock: flywheel.FixedClock) -> None:
    for n in range(20):
        flywheel.upsert_periodic(db, PeriodicSpec(slug=f"s{n:02d}", kind="ping", every=60))
    databases = [flywheel.connect(db_url) for _ in range(2)]
    schedulers = [Scheduler(d) for d in databases]
    totals = [0, 0]
    expected = 0
    for offset, buckets in ((timedelta(hours=1), 10), (timedelta(minutes=90), 10), (timedelta(seconds=30), 0),
                            (timedelta(seconds=60), 1)):
        clock.advance(offset)
        barrier = threading.Barrier(2)

        def tick(index: int) -> None:
            barrier.wait()
            totals[index] += schedulers[index].tick()

        threads = [threading.Thread(target=contextvars.copy_context().run, args=(tick, i)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected += 20 * buckets
        assert sum(totals) == expected
    jobs = jobs_of(db)
    assert len(jobs) == expected == len({j.unique_key for j in jobs})
    for d in databases:
        d.close()


TICK_AT_ONCE = """
    import sys
    from datetime import datetime
    import flywheel
    url, at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    db = flywheel.connect(url)
    scheduler = flywheel.Scheduler(db)
    db.JobPeriodic.select().count()  # connect before the start line
    print("ready", flush=True)
    sys.stdin.readline()  # the start line: both processes tick at once
    with flywheel.use_clock(flywheel.FixedClock(at)):
        print(scheduler.tick())
"""


@pytest.mark.slow
def test_two_scheduler_processes_on_postgres_enqueue_each_bucket_once(pg_schema_url: str) -> None:
    db = flywheel.connect(pg_schema_url)
    flywheel.migrate(db)
    with flywheel.use_clock(flywheel.FixedClock(T)):
        for n in range(50):
            flywheel.upsert_periodic(db, PeriodicSpec(slug=f"s{n:02d}", kind="ping", every=60))
    procs = [python(TICK_AT_ONCE, pg_schema_url, (T + timedelta(hours=1)).isoformat(), stdin=subprocess.PIPE)
             for _ in range(2)]
    assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]  # type: ignore[union-attr]
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    counts = [int(out.strip()) for out, _ in outputs]
    assert sum(counts) == 500
    assert db.Job.select().count() == 500
    assert {v.next_run_at for v in flywheel.list_periodics(db)} == {T + timedelta(minutes=61)}
    db.close()


# -- run(): activities, the singleton, the health pulse ---------------------------------


def _run_in_thread(scheduler: Scheduler) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=contextvars.copy_context().run, args=(scheduler.run, stop), daemon=True)
    thread.start()
    return thread, stop


def _count_lock_attempts(db: flywheel.Database) -> list[int]:
    """Count the maintenance-lock acquires of the schedulers that take their lock from now on."""
    attempts = [0]
    make = db.driver.singleton

    class Counted:
        def __init__(self, lock: Any) -> None:
            self.lock = lock

        def acquire(self) -> bool:
            attempts[0] += 1
            return bool(self.lock.acquire())

        def __getattr__(self, name: str) -> Any:
            return getattr(self.lock, name)

    db.driver.singleton = lambda database, name: Counted(make(database, name))  # type: ignore[method-assign]
    return attempts


def test_run_fires_due_schedules_and_samples_health(db: flywheel.Database, caplog: pytest.LogCaptureFixture) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=1))
    scheduler = Scheduler(db, tick_interval=0.05, sweep_interval=0.05, health_sample_interval=0.05,
                          retention=timedelta(days=1), retention_interval=0.05)
    with caplog.at_level(logging.INFO, logger="flywheel.scheduler"):
        thread, stop = _run_in_thread(scheduler)
        wait_for(lambda: db.Job.select().count() >= 2, timeout=5)
        wait_for(lambda: any("queue health" in r.getMessage() for r in caplog.records))
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    line = next(r.getMessage() for r in caplog.records if "queue health" in r.getMessage())
    assert all(word in line for word in ("ready=", "inflight=", "scheduled_ahead=", "oldest_ready=", "discarded="))


def test_sample_health_returns_the_snapshot(db: flywheel.Database, clock: flywheel.FixedClock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    client = flywheel.Client(db)
    client.enqueue("k", {})
    client.enqueue("k", {}, schedule_at=T + timedelta(hours=1))
    clock.advance(90)
    with caplog.at_level(logging.INFO, logger="flywheel.scheduler"):
        health = Scheduler(db).sample_health()
    assert (health.ready, health.inflight, health.scheduled_ahead, health.discarded) == (1, 0, 1, 0)
    assert health.oldest_ready_age == timedelta(seconds=90)
    assert "ready=1 inflight=0 scheduled_ahead=1 oldest_ready=90s discarded=0" in caplog.text


def test_a_failing_activity_is_logged_and_the_others_go_on(db: flywheel.Database,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=1))
    scheduler = Scheduler(db, tick_interval=0.05, sweep_interval=0.05)

    def broken_sweep() -> int:
        raise RuntimeError("sweep exploded")

    scheduler.sweep = broken_sweep  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="flywheel.scheduler"):
        thread, stop = _run_in_thread(scheduler)
        wait_for(lambda: db.Job.select().count() >= 2, timeout=5)
        stop.set()
        thread.join(5)
    assert "jobs: lease sweep failed" in caplog.text


def test_only_the_lock_holder_does_maintenance_and_a_standby_takes_over(db: flywheel.Database,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=1))
    first, second = Scheduler(db, tick_interval=0.05), Scheduler(db, tick_interval=0.05)
    first_calls, second_calls = _count_ticks(first), _count_ticks(second)
    with caplog.at_level(logging.INFO, logger="flywheel.scheduler"):
        thread1, stop1 = _run_in_thread(first)
        wait_for(lambda: first_calls[0] > 0)
        second_attempts = _count_lock_attempts(db)
        thread2, stop2 = _run_in_thread(second)
        wait_for(lambda: second_attempts[0] >= 5, what="the standby to try the lock five times")
        assert second_calls[0] == 0
        assert "stands by" in caplog.text
        stop1.set()
        thread1.join(5)
        wait_for(lambda: second_calls[0] > 0, timeout=2)
        stop2.set()
        thread2.join(5)


def _count_ticks(scheduler: Scheduler) -> list[int]:
    calls = [0]
    tick = scheduler.tick

    def counting() -> int:
        calls[0] += 1
        return tick()

    scheduler.tick = counting  # type: ignore[method-assign]
    return calls


HOLD_THE_LOCK = """
    import sys, time
    import flywheel
    db = flywheel.connect(sys.argv[1])
    lock = db.driver.singleton(db, "flywheel-scheduler")
    assert lock.acquire()
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_a_standby_takes_over_within_an_interval_when_the_holder_dies(db_url: str, db: flywheel.Database) -> None:
    holder = python(HOLD_THE_LOCK, db_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        flywheel.upsert_periodic(db, PeriodicSpec(slug="s", kind="ping", every=1))
        standby = Scheduler(db, tick_interval=0.1)
        calls = _count_ticks(standby)
        attempts = _count_lock_attempts(db)
        thread, stop = _run_in_thread(standby)
        wait_for(lambda: attempts[0] >= 10, what="the standby to try the lock ten times")
        assert calls[0] == 0 and db.Job.select().count() == 0
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        wait_for(lambda: db.Job.select().count() > 0, timeout=5)
        assert time.monotonic() - killed < 2.0
        stop.set()
        thread.join(5)
    finally:
        holder.kill()
        holder.communicate()


def test_scheduler_settings_are_validated(db: flywheel.Database) -> None:
    for kwargs, field in ((dict(tick_interval=0), "tick_interval"), (dict(backfill_cap=0), "backfill_cap"),
                          (dict(retention=-1), "retention"), (dict(sweep_interval="30s"), "sweep_interval")):
        with pytest.raises(ValidationError) as caught:
            Scheduler(db, **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    scheduler = Scheduler(db, tick_interval=2, retention=3600)
    assert (scheduler.tick_interval, scheduler.retention) == (timedelta(seconds=2), timedelta(hours=1))


def test_every_must_be_whole_seconds(db):
    with pytest.raises(flywheel.ValidationError) as caught:
        flywheel.upsert_periodic(db, flywheel.PeriodicSpec(slug="half", kind="k", every=90.5))
    assert caught.value.field == "every"
    assert flywheel.list_periodics(db) == []
