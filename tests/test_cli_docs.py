"""docs/cli.md and docs/config.md are true: every shell line runs, every TOML block loads, and every
command, flag and config key is documented."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from flywheel.cli import build_cli
from flywheel.config import env_name, load_config, setting_keys
from flywheel.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
SERVE_SECONDS = 4
BUILT_IN = make_plugin_manager(disabled=[])


def blocks(doc: str, language: str) -> list[str]:
    text = (DOCS / doc).read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def as_script(block: str) -> str:
    """A shell block as a script: each ``flywheel serve`` runs a few seconds, then gets SIGTERM."""
    lines = []
    for line in block.splitlines():
        if re.match(r"^\s*(\S+=\S+\s+)*flywheel .*\bserve\b", line):
            line = re.sub(r"\bflywheel\b", f"timeout --preserve-status -s TERM {SERVE_SECONDS} flywheel", line, count=1)
        lines.append(line)
    return "\n".join(lines) + "\n"


def run_doc(doc: str, work: Path, env: dict[str, str]) -> None:
    (work / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "quickstart_jobs.py", work / "examples")
    script = "set -euo pipefail\n" + "".join(as_script(b) for b in blocks(doc, "sh"))
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{doc}: a shell line failed\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def doc_env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    if request.param == "postgres":
        env["FLYWHEEL_DATABASE_URL"] = request.getfixturevalue("pg_schema_url")
    return env


@pytest.mark.parametrize("doc_env", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("doc", ["cli.md", "config.md"])
def test_every_shell_line_of_the_docs_runs(doc: str, doc_env: dict[str, str], tmp_path: Path) -> None:
    assert blocks(doc, "sh"), f"{doc} has no shell block"
    run_doc(doc, tmp_path / "work", doc_env)


def test_the_first_session_runs_the_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "quickstart_jobs.py", work / "examples")
    first = as_script(blocks("cli.md", "sh")[0]).replace('flywheel jobs inspect "$ID"', 'flywheel jobs inspect "$ID" --json')
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + first], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"outcome": "success"' in done.stdout and '"sent_to": "a@b"' in done.stdout


@pytest.mark.parametrize("doc", ["config.md", "cli.md", "workers.md"])
def test_every_toml_block_loads(doc: str, tmp_path: Path) -> None:
    for index, block in enumerate(blocks(doc, "toml")):
        name = "pyproject.toml" if "[tool.flywheel" in block else "flywheel.toml"
        path = tmp_path / str(index) / name
        path.parent.mkdir()
        path.write_text(block, encoding="utf-8")
        load_config(path, env={})


def commands(group: click.Group, prefix: str = "flywheel") -> list[tuple[str, click.Command]]:
    """Every command of flywheel's own plugins (``flywheel_plugins``), groups walked to their leaves."""
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found += commands(command, path)
        elif getattr(command.callback, "__module__", "").startswith("flywheel_plugins."):
            found.append((path, command))
    return found


def test_the_command_walk_finds_the_built_ins() -> None:
    paths = {path for path, _ in commands(build_cli(BUILT_IN))}
    assert {"flywheel serve", "flywheel jobs ls", "flywheel schedule add", "flywheel status"} <= paths


def sections(doc: str) -> dict[str, str]:
    """Heading → the text up to the next heading."""
    parts = re.split(r"^(#{1,4} .*)$", (DOCS / doc).read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def long_flags(command: click.Command) -> list[str]:
    return [o for p in command.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts
            if o.startswith("--") and o != "--help"]



@pytest.mark.parametrize(("path", "command"), commands(build_cli(BUILT_IN)), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_and_flag_is_in_cli_md(path: str, command: click.Command) -> None:
    name = path.split()[-1]
    mine = [(h, body) for h, body in sections("cli.md").items()
            if f"`{path} " in h or f"`{path}`" in h or (f"`{name} " in h and path.rsplit(" ", 1)[0] in h)
            or f", `{name}" in h]
    assert mine, f"docs/cli.md has no heading for `{path}`"
    text = "".join(h + body for h, body in mine)
    for flag in long_flags(command):
        assert f"`{flag}" in text, f"docs/cli.md does not document {path} {flag}"


def test_every_global_option_is_in_cli_md() -> None:
    text = sections("cli.md")["## Global options"]
    for flag in long_flags(build_cli(BUILT_IN)):
        assert f"`{flag}" in text, flag


def test_every_config_key_and_variable_is_in_config_md() -> None:
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    for key in setting_keys():
        assert f"`{key}`" in text, key
        assert f"`{env_name(key)}`" in text, env_name(key)
    for key in ("slug", "cron", "every", "timezone", "queue", "active", "kind", "worker", "args"):
        assert f"| `{key}` |" in text, key


def test_the_docs_index_links_every_doc_file() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = {(DOCS / target.split("#")[0]).resolve() for target in re.findall(r"\]\(([^)#][^)]*)\)", index)}
    unlinked = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*")
                      if path.is_file() and path.suffix in (".md", ".json") and path.name != "index.md"
                      and path.resolve() not in linked)  # images are linked from the page they illustrate
    assert unlinked == [], f"docs/index.md does not link {unlinked}"


def test_every_relative_link_of_the_readme_and_docs_resolves() -> None:
    broken = []
    for doc in [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "examples").rglob("*.md")]:
        for target in re.findall(r"\]\(([^)]+)\)", doc.read_text(encoding="utf-8")):
            path = target.split("#")[0]
            if path and "://" not in path and not path.startswith("mailto:") and not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []
