"""The driver conformance suite: the contract every database driver keeps, as tests.

A driver plugin proves itself by running the suite the built-in SQLite and PostgreSQL
drivers pass. Subclass :class:`DriverConformance` in a test module under a name your test
runner collects (``Test…`` for pytest) and say how to get a fresh, migrated database::

    import flywheel
    from flywheel.testing import DriverConformance

    class TestMyDriver(DriverConformance):
        def make_database(self) -> flywheel.Database:
            db = flywheel.connect("mydb://localhost/scratch")
            flywheel.migrate(db)
            return db

Every test drives the database only through the :class:`~flywheel.storage.driver.Driver`
methods the runtime calls, with flywheel's public API for setup and reading back. Time is
a :class:`~flywheel.clock.FixedClock` in scope for each test (``self.clock``), and the
``now`` arguments are explicit: a driver that goes by the database's clock must follow an
injected clock instead, as the PostgreSQL driver does. Nothing sleeps; what waits for
another thread does so on an event with a deadline.

The module imports no test framework. It runs under pytest (``setup_method`` /
``teardown_method``; a skip is :class:`unittest.SkipTest`, which pytest honours).
"""

from __future__ import annotations

import contextlib
import contextvars
import multiprocessing
import queue as queue_module
import shutil
import tempfile
import threading
import time
import unittest
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import flywheel
from flywheel.api.client import build_job_row
from flywheel.clock import FixedClock, use_clock
from flywheel.enums import JobState, RunOutcome
from flywheel.errors import DuplicateKey, FlywheelError, wrap_db_error
from flywheel.ids import new_id
from flywheel.jobs import InsertOpts
from flywheel.storage.driver import ClaimedJob, ClaimRequest, Driver, FinalizePlan, FinalizeResult

__all__ = ["DriverConformance"]

#: the instant every test starts at (``self.clock``)
START = datetime(2026, 1, 1, tzinfo=UTC)
KIND = "conformance"
QUEUE = "conformance"
LEASE = timedelta(minutes=5)
#: how long anything waits for another thread or process before the test fails
DEADLINE_S = 60.0


