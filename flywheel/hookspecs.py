"""Hook specifications for flywheel plugins.

The kernel calls every hook with keyword arguments. An implementation may accept any
subset of a hook's arguments, so a hook can gain arguments later without breaking
existing plugins. Hooks marked "first result" stop at the first implementation that
returns something other than None; built-in defaults are registered with
``trylast=True`` so installed plugins win.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from flywheel.config import Config
    from flywheel.enums import ErrorClass
    from flywheel.events import ClaimEvent, FinishEvent, JobEvent, RetryEvent, SupersedeEvent, SweepEvent
    from flywheel.jobs import Job
    from flywheel.registry import Registry
    from flywheel.runtime.node import Node, Service
    from flywheel.storage.driver import Driver

hookspec = pluggy.HookspecMarker("flywheel")

# ---------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def flywheel_driver(url: str) -> Driver | None:
    """Return a driver for a database URL this plugin understands.

    Called by :func:`flywheel.connect`. Return None for any URL you do not handle so
    that other drivers get a turn.

    :param url: the URL as the user gave it, e.g. ``sqlite:///flywheel.db`` or
        ``postgresql://user@host/db``.
    :returns: a :class:`~flywheel.storage.driver.Driver`, or None.

    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


@hookspec
def flywheel_register_workers(registry: Registry, config: Config | None) -> None:
    """Register this plugin's worker kinds on ``registry``.

    Called when a registry is filled from plugins (:meth:`Registry.load_plugins`, the
    CLI's ``serve``). Registering a kind that already exists raises ``DuplicateKind``.

    :param registry: the :class:`~flywheel.registry.Registry` to add workers to.
    :param config: the :class:`~flywheel.config.Config` that ``flywheel serve`` loaded
        (e.g. ``config.runtime.env_allowlist``), or None when code filled the registry.
    """


@hookspec
def flywheel_worker_types() -> Mapping[str, Callable[..., Any]]:
    """Return worker types that config files can declare, as ``{name: factory}``.

    Called when a config file's ``[[schedules]]`` tables name a worker type (``exec``,
    ``shell``, ``python``, ``mage``, ``http``): ``worker = "shell"`` with a ``[schedules.shell]``
    table. ``factory(table)`` receives that table (a mapping) and returns the args of the
    job the schedule enqueues: an attrs instance whose class has ``kind: ClassVar[str]``.
    It raises ``flywheel.ValidationError(field, message)`` for bad settings, reported as
    ``schedules[i].shell.<field>: message``.

    :returns: a mapping of type name to factory.
    """
    raise NotImplementedError  # a specification: pluggy calls the implementations, never this


# ---------------------------------------------------------------------------
# Failure handling
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def flywheel_classify_error(error: BaseException, job: Job[Any]) -> ErrorClass | None:
    """Classify an exception raised by a worker.

    Consulted after the worker's own ``classify`` method returned None and before the
    kernel's default (``ErrorClass.TRANSIENT``). Return None to leave the decision to the
    next plugin.

    :param error: the exception raised by ``Worker.work``.
    :param job: the job whose attempt failed.
    :returns: an :class:`~flywheel.enums.ErrorClass`, or None.

    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------
# Lifecycle events (observers: must not block; buffer and return)
# ---------------------------------------------------------------------------


@hookspec
def flywheel_on_claim(event: ClaimEvent) -> None:
    """Observe a non-empty batch of claimed jobs.

    Called on the runner's claim loop once per non-empty claim, before the jobs are
    dispatched. An implementation that raises is logged and skipped; the others still
    receive the event.

    :param event: a :class:`~flywheel.events.ClaimEvent`.
    """


@hookspec
def flywheel_on_start(event: JobEvent) -> None:
    """Observe an attempt about to run its worker.

    Called on the worker thread right before ``work`` runs, only for registered kinds.
    Raising is logged and skipped.

    :param event: a :class:`~flywheel.events.JobEvent`.
    """


@hookspec
def flywheel_on_finish(event: FinishEvent) -> None:
    """Observe a finalised attempt that moved its job on (every outcome).

    Called after the finalisation committed, with what was persisted. An attempt that had
    lost its lease gets :func:`flywheel_on_supersede` instead: exactly one of the two per
    finalised attempt. Raising is logged and skipped.

    :param event: a :class:`~flywheel.events.FinishEvent`.
    """


@hookspec
def flywheel_on_retry(event: RetryEvent) -> None:
    """Observe a failed attempt that was scheduled for another try.

    Called after :func:`flywheel_on_finish` for the same attempt. Raising is logged and
    skipped.

    :param event: a :class:`~flywheel.events.RetryEvent`.
    """


@hookspec
def flywheel_on_supersede(event: SupersedeEvent) -> None:
    """Observe an attempt whose lease was lost before it was finalised.

    Called on the finaliser instead of :func:`flywheel_on_finish` when the job had been
    moved on (swept, cancelled, retried or released) while the worker ran, so the
    attempt's outcome did not change it. Raising is logged and skipped.

    :param event: a :class:`~flywheel.events.SupersedeEvent`.
    """


@hookspec
def flywheel_on_sweep(event: SweepEvent) -> None:
    """Observe a pass of the lease sweep (:meth:`flywheel.Scheduler.sweep`).

    Called after every pass, one that recovered nothing or failed included. Raising is
    logged and skipped.

    :param event: a :class:`~flywheel.events.SweepEvent`.
    """


# ---------------------------------------------------------------------------
# Process services and CLI
# ---------------------------------------------------------------------------


@hookspec
def flywheel_services(node: Node) -> Iterable[Service] | None:
    """Return long-running services the node should start and stop with itself.

    Called once by :meth:`flywheel.Node.run` before it starts. Each service has
    ``start()`` and ``stop()``; the node starts them in order and stops them in reverse.

    :param node: the :class:`~flywheel.runtime.node.Node` being started.
    :returns: services, or None.
    """


@hookspec
def flywheel_commands(cli: click.Group) -> None:
    """Add click commands to the ``flywheel`` command group.

    Called once when the CLI is built from a plugin manager.

    :param cli: the root :class:`click.Group`.
    """
