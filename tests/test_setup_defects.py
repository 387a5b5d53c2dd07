"""Setting up (issue 7, defect 10): the declared peewee minimum, and a database nobody migrated."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import peewee
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import flywheel

ROOT = Path(__file__).resolve().parent.parent

# What the code needs from peewee, and the first release that has it. Checked by hand against
# the released sources: 4.4.0 cannot open a SQLite connection (TypeError on lock_type), and
# 4.5.0 and 4.5.1 leak psycopg2's QueryCanceled (a statement timeout) unwrapped, so it is
# neither a flywheel DatabaseError nor retried as transient.
PEEWEE_FEATURES = {
    "SqliteDatabase(lock_type=...)": ("4.5.0", lambda: "lock_type" in inspect.signature(
        peewee.SqliteDatabase.__init__).parameters),
    "QueryCanceledError maps to OperationalError": ("4.5.2", lambda: getattr(
        peewee, "EXCEPTIONS", {}).get("QueryCanceledError") is peewee.OperationalError),
}


def declared_minimum(package: str) -> Version:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for line in dependencies:
        requirement = Requirement(line)
        if requirement.name == package:
            floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
            assert floors, f"{line!r} declares no minimum"
            return max(floors)
    raise AssertionError(f"{package} is not a declared dependency")


def test_defect_10_the_declared_peewee_minimum_is_what_the_code_needs() -> None:
    minimum = declared_minimum("peewee")
    needed = max(Version(version) for version, _ in PEEWEE_FEATURES.values())
    assert minimum == needed, f"pyproject declares peewee>={minimum}, the code needs peewee>={needed}"
    for feature, (_, present) in PEEWEE_FEATURES.items():
        assert present(), f"the installed peewee {peewee.__version__} lacks {feature}"
    assert Version(peewee.__version__) >= minimum


# -- a database nobody migrated -----------------------------------------------------------------


def test_defect_10_a_migrate_less_database_says_run_flywheel_migrate(db_url: str) -> None:
    db = flywheel.connect(db_url)
    client = flywheel.Client(db)
    try:
        for attempt in (lambda: client.enqueue("k", {}), lambda: flywheel.list_jobs(db),
                        lambda: flywheel.find_job(db, flywheel.new_id()), lambda: flywheel.count_runs(db)):
            with pytest.raises(flywheel.SchemaMissing, match="run `flywheel migrate`") as caught:
                attempt()
            assert isinstance(caught.value, flywheel.DatabaseError)
            assert "\n" not in str(caught.value)
        flywheel.migrate(db)
        job_id = client.enqueue("k", {})
        assert flywheel.find_job(db, job_id).state == "available"
    finally:
        db.close()


def test_defect_10_enqueue_never_creates_a_missing_sqlite_file_but_migrate_does(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    db = flywheel.connect(f"sqlite:///{path}")
    with pytest.raises(flywheel.SchemaMissing, match=r"typo\.db does not exist.*run `flywheel migrate`"):
        flywheel.Client(db).enqueue("k", {})
    assert list(tmp_path.iterdir()) == []  # no stray empty database (nor -wal / -shm files)
    flywheel.migrate(db)
    assert path.exists()
    flywheel.Client(db).enqueue("k", {})
    assert flywheel.count_active_jobs(db) == 1
    db.close()


def test_defect_10_an_existing_file_without_tables_says_run_flywheel_migrate(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    path.touch()  # e.g. a host application's own database, where flywheel's tables were never created
    db = flywheel.connect(f"sqlite:///{path}")
    with pytest.raises(flywheel.SchemaMissing, match="table jobs does not exist.*run `flywheel migrate`"):
        flywheel.Client(db).enqueue("k", {})
    db.close()


def test_defect_10_the_cli_says_run_flywheel_migrate_in_one_line_and_creates_no_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # the tree under test
    done = subprocess.run([sys.executable, "-m", "flywheel", "--db", "sqlite:///missing.db", "enqueue", "k", "{}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "run `flywheel migrate`" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "missing.db").exists()
