"""The ``python`` worker: a script, ``-m module`` or ``-c`` snippet, by default on this interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from flywheel.errors import ValidationError
from flywheel_plugins.workers.base import args_from_table, env_allowlist, ints, seconds, string_map, strings
from flywheel_plugins.workers.command import CommandWorker, existing_file, running_interpreter


@attrs.frozen(kw_only=True)
class PythonArgs:
    """Exactly one of ``script``, ``module`` or ``inline``; ``interpreter`` defaults to the running one."""

    kind: ClassVar[str] = "python"
    script: str = ""
    module: str = ""
    inline: str = ""
    args: list[str] | None = attrs.field(factory=list, converter=strings)
    interpreter: str = ""
    env: dict[str, str] | None = attrs.field(factory=dict, converter=string_map)
    dir: str = ""
    stdin: str = ""
    timeout_seconds: float = attrs.field(default=0, converter=seconds)
    permanent_exit_codes: list[int] | None = attrs.field(factory=list, converter=ints)

    def validate(self) -> None:
        if sum(1 for v in (self.script, self.module, self.inline) if v) != 1:
            raise ValidationError("script", "set exactly one of script, module or inline (python)")


class PythonWorker(CommandWorker[PythonArgs]):
    """``<interp> <script>``, ``<interp> -m <module>`` or ``<interp> -c <inline>``, then ``args…``.

    The interpreter is the job's ``interpreter``, else the worker's, else the one running
    flywheel (so scripts see the same installed packages).
    """

    kind = "python"
    args_type = PythonArgs

    def __init__(self, *, interpreter: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.interpreter = interpreter

    def argv(self, args: PythonArgs) -> list[str]:
        interp = args.interpreter or self.interpreter or running_interpreter()
        if args.script:
            head = [existing_file(args.script, args.dir, field="script")]
        elif args.module:
            head = ["-m", args.module]
        else:
            head = ["-c", args.inline]
        return [interp, *head, *(args.args or ())]


    def label(self, args: PythonArgs, argv: list[str]) -> str:
        what = args.script or (f"-m {args.module}" if args.module else "(inline)")
        return f'python "{what}"' if args.script else f"python {what}"


def from_table(table: Mapping[str, Any]) -> PythonArgs:
    """``[schedules.python]`` → :class:`PythonArgs`."""
    return args_from_table(PythonArgs, table)


def make_worker(config: Any = None) -> PythonWorker:
    """The worker the ``python`` plugin registers, with ``[runtime] env_allowlist`` from ``config``."""
    return PythonWorker(env_allowlist=env_allowlist(config))