class DriverConformance:
    """Tests every driver passes; subclass it and implement :meth:`make_database`.

    Override :meth:`reopen` when a second :class:`flywheel.Database` on the same database
    cannot be had from ``flywheel.connect(db.driver.url, pm=db.pm)``, and
    :meth:`process_url` (return None to skip) when a child process cannot open the URL
    through the installed plugins. Set :attr:`password_url` to a URL your driver accepts
    that carries a password, to check that :meth:`Driver.display_url` hides it.
    """

    #: a URL with a password that ``type(driver)(password_url)`` accepts without connecting
    password_url: str | None = None
    #: claimers racing in the exclusivity test, and the jobs they share
    claim_threads = 6
    claim_jobs = 120
    #: a batch larger than any driver's statement chunk (and the PostgreSQL COPY threshold)
    bulk_rows = 1200

    # -- what a driver's test module provides -----------------------------------------

    def make_database(self) -> flywheel.Database:
        """A fresh, migrated, empty database for one test (closed by the suite afterwards)."""
        raise NotImplementedError("a DriverConformance subclass implements make_database()")

    def reopen(self, db: flywheel.Database) -> flywheel.Database:
        """A second handle on ``db``'s database, as another node would open it."""
        return flywheel.connect(db.driver.url, pm=db.pm)

    def process_url(self, db: flywheel.Database) -> str | None:
        """The URL a child process opens with ``flywheel.connect`` (None skips the process test)."""
        return db.driver.url

    # -- fixtures -----------------------------------------------------------------------

    def setup_method(self, method: Any = None) -> None:
        self._cleanup = contextlib.ExitStack()
        self.clock = FixedClock(START)
        self._cleanup.enter_context(use_clock(self.clock))
        self._db: flywheel.Database | None = None

    def teardown_method(self, method: Any = None) -> None:
        self._cleanup.close()

    @property
    def db(self) -> flywheel.Database:
        """This test's database, made on first use."""
        if self._db is None:
            self._db = self._track(self.make_database())
        return self._db

    @property
    def driver(self) -> Driver:
        return self.db.driver

    def other_handle(self) -> flywheel.Database:
        """A second handle on this test's database, closed after the test."""
        return self._track(self.reopen(self.db))

    def _track(self, db: flywheel.Database) -> flywheel.Database:
        self._cleanup.callback(db.close)
        return db

    def temp_dir(self) -> str:
        """A directory removed after the test (for drivers whose databases are files)."""
        path = tempfile.mkdtemp(prefix="flywheel-conformance-")
        self._cleanup.callback(shutil.rmtree, path, True)
        return path

    # -- helpers ------------------------------------------------------------------------

    def insert(self, db: flywheel.Database | None = None, **opts: Any) -> str:
        """One job through the public client (``driver.enqueue``), in :data:`QUEUE` unless told."""
        opts.setdefault("queue", QUEUE)
        return flywheel.Client(db or self.db).enqueue(KIND, {}, **opts)

    def rows(self, count: int, **opts: Any) -> list[dict[str, Any]]:
        """Complete ``jobs`` rows as the kernel hands them to ``insert_jobs``; nothing written."""
        opts.setdefault("queue", QUEUE)
        return [build_job_row(KIND, "{}", InsertOpts(**opts), self.clock.now()) for _ in range(count)]

    def claim(self, db: flywheel.Database | None = None, *, queues: Sequence[str] = (QUEUE,), limit: int = 10,
              executor_class: str = "", claim_any_class: bool = False, lease: timedelta = LEASE,
              token: str | None = None, executor_id: str = "conformance-node") -> list[ClaimedJob]:
        """One claim as the runner makes it: a run id per job it may take, one token for the batch."""
        db = db or self.db
        now = self.clock.now()
        request = ClaimRequest(queues=tuple(queues), executor_class=executor_class, claim_any_class=claim_any_class,
                               limit=limit, now=now, lease_until=now + lease, lease_token=token or new_id(),
                               executor_id=executor_id, run_ids=tuple(new_id() for _ in range(limit)))
        return db.driver.claim(db, request)

    def plan(self, job: ClaimedJob, *, state: JobState = JobState.SUCCEEDED, outcome: RunOutcome = RunOutcome.SUCCESS,
             token: str | None = None, scheduled_at: datetime | None = None, bump_max_attempts: bool = False,
             error_class: str | None = None, error_message: str | None = None, output_json: str | None = None,
             follow_ups: Sequence[dict[str, Any]] = ()) -> FinalizePlan:
        """The finalisation of a claimed attempt (a terminal state gets ``finalized_at``)."""
        now = self.clock.now()
        terminal = state in (JobState.SUCCEEDED, JobState.CANCELLED, JobState.DISCARDED)
        return FinalizePlan(
            job_id=job.id, run_id=job.run_id, lease_token=token or job.lease_token, state=state,
            scheduled_at=scheduled_at, finalized_at=now if terminal else None, bump_max_attempts=bump_max_attempts,
            outcome=outcome, finished_at=now, duration_ms=1234, error_class=error_class,
            error_message=error_message, output_json=output_json, cost_micros=7, follow_ups=tuple(follow_ups),
        )

    def finalize(self, *plans: FinalizePlan) -> list[FinalizeResult]:
        return list(self.driver.finalize(self.db, plans))

    def lease_of(self, job_id: str) -> tuple[str | None, datetime | None]:
        """The job's ``(lease_token, leased_until)`` as stored."""
        Job = self.db.Job
        token, until = Job.select(Job.lease_token, Job.leased_until).where(Job.id == job_id).tuples().get()
        return token, until

    def exists(self, job_id: str) -> bool:
        try:
            flywheel.find_job(self.db, job_id)
        except flywheel.JobNotFound:
            return False
        return True

    def outcomes(self, job_id: str) -> list[str]:
        """The job's run outcomes, oldest first."""
        return [run.outcome for run in reversed(flywheel.list_runs(self.db, job_id))]

    # == schema ============================================================================

    def test_migrate_is_idempotent(self) -> None:
        job_id = self.insert()
        self.driver.migrate(self.db)
        flywheel.migrate(self.other_handle())
        assert flywheel.find_job(self.db, job_id).state == "available"

    # == insert_jobs and enqueue ==========================================================

    def test_insert_jobs_reports_exactly_the_ids_written(self) -> None:
        rows = self.rows(3)
        with self.db.atomic():
            landed = self.driver.insert_jobs(self.db, rows)
        assert landed == {row["id"] for row in rows}
        assert all(self.exists(row["id"]) for row in rows)

    def test_insert_jobs_skips_unique_collisions(self) -> None:
        self.insert(unique_key="once")
        self.insert(unique_active_key="while-active")
        colliding = self.rows(1, unique_key="once") + self.rows(1, unique_active_key="while-active")
        fresh = self.rows(2)
        with self.db.atomic():
            landed = self.driver.insert_jobs(self.db, [colliding[0], fresh[0], colliding[1], fresh[1]])
        assert landed == {fresh[0]["id"], fresh[1]["id"]}
        assert not self.exists(colliding[0]["id"]) and not self.exists(colliding[1]["id"])

    def test_insert_jobs_refuses_an_existing_id_in_an_unkeyed_batch(self) -> None:
        self._assert_refuses_an_existing_id(3)

    def test_insert_jobs_refuses_an_existing_id_in_a_large_unkeyed_batch(self) -> None:
        self._assert_refuses_an_existing_id(self.bulk_rows)

    def _assert_refuses_an_existing_id(self, size: int) -> None:
        """A batch without unique keys can lose a row only to an existing id: that is an error,
        and the caller's transaction writes none of the batch."""
        existing = self.insert()
        batch = self.rows(size)
        batch[size // 2]["id"] = existing
        raised = _raised(lambda: self._insert_in_transaction(batch))
        assert raised is not None, "insert_jobs accepted a batch holding an id that already exists"
        assert isinstance(_as_flywheel_error(self.driver, raised), DuplicateKey), f"{raised!r} is not a duplicate key"
        assert self.driver.count_active(self.db, None, None) == 1, "part of the refused batch was written"

    def test_insert_jobs_in_bulk_reports_exactly_the_ids_written(self) -> None:
        self.insert(unique_key="taken")
        rows = self.rows(self.bulk_rows)
        for row in rows[::100]:
            row["unique_key"] = "taken"
        with self.db.atomic():
            landed = self.driver.insert_jobs(self.db, rows)
        assert landed == {row["id"] for row in rows if row["unique_key"] is None}
        assert self.driver.count_active(self.db, None, None) == 1 + len(landed)

    def _insert_in_transaction(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        with self.db.atomic():
            return self.driver.insert_jobs(self.db, rows)

    def test_enqueue_commits_on_its_own_and_joins_a_callers_transaction(self) -> None:
        alone = self.rows(2)
        assert self.driver.enqueue(self.db, alone) == {row["id"] for row in alone}
        rolled_back = self.rows(1)
        _raised(lambda: self._enqueue_then_fail(rolled_back))
        assert all(self.exists(row["id"]) for row in alone)
        assert not self.exists(rolled_back[0]["id"])

    def _enqueue_then_fail(self, rows: Sequence[dict[str, Any]]) -> None:
        with self.db.atomic():
            assert self.driver.enqueue(self.db, rows) == {row["id"] for row in rows}
            raise _Rollback

    # == the claim ==========================================================================

    def test_claim_takes_only_due_jobs_of_its_queues(self) -> None:
        wanted = {self.insert(queue="a"), self.insert(queue="b")}
        self.insert(queue="c")
        later = self.insert(queue="a", schedule_at=START + timedelta(minutes=1))
        assert {job.id for job in self.claim(queues=("a", "b"))} == wanted
        assert self.claim(queues=("a", "b")) == []
        self.clock.advance(timedelta(minutes=1))
        assert [job.id for job in self.claim(queues=("a", "b"))] == [later]

    def test_claim_routes_by_executor_class(self) -> None:
        gpu, anyone, cpu = (self.insert(executor_class=c) for c in ("gpu", "", "cpu"))
        assert {job.id for job in self.claim(executor_class="gpu")} == {gpu, anyone}
        assert self.claim(executor_class="gpu") == []
        assert [job.id for job in self.claim(executor_class="gpu", claim_any_class=True)] == [cpu]

    def test_claim_orders_by_priority_then_due_time_then_id_and_respects_the_limit(self) -> None:
        first_due = self.insert(priority=2, schedule_at=START - timedelta(minutes=2))
        same_time = sorted(self.insert(priority=2, schedule_at=START - timedelta(minutes=1)) for _ in range(2))
        urgent = self.insert(priority=1)
        lazy = self.insert(priority=3, schedule_at=START - timedelta(hours=1))
        taken = self.claim(limit=3)
        assert [job.id for job in taken] == [urgent, first_due, same_time[0]]
        assert [job.id for job in self.claim(limit=10)] == [same_time[1], lazy]

    def test_claim_leases_the_job_and_writes_one_started_run(self) -> None:
        job_id = self.insert(priority=4, max_attempts=3, tags=["t"])
        (job,) = self.claim(token="token-1", executor_class="", executor_id="node-7", lease=timedelta(seconds=90))
        assert (job.id, job.kind, job.queue, job.attempt, job.max_attempts) == (job_id, KIND, QUEUE, 1, 3)
        assert (job.lease_token, job.priority, job.tags, job.started_at) == ("token-1", 4, ["t"], START)
        assert job.scheduled_at == START
        assert flywheel.find_job(self.db, job_id).state == "running"
        assert self.lease_of(job_id) == ("token-1", START + timedelta(seconds=90))
        (run,) = flywheel.list_runs(self.db, job_id)
        assert (run.id, run.outcome, run.attempt, run.executor_id) == (job.run_id, "started", 1, "node-7")
        assert run.started_at == START

    def test_claim_uses_the_given_run_ids_in_order(self) -> None:
        for _ in range(3):
            self.insert()
        now = self.clock.now()
        run_ids = ("run-a", "run-b", "run-c", "run-d")
        request = ClaimRequest(queues=(QUEUE,), executor_class="", claim_any_class=False, limit=4, now=now,
                               lease_until=now + LEASE, lease_token="t", executor_id="n", run_ids=run_ids)
        claimed = self.driver.claim(self.db, request)
        assert [job.run_id for job in claimed] == ["run-a", "run-b", "run-c"]
        assert {run.id for job in claimed for run in flywheel.list_runs(self.db, job.id)} == set(run_ids[:3])

    def test_a_second_claim_is_the_next_attempt(self) -> None:
        job_id = self.insert()
        (first,) = self.claim()
        assert self.driver.release_leases(self.db, [(first.id, first.lease_token)], self.clock.now()) == 1
        (second,) = self.claim()
        assert (second.id, second.attempt) == (job_id, 2)
        assert second.lease_token != first.lease_token
        assert self.outcomes(job_id) == ["crashed", "started"]

    def test_concurrent_claimers_never_share_a_job(self) -> None:
        """The test an MVCC driver without row locking (``SKIP LOCKED``) fails."""
        ids = self.driver.enqueue(self.db, self.rows(self.claim_jobs))
        handles = [self.other_handle() for _ in range(self.claim_threads)]
        start = threading.Barrier(len(handles))
        claimed: list[list[str]] = [[] for _ in handles]
        errors: list[BaseException] = []

        def claimer(db: flywheel.Database, into: list[str]) -> None:
            try:
                start.wait(DEADLINE_S)
                while batch := self.claim(db, limit=5):
                    into.extend(job.id for job in batch)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [_thread(claimer, db, into) for db, into in zip(handles, claimed, strict=True)]
        for thread in threads:
            thread.join(DEADLINE_S)
        assert not errors, errors
        assert not any(thread.is_alive() for thread in threads), "a claimer did not finish"
        every = [job_id for ids_of_one in claimed for job_id in ids_of_one]
        shared = len(every) - len(set(every))
        assert shared == 0, f"{shared} claims took a job another claimer held"
        assert set(every) == ids, f"{len(ids - set(every))} jobs were never claimed"
        assert all(len(flywheel.list_runs(self.db, job_id)) == 1 for job_id in ids)

    def test_concurrent_processes_never_share_a_job(self) -> None:
        url = self.process_url(self.db)
        if url is None:
            raise unittest.SkipTest("process_url() is None: the driver cannot be opened in a child process")
        ids = self.driver.enqueue(self.db, self.rows(60))
        claimed = _claim_in_processes(url, self.clock.now(), processes=2)
        shared = len(claimed) - len(set(claimed))
        assert shared == 0, f"{shared} claims took a job the other process held"
        assert set(claimed) == ids, f"{len(ids - set(claimed))} jobs were never claimed"

    # == finalisation ======================================================================

    def test_finalize_records_the_outcome_on_job_and_run(self) -> None:
        job_id = self.insert()
        (job,) = self.claim()
        self.clock.advance(timedelta(seconds=2))
        (result,) = self.finalize(self.plan(job, output_json='{"answer": 42}'))
        assert result == FinalizeResult(job_id=job_id, superseded=False, enqueued_children=0)
        view = flywheel.find_job(self.db, job_id)
        assert (view.state, view.finalized_at) == ("succeeded", START + timedelta(seconds=2))
        assert self.lease_of(job_id) == (None, None)
        (run,) = flywheel.list_runs(self.db, job_id)
        assert (run.id, run.outcome, run.finished_at) == (job.run_id, "success", START + timedelta(seconds=2))
        assert (run.duration_ms, run.cost_micros) == (1234, 7)
        assert "42" in str(run.output)

    def test_finalize_with_a_stale_lease_token_is_superseded_and_changes_nothing(self) -> None:
        job_id = self.insert(max_attempts=5)
        (old,) = self.claim(lease=timedelta(seconds=10))
        self.clock.advance(timedelta(minutes=1))
        assert self.driver.sweep(self.db, self.clock.now()).reclaimed == 1
        (new,) = self.claim()
        child = self.rows(1, parent=job_id)
        (result,) = self.finalize(self.plan(old, follow_ups=child))
        assert result == FinalizeResult(job_id=job_id, superseded=True, enqueued_children=0)
        view = flywheel.find_job(self.db, job_id)
        assert (view.state, view.attempt, view.finalized_at) == ("running", 2, None)
        assert self.lease_of(job_id) == (new.lease_token, self.clock.now() + LEASE)
        assert not self.exists(child[0]["id"]), "a superseded attempt's follow-up was inserted"
        assert self.outcomes(job_id) == ["crashed", "started"], "the sweep's verdict on the old run was overwritten"
        (result,) = self.finalize(self.plan(new))
        assert not result.superseded
        assert self.outcomes(job_id) == ["crashed", "success"]

    def test_finalize_with_a_token_that_never_held_the_job_is_superseded(self) -> None:
        job_id = self.insert()
        (job,) = self.claim()
        (result,) = self.finalize(self.plan(job, token="not-the-token"))
        assert result.superseded
        assert flywheel.find_job(self.db, job_id).state == "running"
        assert self.lease_of(job_id)[0] == job.lease_token

    def test_finalize_inserts_follow_ups_of_a_held_attempt(self) -> None:
        job_id = self.insert()
        (job,) = self.claim()
        children = self.rows(2, parent=job_id, queue="children")
        (result,) = self.finalize(self.plan(job, follow_ups=children))
        assert (result.superseded, result.enqueued_children) == (False, 2)
        assert {c.id for c in self.claim(queues=("children",))} == {row["id"] for row in children}
        assert flywheel.list_runs(self.db, job_id)[0].enqueued_children == 2

    def test_finalize_several_plans_in_one_call(self) -> None:
        for _ in range(4):
            self.insert(max_attempts=3)
        done, retry, snoozed, stale = self.claim()
        later = START + timedelta(minutes=5)
        results = self.finalize(
            self.plan(done),
            self.plan(retry, state=JobState.RETRYABLE, outcome=RunOutcome.ERROR, scheduled_at=later,
                      error_class="transient", error_message="boom"),
            self.plan(snoozed, state=JobState.SCHEDULED, outcome=RunOutcome.SNOOZE, scheduled_at=later,
                      bump_max_attempts=True),
            self.plan(stale, token="stale"),
        )
        assert [(r.job_id, r.superseded) for r in results] == [
            (done.id, False), (retry.id, False), (snoozed.id, False), (stale.id, True)]
        assert flywheel.find_job(self.db, done.id).state == "succeeded"
        retried = flywheel.find_job(self.db, retry.id)
        assert (retried.state, retried.scheduled_at, retried.finalized_at) == ("retryable", later, None)
        (run,) = flywheel.list_runs(self.db, retry.id)
        assert (run.outcome, run.error_class, run.error) == ("error", "transient", "boom")
        assert flywheel.find_job(self.db, snoozed.id).max_attempts == 4
        assert flywheel.find_job(self.db, stale.id).state == "running"
        assert self.claim() == []
        self.clock.set(later)
        assert {(job.id, job.attempt) for job in self.claim()} == {(retry.id, 2), (snoozed.id, 2)}

    # == leases ============================================================================

    def test_renew_leases_extends_and_returns_only_the_leases_still_held(self) -> None:
        held, other = self.insert(), self.insert()
        claimed = {job.id: job for job in self.claim()}
        until = START + timedelta(minutes=30)
        renewed = self.driver.renew_leases(
            self.db, [(held, claimed[held].lease_token), (other, "wrong-token"), ("no-such-job", "x")],
            until, self.clock.now())
        assert renewed == {held}
        assert self.lease_of(held) == (claimed[held].lease_token, until)
        assert self.lease_of(other) == (claimed[other].lease_token, START + LEASE)

    def test_release_leases_hands_jobs_back_and_marks_their_runs_crashed(self) -> None:
        job_id = self.insert(schedule_at=START - timedelta(hours=1))
        (job,) = self.claim()
        self.clock.advance(timedelta(seconds=3))
        assert self.driver.release_leases(self.db, [(job_id, "wrong-token")], self.clock.now()) == 0
        assert self.driver.release_leases(self.db, [(job_id, job.lease_token)], self.clock.now()) == 1
        view = flywheel.find_job(self.db, job_id)
        assert (view.state, view.attempt, view.scheduled_at) == ("available", 1, self.clock.now())
        assert self.lease_of(job_id) == (None, None)
        assert self.outcomes(job_id) == ["crashed"]
        assert [c.attempt for c in self.claim()] == [2]

    def test_unclaim_restores_the_attempt_and_deletes_the_started_run(self) -> None:
        job_id = self.insert(priority=3)
        (job,) = self.claim()
        assert self.driver.unclaim(self.db, [(job_id, job.lease_token, job.run_id)], self.clock.now()) == 1
        view = flywheel.find_job(self.db, job_id)
        assert (view.state, view.attempt, view.scheduled_at, view.priority) == ("available", 0, START, 3)
        assert flywheel.list_runs(self.db, job_id) == []
        assert [c.attempt for c in self.claim()] == [1]

    def test_unclaim_of_a_lost_lease_only_closes_its_run(self) -> None:
        job_id = self.insert()
        (old,) = self.claim(lease=timedelta(seconds=10))
        self.clock.advance(timedelta(minutes=1))
        self.driver.sweep(self.db, self.clock.now())
        (new,) = self.claim()
        assert self.driver.unclaim(self.db, [(job_id, old.lease_token, old.run_id)], self.clock.now()) == 0
        assert (flywheel.find_job(self.db, job_id).attempt, self.lease_of(job_id)[0]) == (2, new.lease_token)
        assert self.outcomes(job_id) == ["crashed", "started"]

    def test_sweep_recovers_expired_leases_and_leaves_live_ones(self) -> None:
        retry = self.insert(max_attempts=3)
        spent = self.insert(max_attempts=1)
        self.claim(lease=timedelta(seconds=10))
        live = self.insert()
        self.claim(lease=timedelta(hours=1))
        self.clock.advance(timedelta(seconds=5))
        assert (self.driver.sweep(self.db, self.clock.now()).reclaimed, 0) == (0, 0)
        self.clock.advance(timedelta(minutes=1))
        result = self.driver.sweep(self.db, self.clock.now())
        assert (result.reclaimed, result.discarded) == (1, 1)
        assert [flywheel.find_job(self.db, j).state for j in (retry, spent, live)] == [
            "available", "discarded", "running"]
        assert flywheel.find_job(self.db, spent).finalized_at == self.clock.now()
        assert [self.outcomes(j) for j in (retry, spent, live)] == [["crashed"], ["crashed"], ["started"]]
        again = self.driver.sweep(self.db, self.clock.now())
        assert (again.reclaimed, again.discarded) == (0, 0)

    def test_sweep_works_through_more_expired_jobs_than_one_batch(self) -> None:
        ids = self.driver.enqueue(self.db, self.rows(7))
        self.claim(limit=7, lease=timedelta(seconds=1))
        self.clock.advance(timedelta(minutes=1))
        assert self.driver.sweep(self.db, self.clock.now(), batch_size=3).reclaimed == 7
        assert {job.id for job in self.claim(limit=10)} == ids

    # == wake-ups ==========================================================================

    def test_an_enqueue_in_another_thread_wakes_a_waiter(self) -> None:
        self._assert_woken(lambda: self.insert(queue="wake"))

    def test_an_enqueue_through_another_handle_wakes_a_waiter(self) -> None:
        other = self.other_handle()
        self._assert_woken(lambda: self.insert(other, queue="wake"))

    def test_interrupt_waits_wakes_waiters(self) -> None:
        self._assert_woken(self.driver.interrupt_waits)

    def _assert_woken(self, poke: Callable[[], Any]) -> None:
        """A waiter blocked for up to a minute returns True once ``poke`` runs in this thread.

        ``poke`` repeats until the waiter returns, so a wake-up sent before the waiter was
        listening does not fail the test; a driver that never wakes waiters returns False.
        """
        db = self.db  # made here, not raced for by the waiter
        woken: list[bool] = []
        done = threading.Event()

        def waiter() -> None:
            try:
                woken.append(db.driver.wait_for_work(db, ["wake"], DEADLINE_S))
            finally:
                done.set()

        thread = _thread(waiter)
        deadline = time.monotonic() + DEADLINE_S
        while not done.wait(0.05) and time.monotonic() < deadline:
            poke()
        thread.join(DEADLINE_S)
        assert woken == [True], "wait_for_work was not woken (it waited out its timeout)"

    # == the maintenance lock ===============================================================

    def test_singleton_is_exclusive_between_handles_and_re_entrant(self) -> None:
        mine = self.driver.singleton(self.db, "flywheel-conformance")
        other_db = self.other_handle()
        theirs = other_db.driver.singleton(other_db, "flywheel-conformance")
        try:
            assert mine.acquire() is True
            assert mine.acquire() is True, "acquire() is not re-entrant for its holder"
            assert theirs.acquire() is False, "two handles held the same singleton"
            mine.release()
            assert theirs.acquire() is True
            assert mine.acquire() is False
        finally:
            mine.release()
            theirs.release()
        assert mine.acquire() is True
        mine.release()

    # == reading ==========================================================================

    def test_count_active_counts_non_terminal_jobs_by_queue_and_class(self) -> None:
        self.insert(queue="a")
        self.insert(queue="a", executor_class="gpu", schedule_at=START + timedelta(hours=1))
        self.insert(queue="b", executor_class="cpu")
        self.insert(queue="a")
        (job,) = self.claim(queues=("a",), limit=1)
        self.insert(queue="a")
        (finished,) = self.claim(queues=("a",), limit=1)
        self.finalize(self.plan(finished))
        assert self.driver.count_active(self.db, None, None) == 4
        assert self.driver.count_active(self.db, ["a"], None) == 3
        assert self.driver.count_active(self.db, ["a", "b"], "gpu") == 3
        assert self.driver.count_active(self.db, ["b"], "gpu") == 0
        assert self.driver.count_active(self.db, None, "cpu") == 3
        assert job.queue == "a"

    def test_next_due_is_the_earliest_claimable_due_time(self) -> None:
        assert self.driver.next_due(self.db, [QUEUE], None) is None
        soon, later = START + timedelta(minutes=1), START + timedelta(minutes=9)
        self.insert(schedule_at=later)
        self.insert(schedule_at=soon, executor_class="gpu")
        self.insert(queue="elsewhere", schedule_at=START + timedelta(seconds=1))
        assert self.driver.next_due(self.db, [QUEUE], None) == soon
        assert self.driver.next_due(self.db, [QUEUE], "cpu") == later
        self.insert(schedule_at=START - timedelta(minutes=1))
        self.claim()  # a running job is not due
        assert self.driver.next_due(self.db, [QUEUE], "gpu") == soon

    # == transactions and errors ===========================================================

    def test_atomic_rolls_back_everything_on_an_exception(self) -> None:
        rows = self.rows(2)

        def insert_then_fail() -> None:
            with self.db.atomic():
                self.driver.insert_jobs(self.db, rows)
                raise _Rollback

        assert isinstance(_raised(insert_then_fail), _Rollback)
        assert not any(self.exists(row["id"]) for row in rows)

    def test_nested_atomic_is_a_savepoint(self) -> None:
        kept, dropped = self.rows(1), self.rows(1)

        def inner() -> None:
            with self.db.atomic():
                self.driver.insert_jobs(self.db, dropped)
                raise _Rollback

        with self.db.atomic():
            self.driver.insert_jobs(self.db, kept)
            assert isinstance(_raised(inner), _Rollback)
        assert self.exists(kept[0]["id"])
        assert not self.exists(dropped[0]["id"])

    def test_a_constraint_violation_is_not_transient(self) -> None:
        row = self.rows(1)[0]
        self.driver.enqueue(self.db, [row])

        def insert_again() -> None:
            with self.db.atomic():
                self.db.Job.insert(**row).execute()

        raised = _raised(insert_again)
        assert raised is not None
        assert self.driver.is_transient(raised) is False
        assert isinstance(_as_flywheel_error(self.driver, raised), DuplicateKey)
        assert self.exists(self.insert()), "the connection did not recover from the violation"

    def test_display_url_hides_the_password(self) -> None:
        shown = self.driver.display_url()
        assert isinstance(shown, str) and shown
        if self.password_url is None:
            raise unittest.SkipTest("password_url is not set")
        password = _password_of(self.password_url)
        assert password, f"password_url {self.password_url!r} carries no password"
        assert password not in type(self.driver)(self.password_url).display_url()


class _Rollback(Exception):
    """Raised inside a transaction to roll it back."""


def _raised(fn: Callable[[], Any]) -> BaseException | None:
    """What ``fn`` raised (None if nothing): the suite imports no test framework's ``raises``."""
    try:
        fn()
    except Exception as exc:
        return exc
    return None


def _as_flywheel_error(driver: Driver, exc: BaseException) -> FlywheelError:
    """``exc`` as the flywheel error the public API raises for it: the driver's ``map_error``
    must name it where the driver has one (else the kernel's :func:`wrap_db_error`)."""
    if isinstance(exc, FlywheelError):
        return exc
    map_error = getattr(driver, "map_error", None)
    if map_error is None:
        return wrap_db_error(exc)
    mapped = map_error(exc)
    assert isinstance(mapped, FlywheelError), f"{type(driver).__name__}.map_error({exc!r}) named no flywheel error"
    return mapped


def _password_of(url: str) -> str | None:
    from urllib.parse import urlsplit

    return urlsplit(url).password


def _thread(fn: Callable[..., Any], *args: Any) -> threading.Thread:
    """Start ``fn`` on a daemon thread that sees this thread's context (the test's clock)."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(fn, *args), daemon=True)
    thread.start()
    return thread


# -- claiming from child processes -------------------------------------------------------


def _claim_in_processes(url: str, now: datetime, processes: int) -> list[str]:
    """Every job id that ``processes`` spawned claimers took, started together."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    children = [context.Process(target=_child_claimer, args=(url, now, ready, go, results), daemon=True)
                for _ in range(processes)]
    for child in children:
        child.start()
    try:
        for _ in children:
            if not ready.acquire(timeout=DEADLINE_S):
                raise AssertionError("a claiming process did not start")
        go.set()
        claimed: list[str] = []
        for _ in children:
            kind, value = results.get(timeout=DEADLINE_S)
            if kind == "error":
                raise AssertionError(f"a claiming process failed: {value}")
            claimed += value
        return claimed
    except queue_module.Empty:
        raise AssertionError("a claiming process did not report") from None
    finally:
        for child in children:
            child.join(DEADLINE_S)
            if child.is_alive():
                child.kill()


def _child_claimer(url: str, now: datetime, ready: Any, go: Any, results: Any) -> None:
    """In a child process: open ``url``, wait for the start, claim in batches until none is left."""
    try:
        with use_clock(FixedClock(now)), _closing(flywheel.connect(url)) as db:
            db.driver.count_active(db, None, None)  # connected before the start
            ready.release()
            go.wait(DEADLINE_S)
            claimed: list[str] = []
            while True:
                request = ClaimRequest(queues=(QUEUE,), executor_class="", claim_any_class=False, limit=5, now=now,
                                       lease_until=now + LEASE, lease_token=new_id(), executor_id="child",
                                       run_ids=tuple(new_id() for _ in range(5)))
                batch = db.driver.claim(db, request)
                if not batch:
                    break
                claimed += [job.id for job in batch]
        results.put(("ok", claimed))
    except BaseException as exc:  # reported to the parent
        ready.release()
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _closing(db: flywheel.Database) -> Iterator[flywheel.Database]:
    try:
        yield db
    finally:
        db.close()
