"""The driver conformance suite (flywheel.testing.DriverConformance) on both built-in drivers.

The same class a third-party driver's tests subclass; here ``make_database`` opens the
dialect-parametrised ``db_url`` of conftest.py, so every contract test runs on a fresh
SQLite file and a fresh PostgreSQL schema.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flywheel
from flywheel.testing import DriverConformance


class TestBuiltInDrivers(DriverConformance):
    @pytest.fixture(autouse=True)
    def _url(self, db_url: str) -> None:
        self.url = db_url
        self.password_url = ("postgresql://flywheel:s3cr%40t@db.example:5432/jobs" if db_url.startswith("postgres")
                             else None)

    def make_database(self) -> flywheel.Database:
        db = flywheel.connect(self.url)
        flywheel.migrate(db)
        return db


def test_importing_flywheel_testing_does_not_load_the_suite() -> None:
    probe = "import sys, flywheel.testing; print('flywheel.testing.conformance' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


DRIVERS_MD = Path(__file__).resolve().parents[1] / "docs" / "plugins" / "drivers.md"


def test_the_worked_example_of_drivers_md_passes_the_suite(tmp_path: Path) -> None:
    """docs/plugins/drivers.md: its plugin module and its test module, as files, run by pytest."""
    text = DRIVERS_MD.read_text(encoding="utf-8")
    files = dict(re.findall(r"^```python\n# (\w+\.py)\n(.*?)^```", text, re.MULTILINE | re.DOTALL))
    assert set(files) == {"flywheel_scratch.py", "test_scratch.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env.update(PYTHONPATH=str(tmp_path), TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_scratch.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b3\d passed, 2 skipped\b", done.stdout), done.stdout
