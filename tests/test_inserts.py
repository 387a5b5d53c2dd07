"""Insert paths: blank unique keys are refused, and every path reports exactly the rows it wrote.

Issue 7, defect 5: ``enqueue k --unique-key ''`` twice printed a second job id on SQLite
while no second row was written (the driver read ``''`` as "no key" and did not ask which
rows landed); on PostgreSQL it raised "already enqueued" naming no key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import flywheel
from flywheel import clock as fw_clock
from flywheel.api.client import build_job_row
from flywheel_plugins.postgres.bulk import COPY_MIN_ROWS

REPO = Path(__file__).resolve().parent.parent
BLANK_KEYS = ("", " ", "\t\n ")


@attrs.frozen
class Ping:
    kind: ClassVar[str] = "ping"
    n: int = 0


def _rows(count: int, **opts: Any) -> list[dict[str, Any]]:
    now = fw_clock.now()
    return [build_job_row("ping", f'{{"n":{i}}}', flywheel.InsertOpts(**opts), now) for i in range(count)]


def _present(db: flywheel.Database, ids: list[str]) -> set[str]:
    Job = db.Job
    return {row.id for row in Job.select(Job.id).where(Job.id.in_(ids))}


@pytest.mark.parametrize("key", BLANK_KEYS)
def test_defect_5_a_blank_unique_key_is_refused_everywhere_and_writes_nothing(db, client, key):
    for call in (lambda: client.enqueue("ping", {}, unique_key=key),
                 lambda: client.enqueue("ping", {}, unique_active_key=key),
                 lambda: client.insert(Ping(1), unique_key=key),
                 lambda: client.insert(Ping(1), unique_active_key=key),
                 lambda: client.insert_many([Ping(1), (Ping(2), flywheel.InsertOpts(unique_key=key)), Ping(3)]),
                 lambda: flywheel.FollowUp("ping", {}, unique_key=key)):
        with pytest.raises(flywheel.ValidationError) as raised:
            call()
        assert raised.value.field == "unique_key"
        assert repr(key) in raised.value.message
    assert db.Job.select().count() == 0
    with pytest.raises(flywheel.ValidationError, match="item 1"):
        client.insert_many([Ping(1), (Ping(2), flywheel.InsertOpts(unique_key=key))])
    assert db.Job.select().count() == 0  # a batch with one bad item writes nothing


def test_defect_5_cli_enqueue_with_an_empty_unique_key_fails_in_one_line_twice(db_url, db):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "flywheel", "--db", db_url, "enqueue", "ping", "{}",
                               "--unique-key", ""], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr  # a bad flag value is a usage error
        assert proc.stdout == ""  # no job id printed
        assert len(proc.stderr.strip().splitlines()) == 1 and "unique_key" in proc.stderr
    assert db.Job.select().count() == 0


@pytest.mark.parametrize("count", [1, 5, COPY_MIN_ROWS + 50, 1234])
def test_defect_5_every_insert_path_reports_exactly_the_rows_it_wrote(db, count):
    """Rows that slip past validation (built by hand) with an empty key: only one can land."""
    first = _rows(count)
    for row in first:
        row["unique_key"] = ""  # what the old code read as "no key" while the index saw a key
    landed = db.driver.enqueue(db, first)
    assert landed == _present(db, [r["id"] for r in first]) and len(landed) == 1
    again = _rows(count)
    for row in again:
        row["unique_key"] = ""
    assert db.driver.enqueue(db, again) == set() == _present(db, [r["id"] for r in again])


@pytest.mark.parametrize("count", [1, 5, COPY_MIN_ROWS + 50, 1234])
def test_defect_5_mixed_batches_report_exactly_the_rows_they_wrote(db, client, count):
    taken = [f"k{i}" for i in range(0, count, 3)]
    for key in taken:
        client.enqueue("ping", {}, unique_key=key)
    for outbox in (False, True):
        rows = _rows(count)
        for i, row in enumerate(rows):
            row["unique_key"] = f"k{i}" if not outbox else (f"k{i}" if i % 2 else None)
            row["unique_active_key"] = f"a{i % 2}" if outbox and count > 1 else None
        if outbox:  # inside a caller's transaction (the outbox pattern) the same holds
            with db.atomic():
                landed = db.driver.enqueue(db, rows)
        else:
            landed = db.driver.enqueue(db, rows)
        assert landed == _present(db, [r["id"] for r in rows])
    rows = _rows(count)  # no keys at all: everything lands (COPY straight into jobs on PostgreSQL)
    assert db.driver.enqueue(db, rows) == {r["id"] for r in rows} == _present(db, [r["id"] for r in rows])


def test_defect_5_insert_many_returns_none_exactly_where_nothing_was_written(db, client):
    client.insert(Ping(0), unique_key="taken")
    items: list[Any] = [Ping(i) for i in range(COPY_MIN_ROWS + 10)]
    items[3] = (Ping(3), flywheel.InsertOpts(unique_key="taken"))
    items[7] = (Ping(7), flywheel.InsertOpts(unique_active_key="once"))
    items[9] = (Ping(9), flywheel.InsertOpts(unique_active_key="once"))
    ids = client.insert_many(items)
    assert [i for i, job_id in enumerate(ids) if job_id is None] == [3, 9]
    assert _present(db, [i for i in ids if i]) == {i for i in ids if i}
    assert db.Job.select().count() == len(items) - 2 + 1


def test_defect_5_follow_ups_count_only_the_children_written(db, registry, client, make_runner):
    @registry.worker("ping")
    def ping(job: flywheel.Job[Ping]) -> flywheel.Result | None:
        if job.args.n:
            return None
        return flywheel.Result(follow_ups=[flywheel.FollowUp(Ping(1), unique_key="child"),
                                           flywheel.FollowUp(Ping(2), unique_key="child"),
                                           flywheel.FollowUp(Ping(3), unique_key="taken")])

    client.insert(Ping(9), unique_key="taken")
    parent = client.insert(Ping(0))
    make_runner().run_until_idle(timeout=30)
    runs = flywheel.list_runs(db, parent)
    assert [r.outcome for r in runs] == ["success"]
    children = db.Job.select().where(db.Job.parent_job_id == parent).count()
    assert runs[0].enqueued_children == children == 1


def test_a_lost_prepared_statement_is_prepared_again(db_url, db):
    if db.dialect != "postgres":
        pytest.skip("the prepared single-job insert is PostgreSQL's")
    client = flywheel.Client(db)
    first = client.insert(Ping(1))
    db.pw.execute_sql("DEALLOCATE ALL")  # what a connection pooler's DISCARD ALL does
    second = client.insert(Ping(2))
    assert _present(db, [first, second]) == {first, second}


@pytest.mark.parametrize("count", [1, 5, COPY_MIN_ROWS + 50])
def test_a_reused_job_id_is_never_reported_as_written(db, client, count):
    existing = client.enqueue("ping", {})
    rows = _rows(count)
    rows[-1]["id"] = existing  # only a caller building rows by hand could do this
    before = db.Job.select().count()
    try:
        landed = db.driver.enqueue(db, rows)
    except Exception as exc:  # some paths refuse the whole batch: then nothing was written
        assert "already existed" in str(exc) or "duplicate key" in str(exc).lower()
        assert db.Job.select().count() == before
    else:
        assert existing not in landed
        assert landed == _present(db, [r["id"] for r in rows[:-1]]) and len(landed) == count - 1
