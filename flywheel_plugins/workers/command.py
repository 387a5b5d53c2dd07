"""The base of the command workers (exec, shell, python, mage): validate, run, classify.

A subclass says how its args become an argv (``argv``); everything else is here, so the
four workers treat timeouts, exit codes, missing files and output the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from flywheel.enums import ErrorClass
from flywheel.errors import ValidationError
from flywheel.jobs import Job, Result
from flywheel_plugins.workers import process
from flywheel_plugins.workers.base import DEFAULT_ENV_ALLOWLIST, WorkerFailure, classify, time_left, timeout_delta


class CommandArgs(Protocol):
    """The fields every command worker's args share (read-only: the args classes are frozen)."""

    @property
    def env(self) -> Mapping[str, str] | None: ...
    @property
    def dir(self) -> str: ...
    @property
    def timeout_seconds(self) -> float: ...

    def validate(self) -> None: ...


A = TypeVar("A", bound=CommandArgs)


class CommandWorker(Generic[A]):
    """Runs a job's command in its own process group and records what it printed.

    :param env_allowlist: host variables the command may see (plus the job's ``env``).
    :param max_output_bytes: how much of each of stdout and stderr is kept.
    :param permanent_exit_codes: exit codes that mean "retrying will not help"
        (added to the job's own ``permanent_exit_codes``).
    :param kill_grace: seconds between SIGTERM and SIGKILL when the command is stopped.
    """

    kind: ClassVar[str]
    args_type: ClassVar[type[Any]]

    def __init__(self, *, env_allowlist: Sequence[str] | None = None,
                 max_output_bytes: int = process.DEFAULT_MAX_OUTPUT_BYTES,
                 permanent_exit_codes: Iterable[int] = (), kill_grace: float = process.DEFAULT_KILL_GRACE) -> None:
        self.env_allowlist = DEFAULT_ENV_ALLOWLIST if env_allowlist is None else tuple(env_allowlist)
        self.max_output_bytes = max_output_bytes
        self.permanent_exit_codes = frozenset(permanent_exit_codes)
        self.kill_grace = kill_grace

    def argv(self, args: A) -> list[str]:
        """The command line for ``args`` (already validated)."""
        raise NotImplementedError

    def label(self, args: A, argv: list[str]) -> str:
        """How error messages name the command."""
        return f'{self.kind} "{argv[0]}"'

    def stdin(self, args: A) -> str:
        return str(getattr(args, "stdin", "") or "")

    def work(self, job: Job[A]) -> Result:
        args = job.args
        args.validate()
        argv = self.argv(args)
        command = process.Command(
            argv=argv, env=process.build_env(self.env_allowlist, args.env),
            dir=args.dir or None, stdin=self.stdin(args).encode() or None,
            timeout=time_left(job, args.timeout_seconds),
        )
        name = self.label(args, argv)
        try:
            done = process.run(command, stop=job.cancelled, max_output_bytes=self.max_output_bytes,
                               kill_grace=self.kill_grace)
        except process.StartFailed as exc:
            raise _start_failure(name, exc) from exc.__cause__
        output = done.output()
        if done.timed_out:
            raise WorkerFailure(f"{name} timed out after {done.duration_ms / 1000:.1f}s",
                                error_class=ErrorClass.TIMEOUT, output=output)
        if done.stopped:
            raise WorkerFailure(f"{name} was stopped: the attempt was cancelled or ran past its deadline",
                                output=output)
        if done.exit_code != 0:
            codes = self.permanent_exit_codes | set(getattr(args, "permanent_exit_codes", ()))
            error_class = ErrorClass.PERMANENT if done.exit_code in codes else ErrorClass.TRANSIENT
            how = f"was killed by signal {done.signal}" if done.signal else f"exited with code {done.exit_code}"
            raise WorkerFailure(f"{name} {how}{_last_line(done.stderr)}", error_class=error_class, output=output)
        return Result(output=output)

    def classify(self, exc: BaseException) -> ErrorClass | None:
        return classify(exc)

    def timeout(self, job: Job[A]) -> timedelta | None:
        return timeout_delta(getattr(job.args, "timeout_seconds", 0))


def existing_file(path: str, dir: str, *, field: str) -> str:
    """``path`` if it names a file (relative to ``dir`` when given), else a ValidationError."""
    full = os.path.join(dir, path) if dir else path
    if not os.path.isfile(full):
        where = f" (in {dir})" if dir and not os.path.isabs(path) else ""
        raise ValidationError(field, f"{path!r} is not a file{where}")
    return path


def running_interpreter() -> str:
    return sys.executable or "python3"


def _start_failure(name: str, exc: process.StartFailed) -> WorkerFailure:
    missing = isinstance(exc.__cause__, (FileNotFoundError, PermissionError, NotADirectoryError))
    return WorkerFailure(f"{name} failed to start: {exc}",
                         error_class=ErrorClass.VALIDATION if missing else ErrorClass.TRANSIENT,
                         output={"exit_code": 0, "stdout": "", "stderr": "", "duration_ms": 0, "truncated": False})


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return f": {lines[-1][:200]}" if lines else ""
