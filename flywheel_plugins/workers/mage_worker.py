"""The ``mage`` worker: run build targets with a mage binary (default ``magex``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from flywheel.errors import ValidationError
from flywheel_plugins.workers.base import args_from_table, env_allowlist, ints, seconds, string_map, strings
from flywheel_plugins.workers.command import CommandWorker


@attrs.frozen(kw_only=True)
class MageArgs:
    """``<binary> <targets…>`` in ``dir``; at least one target."""

    kind: ClassVar[str] = "mage"
    targets: list[str] | None = attrs.field(factory=list, converter=strings)
    binary: str = ""
    dir: str = ""
    env: dict[str, str] | None = attrs.field(factory=dict, converter=string_map)
    timeout_seconds: float = attrs.field(default=0, converter=seconds)
    permanent_exit_codes: list[int] | None = attrs.field(factory=list, converter=ints)

    def validate(self) -> None:
        if not self.targets:
            raise ValidationError("targets", "needs at least one target (mage)")


class MageWorker(CommandWorker[MageArgs]):
    """The binary is the worker's ``binary`` (operator's choice wins), else the job's, else ``magex``."""

    kind = "mage"
    args_type = MageArgs

    def __init__(self, *, binary: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.binary = binary

    def argv(self, args: MageArgs) -> list[str]:
        return [self.binary or args.binary or "magex", *(args.targets or ())]


def from_table(table: Mapping[str, Any]) -> MageArgs:
    """``[schedules.mage]`` → :class:`MageArgs`."""
    return args_from_table(MageArgs, table)


def make_worker(config: Any = None) -> MageWorker:
    """The worker the ``mage`` plugin registers, with ``[runtime] env_allowlist`` from ``config``."""
    return MageWorker(env_allowlist=env_allowlist(config))
