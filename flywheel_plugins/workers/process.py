"""Running one command for a job: its own process group, bounded capture, a hard deadline.

Why each piece is shaped this way:

* The child starts in a new session (``start_new_session``), so it leads a process group
  of its own; a timeout (or a cancelled job) signals the whole group, and a shell
  script's children die with it. When the command exits, whatever it left running in
  its group is stopped too: a job's processes do not outlive its attempt.
* stdout and stderr are read by one thread each, all the time, whatever the limit: a
  child writing more than a pipe buffer must never block on a full pipe. Only the first
  and last halves of ``max_output_bytes`` are kept; the byte count is always exact.
* The environment is exactly what the caller passes (``env=``), never the daemon's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024
DEFAULT_KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
_READ_CHUNK = 64 * 1024
_POLL = 0.05


class StartFailed(Exception):
    """The command could not be started (``__cause__`` is the OSError)."""


def _argv(args: Iterable[str]) -> tuple[str, ...]:
    return tuple(args)


@attrs.frozen(kw_only=True)
class Command:
    """What to run: ``argv`` directly (never through a shell), in ``dir``, with exactly ``env``."""

    argv: tuple[str, ...] = attrs.field(converter=_argv)
    env: Mapping[str, str]
    dir: str | None = None
    stdin: bytes | None = None
    timeout: float | None = None  # seconds from the start; None or <= 0: no limit of its own


class Capture:
    """A stream's first and last bytes within ``limit``, and how many there were in all."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._head = bytearray()
        self._tail = bytearray()
        self._head_limit = self.limit - self.limit // 2
        self._tail_limit = self.limit // 2
        self.total = 0
        self._lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self.total += len(chunk)
            room = self._head_limit - len(self._head)
            if room > 0:
                self._head += chunk[:room]
                chunk = chunk[room:]
            if chunk and self._tail_limit:
                self._tail += chunk[-self._tail_limit:]
                if len(self._tail) > self._tail_limit:
                    del self._tail[: len(self._tail) - self._tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        """The kept bytes as text; a marker where bytes were dropped names the counts."""
        with self._lock:
            head = bytes(self._head).decode("utf-8", errors="replace")
            if not self.truncated:
                return head + bytes(self._tail).decode("utf-8", errors="replace")
            omitted = self.total - len(self._head) - len(self._tail)
            marker = f"\n[flywheel: output truncated: {omitted} of {self.total} bytes omitted]\n"
            return head + marker + bytes(self._tail).decode("utf-8", errors="replace")


@attrs.frozen(kw_only=True)
class Completed:
    """How a command ended. ``exit_code`` is -1 when a signal ended it (``signal`` says which)."""

    exit_code: int
    signal: int | None
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    truncated: bool
    duration_ms: int
    timed_out: bool
    stopped: bool  # the caller's stop event was set (job cancelled, or its lease timed out)

    def output(self) -> dict[str, Any]:
        """The run row's output: go-flywheel's ExecOutput fields plus truncation details."""
        return {
            "exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
            "duration_ms": self.duration_ms, "truncated": self.truncated,
            "stdout_bytes": self.stdout_bytes, "stderr_bytes": self.stderr_bytes, "signal": self.signal,
        }


def run(command: Command, *, stop: threading.Event | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, kill_grace: float = DEFAULT_KILL_GRACE) -> Completed:
    """Run ``command`` to its end, its deadline, or until ``stop`` is set; never raises for its exit.

    Raises :class:`StartFailed` when the process cannot be started.
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(command.argv), env=dict(command.env), cwd=command.dir or None,
            stdin=subprocess.PIPE if command.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )
    except OSError as exc:
        raise StartFailed(str(exc)) from exc
    captures = (Capture(max_output_bytes), Capture(max_output_bytes))
    threads = [_reader(proc.stdout, captures[0]), _reader(proc.stderr, captures[1])]
    if command.stdin:
        threads.append(_writer(proc.stdin, command.stdin))
    timed_out, stopped = _wait(proc, started, command.timeout, stop)
    if timed_out or stopped:
        _stop_group(proc, kill_grace)
    proc.wait()
    _stop_group(proc, kill_grace)  # what the command left behind in its group
    for thread in threads:
        thread.join(timeout=kill_grace + 1.0)  # a process that left the group may hold a pipe
    code = proc.returncode
    return Completed(
        exit_code=code if code >= 0 else -1, signal=-code if code < 0 else None,
        stdout=captures[0].text(), stderr=captures[1].text(),
        stdout_bytes=captures[0].total, stderr_bytes=captures[1].total,
        truncated=captures[0].truncated or captures[1].truncated,
        duration_ms=int((time.monotonic() - started) * 1000), timed_out=timed_out, stopped=stopped,
    )


def build_env(allowlist: Sequence[str], job_env: Mapping[str, str] | None,
              host: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted host variables that are set, overlaid with the job's own ``env``."""
    source = os.environ if host is None else host
    env = {name: source[name] for name in allowlist if name in source}
    env.update(job_env or {})
    return env


def _wait(proc: subprocess.Popen[bytes], started: float, timeout: float | None,
          stop: threading.Event | None) -> tuple[bool, bool]:
    """Wait for the exit; returns (timed_out, stopped) when it had to give up first."""
    deadline = started + timeout if timeout and timeout > 0 else None
    while True:
        step = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
        try:
            proc.wait(timeout=step)
            return False, False
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            return True, False
        if stop is not None and stop.is_set():
            return False, True


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left after ``grace``."""
    if not _signal_group(proc.pid, signal.SIGTERM):
        return
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if proc.returncode is None:
            try:
                proc.wait(timeout=_POLL)
            except subprocess.TimeoutExpired:
                continue
        if not _group_alive(proc.pid):
            return
        time.sleep(_POLL)
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies waiting for a reaper don't count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc (macOS): trust killpg's answer
        return True
    return any(entry.isdigit() and _stat_field(int(entry), 5) == str(pgid) and _is_running(int(entry))
               for entry in entries)


def _is_running(pid: int) -> bool:
    state = _stat_field(pid, 3)
    return state is not None and state not in ("Z", "X")


def _stat_field(pid: int, index: int) -> str | None:
    """Field ``index`` (1-based, as in proc(5)) of /proc/PID/stat, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return rest[index - 3] if len(rest) > index - 3 >= 0 else None


def _reader(stream: Any, capture: Capture) -> threading.Thread:
    def drain() -> None:
        fd = stream.fileno()
        try:
            while chunk := os.read(fd, _READ_CHUNK):
                capture.feed(chunk)
        except OSError:
            pass
        finally:
            stream.close()

    thread = threading.Thread(target=drain, name="flywheel-capture", daemon=True)
    thread.start()
    return thread


def _writer(stream: Any, data: bytes) -> threading.Thread:
    def feed() -> None:
        try:
            stream.write(data)
        except OSError:  # the command exited or closed stdin without reading it all
            pass
        finally:
            with contextlib.suppress(OSError):
                stream.close()

    thread = threading.Thread(target=feed, name="flywheel-stdin", daemon=True)
    thread.start()
    return thread
