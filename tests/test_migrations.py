"""``migrate`` brings a database created by an older flywheel up to date, keeping its jobs."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flywheel
from flywheel.storage.driver import ClaimRequest
from flywheel.storage.migrations import table_columns

#: ``jobs`` as flywheel created it while it carried the never-written soft-delete column
#: ``deleted_at``: the table, and the indexes whose predicates named it. ``{json}`` is the
#: dialect's JSON column type.
OLD_JOBS_DDL = (
    'CREATE TABLE "jobs" ("id" TEXT NOT NULL PRIMARY KEY, "created_at" TIMESTAMPTZ NOT NULL,'
    ' "updated_at" TIMESTAMPTZ NOT NULL, "metadata" {json} NOT NULL, "kind" TEXT NOT NULL, "queue" TEXT NOT NULL,'
    ' "args" {json} NOT NULL, "priority" BIGINT NOT NULL, "state" TEXT NOT NULL, "attempt" BIGINT NOT NULL,'
    ' "max_attempts" BIGINT NOT NULL, "timeout_ms" BIGINT, "scheduled_at" TIMESTAMPTZ NOT NULL,'
    ' "leased_until" TIMESTAMPTZ, "lease_token" TEXT, "unique_key" TEXT, "unique_active_key" TEXT,'
    ' "parent_job_id" TEXT, "executor_class" TEXT NOT NULL, "finalized_at" TIMESTAMPTZ, "tags" {json} NOT NULL,'
    ' "deleted_at" TIMESTAMPTZ)',
    "CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL",
    "CREATE INDEX jobs_ready ON jobs (queue, priority, scheduled_at, id)"
    " WHERE state IN ('available', 'retryable', 'scheduled') AND deleted_at IS NULL",
    "CREATE INDEX jobs_parent_state ON jobs (parent_job_id, state) WHERE parent_job_id IS NOT NULL"
    " AND deleted_at IS NULL",
    "CREATE INDEX jobs_state ON jobs (state, kind) WHERE deleted_at IS NULL",
    "CREATE INDEX idx_jobs_deleted_at ON jobs (deleted_at) WHERE deleted_at IS NOT NULL",
)
OLD_JOB = (
    "INSERT INTO jobs (id, created_at, updated_at, metadata, kind, queue, args, priority, state, attempt,"
    " max_attempts, scheduled_at, executor_class, tags, deleted_at) VALUES ('old-1',"
    " '2024-01-01 00:00:00.000000+00:00', '2024-01-01 00:00:00.000000+00:00', '{\"team\":\"a\"}', 'legacy',"
    " 'default', '{\"n\":7}', 100, 'available', 0, 25, '2024-01-01 00:00:00.000000+00:00', '', '[\"x\"]', NULL)"
)


def index_definitions(db: flywheel.Database) -> dict[str, str]:
    """Each index on ``jobs`` and its definition, as the database reports it."""
    if db.dialect == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL"
    else:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs' AND schemaname = current_schema()"
    return dict(db.pw.execute_sql(query).fetchall())


def old_database(db_url: str, tmp_path: Path) -> flywheel.Database:
    if db_url.startswith("sqlite:"):
        sqlite3.connect(tmp_path / "flywheel.db").close()  # flywheel connects only to a file that exists
    db = flywheel.connect(db_url)
    json_type = "TEXT" if db.dialect == "sqlite" else "JSONB"
    with db.atomic():
        for statement in OLD_JOBS_DDL:
            db.pw.execute_sql(statement.format(json=json_type))
        db.pw.execute_sql(OLD_JOB)
    return db


def test_migrate_drops_the_retired_deleted_at_column_and_keeps_the_jobs(db_url: str, tmp_path: Path) -> None:
    db = old_database(db_url, tmp_path)
    try:
        assert "deleted_at" in table_columns(db, "jobs")
        flywheel.migrate(db)
        flywheel.migrate(db)  # idempotent on the upgraded database

        assert "deleted_at" not in table_columns(db, "jobs")
        indexes = index_definitions(db)
        assert "idx_jobs_deleted_at" not in indexes
        assert {"jobs_ready", "jobs_parent_state", "jobs_state", "jobs_running_leased"} <= set(indexes)
        assert not any("deleted_at" in definition for definition in indexes.values())

        job = flywheel.find_job(db, "old-1")
        assert (job.kind, job.state, job.args, job.tags) == ("legacy", "available", {"n": 7}, ["x"])
        now = datetime.now(UTC)
        claimed = db.driver.claim(db, ClaimRequest(
            queues=("default",), executor_class="", claim_any_class=True, limit=5, now=now,
            lease_until=now + timedelta(minutes=1), lease_token="t", executor_id="test", run_ids=("run-1",)))
        assert [(c.id, c.attempt, json.loads(c.args), c.run_id) for c in claimed] == [("old-1", 1, {"n": 7}, "run-1")]
    finally:
        db.close()
