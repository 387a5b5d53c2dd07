"""What a :class:`~flywheel.runtime.node.Node` is made of: ``RunnerConfig``, ``SchedulerConfig``, ``HealthConfig``.

``RunnerConfig`` and ``SchedulerConfig`` take exactly the keyword arguments of
:class:`~flywheel.runtime.runner.Runner` and :class:`~flywheel.scheduling.scheduler.Scheduler` (minus ``db``
and ``registry``), with the same defaults; durations are normalised to ``timedelta`` (a
number is seconds). A ``RunnerConfig`` rejects impossible timings at once (a heartbeat
no shorter than the lease, a poll interval that is not positive); validation beyond that
happens when the node builds its components.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs

from flywheel.durations import to_timedelta
from flywheel.runtime.defaults import DEFAULT_CONCURRENCY, DEFAULT_PREFETCH
from flywheel.runtime.runner import MAX_POLL_BACKOFF, Runner, check_timing
from flywheel.scheduling.scheduler import DEFAULT_BACKFILL_CAP, Scheduler

if TYPE_CHECKING:
    import pluggy

    from flywheel.registry import Registry
    from flywheel.storage.db import Database


# One named converter per duration field: mypy types ``__init__`` from a converter it can see
# (a function, not what a factory returns), and each names its field in a ValidationError.
def _lease(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="lease")


def _poll_interval(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="poll_interval")


def _retry_backoff_base(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="retry_backoff_base")


def _max_retry_backoff(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="max_retry_backoff")


def _default_timeout(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="default_timeout")


def _heartbeat_interval(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="heartbeat_interval")


def _max_poll_backoff(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="max_poll_backoff")


def _tick_interval(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="tick_interval")


def _sweep_interval(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="sweep_interval")


def _retention(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="retention")


def _retention_interval(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="retention_interval")


def _health_sample_interval(value: timedelta | float | None) -> timedelta | None:
    return to_timedelta(value, field="health_sample_interval")


def _queues(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen(kw_only=True)
class RunnerConfig:
    """The settings of one :class:`~flywheel.runtime.runner.Runner` in a node."""

    queues: tuple[str, ...] = attrs.field(default=("default",), converter=_queues)
    concurrency: int = DEFAULT_CONCURRENCY
    prefetch: int = DEFAULT_PREFETCH
    executor_class: str = ""
    claim_any_class: bool = False
    lease: timedelta = attrs.field(default=timedelta(seconds=30), converter=_lease)
    poll_interval: timedelta = attrs.field(default=timedelta(milliseconds=250), converter=_poll_interval)
    retry_backoff_base: timedelta = attrs.field(default=timedelta(seconds=1),
                                                converter=_retry_backoff_base)
    max_retry_backoff: timedelta = attrs.field(default=timedelta(hours=1), converter=_max_retry_backoff)
    default_timeout: timedelta | None = attrs.field(default=None, converter=_default_timeout)
    heartbeat_interval: timedelta | None = attrs.field(default=None, converter=_heartbeat_interval)
    max_poll_backoff: timedelta = attrs.field(default=MAX_POLL_BACKOFF, converter=_max_poll_backoff)
    logger: logging.Logger | None = None
    pm: pluggy.PluginManager | None = None

    def __attrs_post_init__(self) -> None:
        if self.lease is not None and self.poll_interval is not None:
            check_timing(self.lease, self.poll_interval, self.heartbeat_interval)

    def build(self, db: Database, registry: Registry, *, pm: pluggy.PluginManager | None = None) -> Runner:
        """A runner with these settings (``pm`` fills in an unset ``pm``)."""
        options = attrs.asdict(self, recurse=False)
        options["pm"] = self.pm or pm
        return Runner(db, registry, **options)


@attrs.frozen(kw_only=True)
class SchedulerConfig:
    """The settings of a node's :class:`~flywheel.scheduling.scheduler.Scheduler`."""

    tick_interval: timedelta = attrs.field(default=timedelta(seconds=1), converter=_tick_interval)
    sweep_interval: timedelta = attrs.field(default=timedelta(seconds=30), converter=_sweep_interval)
    backfill_cap: int = DEFAULT_BACKFILL_CAP
    retention: timedelta | None = attrs.field(default=None, converter=_retention)
    retention_interval: timedelta = attrs.field(default=timedelta(hours=1), converter=_retention_interval)
    health_sample_interval: timedelta | None = attrs.field(default=None,
                                                           converter=_health_sample_interval)
    logger: logging.Logger | None = None
    pm: pluggy.PluginManager | None = None

    def build(self, db: Database, *, pm: pluggy.PluginManager | None = None) -> Scheduler:
        """A scheduler with these settings (``pm`` fills in an unset ``pm``)."""
        options = attrs.asdict(self, recurse=False)
        options["pm"] = self.pm or pm
        return Scheduler(db, **options)


@attrs.frozen(kw_only=True)
class HealthConfig:
    """Where a health service listens (``"host:port"``); None serves nothing.

    The node only carries it: a service plugin (``flywheel_services``) reads ``node.health``.
    """

    addr: str | None = None


__all__ = ["HealthConfig", "RunnerConfig", "SchedulerConfig"]
