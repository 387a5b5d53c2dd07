"""The schema, ids, and the package's front door."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import ClassVar

import attrs

import flywheel
from flywheel.storage.models import INDEXES


def test_migrate_is_idempotent_and_creates_every_index(db):
    flywheel.migrate(db)
    flywheel.migrate(db)
    tables = set(db.pw.get_tables())
    assert {"jobs", "job_runs", "job_periodics"} <= tables
    present = {idx.name for table in ("jobs", "job_runs", "job_periodics") for idx in db.pw.get_indexes(table)}
    assert {index.name for index in INDEXES} <= present


def test_models_are_the_unbound_peewee_models():
    job, run, periodic = flywheel.models()
    assert (job._meta.table_name, run._meta.table_name, periodic._meta.table_name) == (
        "jobs", "job_runs", "job_periodics")
    assert {"lease_token", "timeout_ms", "metadata", "tags", "finalized_at", "executor_class", "parent_job_id",
            "unique_key", "unique_active_key"} <= set(job._meta.fields)


def test_new_id_is_a_time_ordered_uuid7():
    ids = [flywheel.new_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:10])


def test_ids_minted_in_blocks_interleave_in_order_with_single_ones():
    """``new_ids`` (what bulk inserts use) keeps the process-wide order, even past 4,096 ids a millisecond."""
    from flywheel.ids import new_ids

    ids = [flywheel.new_id(), *new_ids(10_000), flywheel.new_id(), *new_ids(3), flywheel.new_id()]
    assert len(set(ids)) == len(ids) == 10_006
    assert ids == sorted(ids)
    assert {(uuid.UUID(i).version, uuid.UUID(i).variant) for i in ids} == {(7, uuid.RFC_4122)}
    assert new_ids(0) == []


def test_a_bulk_insert_mints_its_ids_in_item_order(db):
    """Jobs of one batch share priority and instant, so their ids decide the claim order: item order."""

    @attrs.frozen
    class Ordered:
        kind: ClassVar[str] = "ordered"
        n: int

    ids = flywheel.Client(db).insert_many([Ordered(n=n) for n in range(1_200)])
    assert ids == sorted(ids) and len(set(ids)) == 1_200
    stored = [json.loads(args)["n"] if isinstance(args, str) else args["n"]
              for args, in db.Job.select(db.Job.args).order_by(db.Job.id).tuples()]
    assert stored == list(range(1_200))


def test_flywheel_fixtures_from_the_pytest_plugin(flywheel_db, flywheel_registry, flywheel_client, flywheel_runner):
    flywheel_registry.worker("hello")(lambda job: None)
    job_id = flywheel_client.enqueue("hello", {})
    assert flywheel_runner().run_until_idle(timeout=10) == 1
    assert flywheel.find_job(flywheel_db, job_id).state == "succeeded"


def test_python_dash_m_flywheel_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "flywheel", "version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == flywheel.__version__


def test_importing_flywheel_opens_nothing():
    code = "import sys, flywheel; print(any(m.startswith('flywheel_plugins') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False"
