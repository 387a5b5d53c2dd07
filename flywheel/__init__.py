"""flywheel: a durable, database-backed background-job runtime.

Importing this package loads no plugin and opens no database; plugins load when a plugin
manager is first needed (``connect``, ``Runner``, the CLI).
"""

from __future__ import annotations

from flywheel.client import Client
from flywheel.clock import Clock, FixedClock, SystemClock, current_clock, use_clock
from flywheel.context import request_id, request_id_scope
from flywheel.db import DEFAULT_URL, Database, connect, migrate, models
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
    UnknownKind,
    ValidationError,
    wrap_db_error,
)
from flywheel.events import ClaimEvent, FinishEvent, JobEvent, RetryEvent, SupersedeEvent, SweepEvent
from flywheel.ids import new_id
from flywheel.jobs import Cancel, FollowUp, InsertOpts, Job, Permanent, Result, Snooze
from flywheel.node import HealthConfig, Node, RunnerConfig, SchedulerConfig
from flywheel.ops import (
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
from flywheel.plugins import hookimpl
from flywheel.registry import Registry, Worker
from flywheel.runner import Runner
from flywheel.scheduler import Scheduler
from flywheel.schedules import (
    PeriodicSpec,
    delete_periodic,
    list_periodics,
    set_periodic_active,
    upsert_periodic,
)
from flywheel.views import FailureView, JobArgsView, JobRunView, JobsOverview, JobView, PeriodicView, QueueHealth

__version__ = "0.1.0"

__all__ = [
    "ANY_CLASS", "DEFAULT_URL", "AlreadyEnqueued", "Cancel", "ClaimEvent", "Client", "Clock", "Database",
    "DatabaseError", "DuplicateKey", "DuplicateKind", "ErrorClass", "FailureView", "FinishEvent", "FixedClock",
    "FlywheelError", "FollowUp", "ForeignKeyViolation", "HealthConfig", "InsertOpts", "Job", "JobArgsView",
    "JobEvent", "JobNotFound", "JobRunView", "JobState", "JobTerminal", "JobView", "JobsOverview", "MissingKind",
    "Node", "PeriodicNotFound", "PeriodicSpec", "PeriodicView", "Permanent", "QueueHealth", "Registry", "Result",
    "RetryEvent", "RunOutcome", "Runner", "RunnerConfig", "Scheduler", "SchedulerConfig", "Snooze", "SupersedeEvent", "SweepEvent",
    "SystemClock",
    "UnknownKind", "ValidationError", "Worker",
    "__version__", "cancel_job", "connect", "count_active_jobs", "count_runs", "current_clock",
    "delete_finished_jobs", "delete_periodic", "find_job", "hookimpl", "list_active_by_kind", "list_jobs",
    "list_periodics", "list_runs", "migrate", "models", "new_id", "non_terminal_states", "overview",
    "queue_health", "recent_failures", "request_id", "request_id_scope", "retry_job", "set_periodic_active",
    "terminal_states", "upsert_periodic", "use_clock", "wrap_db_error",
]
