"""The ``shell`` worker: a script file or an inline snippet, run by ``sh`` (or ``shell``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from flywheel.errors import ValidationError
from flywheel_plugins.workers.base import args_from_table, env_allowlist, ints, seconds, string_map, strings
from flywheel_plugins.workers.command import CommandWorker, existing_file


@attrs.frozen(kw_only=True)
class ShellArgs:
    """Exactly one of ``script`` (a file, no exec bit needed) or ``inline``; ``args`` are ``$1…``."""

    kind: ClassVar[str] = "shell"
    script: str = ""
    inline: str = ""
    args: list[str] | None = attrs.field(factory=list, converter=strings)
    shell: str = "sh"
    env: dict[str, str] | None = attrs.field(factory=dict, converter=string_map)
    dir: str = ""
    stdin: str = ""
    timeout_seconds: float = attrs.field(default=0, converter=seconds)
    permanent_exit_codes: list[int] | None = attrs.field(factory=list, converter=ints)

    def validate(self) -> None:
        if self.script and self.inline:
            raise ValidationError("script", "and inline are both set; set exactly one (shell)")
        if not self.script and not self.inline:
            raise ValidationError("script", "or inline is required (shell)")


class ShellWorker(CommandWorker[ShellArgs]):
    """``<shell> <script> args…`` or ``<shell> -c <inline> <shell> args…`` (``$0`` is the shell)."""

    kind = "shell"
    args_type = ShellArgs

    def argv(self, args: ShellArgs) -> list[str]:
        shell = args.shell or "sh"
        if args.script:
            return [shell, existing_file(args.script, args.dir, field="script"), *(args.args or ())]
        return [shell, "-c", args.inline, *([shell, *args.args] if args.args else [])]


    def label(self, args: ShellArgs, argv: list[str]) -> str:
        return f'shell "{args.script}"' if args.script else "shell (inline)"


def from_table(table: Mapping[str, Any]) -> ShellArgs:
    """``[schedules.shell]`` → :class:`ShellArgs`."""
    return args_from_table(ShellArgs, table)


def make_worker(config: Any = None) -> ShellWorker:
    """The worker the ``shell`` plugin registers, with ``[runtime] env_allowlist`` from ``config``."""
    return ShellWorker(env_allowlist=env_allowlist(config))
