"""The peers' own virtualenv, ``bench/.peers-venv``: created and filled with pip on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.env import REPO

VENV = REPO / "bench" / ".peers-venv"
#: What the comparison runs against (issue 13): pgqueuer 1.6 with its asyncpg driver, huey 3.5.
REQUIREMENTS = ("pgqueuer[asyncpg]==1.6.*", "huey==3.5.*")
_VERSIONS = {"pgqueuer": "1.6.", "huey": "3.5.", "asyncpg": ""}


def python() -> Path:
    return VENV / "bin" / "python"


def installed() -> dict[str, str]:
    """``{distribution: version}`` of the peers in the virtualenv (empty if it does not exist)."""
    if not python().exists():
        return {}
    code = ("import importlib.metadata as m, json\n"
            "out = {}\n"
            f"for name in {sorted(_VERSIONS)!r}:\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    proc = subprocess.run([str(python()), "-c", code], capture_output=True, text=True, check=False)
    import json

    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}


def ensure() -> dict[str, str]:
    """Create the virtualenv and install the peers unless the right versions are there; their versions."""
    versions = installed()
    if all(versions.get(name, "").startswith(prefix) and name in versions for name, prefix in _VERSIONS.items()):
        return versions
    if not python().exists():
        print(f"bench: creating {VENV} for the peers", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f"bench: installing {' '.join(REQUIREMENTS)} into {VENV}", file=sys.stderr)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return installed()
