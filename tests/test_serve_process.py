"""``flywheel serve`` as an operator runs it: a real process, its health server and its log on stderr.

``[runtime] metrics_addr`` must start the health server (``/healthz``, ``/readyz``,
``/metrics``) and ``[log]`` must reach the ``logging`` plugin's events, on both dialects.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import flywheel
from tests.helpers import wait_for

prometheus_parser = pytest.importorskip("prometheus_client.parser")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class _Lines:
    """Reads a process's stderr on a thread: every line kept, JSON ones parsed."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self.seen: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            self.seen.append(record)

    def find(self, **fields: Any) -> dict[str, Any] | None:
        return next((r for r in list(self.seen) if all(r.get(k) == v for k, v in fields.items())), None)

    def join(self) -> None:
        self._thread.join(10)


def test_serve_with_metrics_addr_serves_health_and_metrics_and_logs_json(db: flywheel.Database, db_url: str,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "flywheel.toml").write_text(
        '[runtime]\nmetrics_addr = "127.0.0.1:0"\npoll_interval = "50ms"\n\n'  # port 0: a free one, logged
        '[log]\nlevel = "info"\nformat = "json"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env["FLYWHEEL_DATABASE_URL"] = db_url
    failing = flywheel.Client(db).enqueue("shell", {"inline": "exit 3"}, max_attempts=1)
    serve = subprocess.Popen([sys.executable, "-m", "flywheel", "serve"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = _Lines(serve.stderr)
    try:
        wait_for(lambda: serve.poll() is not None or stderr.find(action="health_listening") is not None,
                 timeout=60, what="the health server's 'listening' line")
        assert serve.poll() is None, "".join(stderr.lines)
        base = stderr.find(action="health_listening")["url"]  # type: ignore[index]
        assert base.startswith("http://127.0.0.1:") and not base.endswith(":0")

        assert _get(f"{base}/healthz") == (200, "ok\n")
        wait_for(lambda: _get(f"{base}/readyz")[0] == 200, timeout=30, what="/readyz 200")
        wait_for(lambda: flywheel.find_job(db, failing).state == "discarded", timeout=60, what="the job discarded")

        status, body = _get(f"{base}/metrics")
        assert status == 200
        families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(body)}
        finished = [s for s in families["flywheel_jobs_finished"].samples
                    if s.name == "flywheel_jobs_finished_total" and s.labels.get("kind") == "shell"]
        assert finished and finished[0].value == 1 and finished[0].labels["outcome"] == "error"
        assert families["flywheel_queue_health_up"].samples[0].value == 1
        # [log] format = "json" reached the logging plugin: its event is one JSON object
        wait_for(lambda: stderr.find(action="job_finished", job_id=failing) is not None, timeout=30,
                 what="the logging plugin's job_finished record")
        event = stderr.find(action="job_finished", job_id=failing)
        assert event is not None and event["logger"] == "flywheel.events" and event["level"] == "warning"
        assert event["state"] == "discarded" and event["kind"] == "shell"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        stderr.join()
    assert serve.returncode == 0, "".join(stderr.lines)
    assert all(line.lstrip().startswith("{") for line in stderr.lines if line.strip()), "".join(stderr.lines)
