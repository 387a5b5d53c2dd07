"""The storage seam: what every driver must implement, and errors named by the driver that raised them."""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest

import flywheel
from flywheel.storage.driver import Driver
from flywheel.storage.portable import PeeweeDriver

#: Every storage operation the runtime, the API and the scheduler call.
SEAM = {
    "capabilities", "open", "close", "display_url", "atomic", "reset_connection", "is_transient", "map_error",
    "migrate", "insert_jobs", "enqueue", "notify", "wait_for_work", "interrupt_waits", "claim", "renew_leases",
    "release_leases", "unclaim", "finalize", "sweep", "singleton", "count_active", "next_due",
}


def test_every_storage_operation_is_abstract_in_the_kernel() -> None:
    assert Driver.__abstractmethods__ == SEAM


def test_a_driver_that_forgets_the_claim_cannot_be_built() -> None:
    class Forgetful(PeeweeDriver):
        """Everything but the claim."""

    with pytest.raises(TypeError, match="claim"):
        Forgetful("forgetful://")  # type: ignore[abstract]


def test_a_unique_violation_is_a_duplicate_key(db: flywheel.Database) -> None:
    now = flywheel.clock.now()
    row = {"id": "dup", "kind": "k", "created_at": now, "updated_at": now, "scheduled_at": now, "args": "{}"}
    db.Job.insert(row).execute()
    with pytest.raises(peewee.IntegrityError) as caught:
        db.Job.insert(row).execute()
    wrapped = flywheel.wrap_db_error(caught.value)
    assert isinstance(wrapped, flywheel.DuplicateKey) and wrapped.__cause__ is caught.value


def test_a_missing_table_is_schema_missing(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite:"):
        Path(tmp_path / "flywheel.db").touch()
    db = flywheel.connect(db_url)
    try:
        with pytest.raises(peewee.DatabaseError) as caught:
            db.Job.select().count()
        wrapped = flywheel.wrap_db_error(caught.value)
        assert isinstance(wrapped, flywheel.SchemaMissing) and "table jobs does not exist" in str(wrapped)
    finally:
        db.close()


def test_what_no_driver_names_is_a_database_error() -> None:
    wrapped = flywheel.wrap_db_error(peewee.IntegrityError("some constraint"))
    assert type(wrapped) is flywheel.DatabaseError and "some constraint" in str(wrapped)
