"""SQLite with concurrency above 1: two runner processes with 8 slots each on one file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import attrs
import pytest

import flywheel


@attrs.frozen
class Noop:
    kind: ClassVar[str] = "noop"
    n: int


@pytest.mark.slow
def test_two_processes_drain_one_file_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    db = flywheel.connect(url)
    flywheel.migrate(db)
    flywheel.Client(db).insert_many([Noop(n=i) for i in range(2000)])
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.drain_worker", url, "8"], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for _, stderr in outputs:
        assert "ERROR" not in stderr and "locked" not in stderr, stderr
    ran = [int(stdout.strip()) for stdout, _ in outputs]
    assert sum(ran) == 2000 and all(n > 0 for n in ran)  # both processes did real work

    assert flywheel.overview(db).counts_by_state == {"succeeded": 2000}
    Run = db.JobRun
    assert Run.select().count() == 2000
    assert Run.select().where(Run.outcome == "success").count() == 2000
    assert Run.select(Run.job_id).distinct().count() == 2000  # one success row for each job
