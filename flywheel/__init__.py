"""flywheel: a durable, database-backed background-job runtime.

Importing this package loads no plugin, opens no database and imports almost nothing:
every public name is imported from its module on first use (PEP 562), so the ``flywheel``
command starts quickly. Plugins load when a plugin manager is first needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel.api.client import Client
    from flywheel.api.ops import (
        cancel_job,
        count_active_jobs,
        count_runs,
        delete_finished_jobs,
        find_job,
        list_active_by_kind,
        list_jobs,
        list_runs,
        overview,
        queue_health,
        recent_failures,
        retry_job,
    )
    from flywheel.api.views import (
        FailureView,
        JobArgsView,
        JobRunView,
        JobsOverview,
        JobView,
        PeriodicView,
        QueueHealth,
    )
    from flywheel.clock import Clock, FixedClock, SystemClock, current_clock, use_clock
    from flywheel.config import Config, load_config
    from flywheel.context import request_id, request_id_scope
    from flywheel.enums import ANY_CLASS, ErrorClass, JobState, RunOutcome, non_terminal_states, terminal_states
    from flywheel.errors import (
        AlreadyEnqueued,
        DatabaseError,
        DuplicateKey,
        DuplicateKind,
        FlywheelError,
        ForeignKeyViolation,
        JobNotFound,
        JobTerminal,
        MissingKind,
        PeriodicNotFound,
        SchemaMissing,
        UnknownKind,
        ValidationError,
        wrap_db_error,
    )
    from flywheel.events import ClaimEvent, FinishEvent, JobEvent, RetryEvent, SupersedeEvent, SweepEvent
    from flywheel.ids import new_id
    from flywheel.jobs import Cancel, FollowUp, InsertOpts, Job, Permanent, Result, Snooze
    from flywheel.plugins import hookimpl
    from flywheel.registry import Registry, Worker
    from flywheel.runtime.node import HealthConfig, Node, RunnerConfig, SchedulerConfig
    from flywheel.runtime.runner import Runner
    from flywheel.scheduling.scheduler import Scheduler
    from flywheel.scheduling.schedules import (
        PeriodicSpec,
        delete_periodic,
        list_periodics,
        set_periodic_active,
        upsert_periodic,
    )
    from flywheel.storage import DEFAULT_URL
    from flywheel.storage.db import Database, connect, migrate, models

__version__ = "0.1.0"

#: module -> the public names it provides
_EXPORTS: dict[str, tuple[str, ...]] = {
    "flywheel.api.client": ("Client",),
    "flywheel.clock": ("Clock", "FixedClock", "SystemClock", "current_clock", "use_clock"),
    "flywheel.config": ("Config", "load_config"),
    "flywheel.context": ("request_id", "request_id_scope"),
    "flywheel.storage.db": ("DEFAULT_URL", "Database", "connect", "migrate", "models"),
    "flywheel.enums": ("ANY_CLASS", "ErrorClass", "JobState", "RunOutcome", "non_terminal_states", "terminal_states"),
    "flywheel.errors": ("AlreadyEnqueued", "DatabaseError", "DuplicateKey", "DuplicateKind", "FlywheelError",
                        "ForeignKeyViolation", "JobNotFound", "JobTerminal", "MissingKind", "PeriodicNotFound",
                        "SchemaMissing", "UnknownKind", "ValidationError", "wrap_db_error"),
    "flywheel.events": ("ClaimEvent", "FinishEvent", "JobEvent", "RetryEvent", "SupersedeEvent", "SweepEvent"),
    "flywheel.ids": ("new_id",),
    "flywheel.jobs": ("Cancel", "FollowUp", "InsertOpts", "Job", "Permanent", "Result", "Snooze"),
    "flywheel.runtime.node": ("HealthConfig", "Node", "RunnerConfig", "SchedulerConfig"),
    "flywheel.api.ops": ("cancel_job", "count_active_jobs", "count_runs", "delete_finished_jobs", "find_job",
                     "list_active_by_kind", "list_jobs", "list_runs", "overview", "queue_health", "recent_failures",
                     "retry_job"),
    "flywheel.plugins": ("hookimpl",),
    "flywheel.registry": ("Registry", "Worker"),
    "flywheel.runtime.runner": ("Runner",),
    "flywheel.scheduling.scheduler": ("Scheduler",),
    "flywheel.scheduling.schedules": ("PeriodicSpec", "delete_periodic", "list_periodics", "set_periodic_active",
                           "upsert_periodic"),
    "flywheel.api.views": ("FailureView", "JobArgsView", "JobRunView", "JobView", "JobsOverview", "PeriodicView",
                       "QueueHealth"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule such as ``flywheel.plugins``) on first use."""
    module = _WHERE.get(name)
    if module is None:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'flywheel' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "ANY_CLASS", "DEFAULT_URL", "AlreadyEnqueued", "Cancel", "ClaimEvent", "Client", "Clock", "Config", "Database",
    "DatabaseError", "DuplicateKey", "DuplicateKind", "ErrorClass", "FailureView", "FinishEvent", "FixedClock",
    "FlywheelError", "FollowUp", "ForeignKeyViolation", "HealthConfig", "InsertOpts", "Job", "JobArgsView",
    "JobEvent", "JobNotFound", "JobRunView", "JobState", "JobTerminal", "JobView", "JobsOverview", "MissingKind",
    "Node", "PeriodicNotFound", "PeriodicSpec", "PeriodicView", "Permanent", "QueueHealth", "Registry", "Result",
    "RetryEvent", "RunOutcome", "Runner", "RunnerConfig", "Scheduler", "SchedulerConfig", "SchemaMissing", "Snooze",
    "SupersedeEvent", "SweepEvent", "SystemClock",
    "UnknownKind", "ValidationError", "Worker",
    "__version__", "cancel_job", "connect", "count_active_jobs", "count_runs", "current_clock",
    "delete_finished_jobs", "delete_periodic", "find_job", "hookimpl", "list_active_by_kind", "list_jobs",
    "list_periodics", "list_runs", "load_config", "migrate", "models", "new_id", "non_terminal_states", "overview",
    "queue_health", "recent_failures", "request_id", "request_id_scope", "retry_job", "set_periodic_active",
    "terminal_states", "upsert_periodic", "use_clock", "wrap_db_error",
]
