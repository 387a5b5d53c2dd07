"""The ``exec`` worker: run a program with arguments, directly (never through a shell)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from flywheel.errors import ValidationError
from flywheel_plugins.workers.base import args_from_table, env_allowlist, ints, seconds, string_map, strings
from flywheel_plugins.workers.command import CommandWorker


@attrs.frozen(kw_only=True)
class ExecArgs:
    """``command args…`` with exactly the allowlisted environment plus ``env``."""

    kind: ClassVar[str] = "exec"
    command: str = ""
    args: list[str] | None = attrs.field(factory=list, converter=strings)
    env: dict[str, str] | None = attrs.field(factory=dict, converter=string_map)
    dir: str = ""
    stdin: str = ""
    timeout_seconds: float = attrs.field(default=0, converter=seconds)
    permanent_exit_codes: list[int] | None = attrs.field(factory=list, converter=ints)

    def validate(self) -> None:
        if not self.command.strip():
            raise ValidationError("command", "is required (exec: the program to run)")


class ExecWorker(CommandWorker[ExecArgs]):
    """Runs ``command`` with ``args`` as separate arguments: no shell parses them."""

    kind = "exec"
    args_type = ExecArgs

    def argv(self, args: ExecArgs) -> list[str]:
        return [args.command, *(args.args or ())]


def from_table(table: Mapping[str, Any]) -> ExecArgs:
    """``[schedules.exec]`` → :class:`ExecArgs`."""
    return args_from_table(ExecArgs, table)


def make_worker(config: Any = None) -> ExecWorker:
    """The worker the ``exec`` plugin registers, with ``[runtime] env_allowlist`` from ``config``."""
    return ExecWorker(env_allowlist=env_allowlist(config))
