"""The ``logging`` plugin: every lifecycle event as a stdlib log record under ``flywheel.events``.

Structured fields go in each record's ``extra`` (``job_id``, ``run_id``, ``kind``,
``queue``, ``attempt``, ``outcome``, ``duration`` in seconds, ``error_class``, …), so a
formatter can print them as fields; :func:`configure` installs one that writes them as
one JSON object per line (``[log] format = "json"``) or as readable text.

Levels follow go-flywheel's slog observer: the happy path (claim, start, a successful
finish, a retry being scheduled, an empty sweep) is DEBUG; a failed attempt is INFO, or
WARNING when it discarded its job; a superseded attempt is WARNING; a sweep that
reclaimed something is INFO.
"""

from __future__ import annotations

import datetime as _dt
import logging
from typing import IO, TYPE_CHECKING, Any

from flywheel.enums import JobState, RunOutcome
from flywheel.logsetup import (  # re-exported: the formats belong to this plugin's users too
    FORMATS as FORMATS,
    LEVELS as LEVELS,
    JsonFormatter as JsonFormatter,
    TextFormatter as TextFormatter,
    install_handler,
    record_fields as record_fields,
)
from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel.events import ClaimEvent, FinishEvent, JobEvent, RetryEvent, SupersedeEvent, SweepEvent

logger = logging.getLogger("flywheel.events")

_QUIET_OUTCOMES = frozenset({RunOutcome.SUCCESS, RunOutcome.SNOOZE, RunOutcome.CANCELLED})


def _seconds(delta: _dt.timedelta) -> float:
    return round(delta.total_seconds(), 6)


def _job_fields(event: JobEvent | FinishEvent | SupersedeEvent | RetryEvent) -> dict[str, Any]:
    return {"job_id": event.job_id, "run_id": event.run_id, "kind": event.kind, "queue": event.queue,
            "attempt": event.attempt}


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    return " ".join(f"{type(error).__name__}: {error}".split())


# -- the observer hooks --------------------------------------------------------------------


@hookimpl
def flywheel_on_claim(event: ClaimEvent) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("flywheel: claimed %d job(s) from %s", event.claimed, ",".join(event.queues), extra={
            "action": "jobs_claimed", "executor_class": event.executor_class, "queues": list(event.queues),
            "claimed": event.claimed, "duration": _seconds(event.duration)})


@hookimpl
def flywheel_on_start(event: JobEvent) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("flywheel: job %s (%s) attempt %d started", event.job_id, event.kind, event.attempt,
                     extra={"action": "job_started", **_job_fields(event)})


@hookimpl
def flywheel_on_finish(event: FinishEvent) -> None:
    if event.outcome in _QUIET_OUTCOMES and event.error is None:
        level = logging.DEBUG
    else:
        level = logging.WARNING if event.state is JobState.DISCARDED else logging.INFO
    if not logger.isEnabledFor(level):
        return
    error = _error_text(event.error)
    ended = "discarded the job" if event.state is JobState.DISCARDED else str(event.outcome)
    logger.log(level, "flywheel: job %s (%s) attempt %d %s in %.1f ms%s", event.job_id, event.kind, event.attempt,
               ended, event.duration.total_seconds() * 1000, f": {error}" if error else "", extra={
                   "action": "job_finished", **_job_fields(event), "outcome": str(event.outcome),
                   "state": None if event.state is None else str(event.state),
                   "duration": _seconds(event.duration), "finalize_duration": _seconds(event.finalize_duration),
                   "error_class": None if event.error_class is None else str(event.error_class), "error": error})


@hookimpl
def flywheel_on_retry(event: RetryEvent) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("flywheel: job %s (%s) will retry in %.1fs (attempt %d)", event.job_id, event.kind,
                     event.delay.total_seconds(), event.next_attempt, extra={
                         "action": "job_retry", **_job_fields(event), "next_attempt": event.next_attempt,
                         "delay": _seconds(event.delay), "error_class": str(event.error_class)})


@hookimpl
def flywheel_on_supersede(event: SupersedeEvent) -> None:
    logger.warning("flywheel: job %s (%s) attempt %d was superseded; its outcome (%s) was discarded",
                   event.job_id, event.kind, event.attempt, event.outcome, extra={
                       "action": "job_superseded", **_job_fields(event), "outcome": str(event.outcome),
                       "duration": _seconds(event.duration),
                       "error_class": None if event.error_class is None else str(event.error_class),
                       "error": _error_text(event.error)})


@hookimpl
def flywheel_on_sweep(event: SweepEvent) -> None:
    level = logging.INFO if event.reclaimed else logging.DEBUG
    if event.error is not None or not logger.isEnabledFor(level):
        return  # a failed pass is logged by the scheduler, with its traceback
    logger.log(level, "flywheel: lease sweep reclaimed %d job(s) (%d discarded) in %.1f ms", event.reclaimed,
               event.discarded, event.duration.total_seconds() * 1000, extra={
                   "action": "lease_sweep", "reclaimed": event.reclaimed, "discarded": event.discarded,
                   "duration": _seconds(event.duration)})


# -- set-up ----------------------------------------------------------------------------------


def configure(level: str | int = "info", fmt: str = "text", *, stream: IO[str] | None = None,
              logger_name: str = "") -> logging.Handler:
    """Send log records at ``level`` and above to ``stream`` (stderr) as ``fmt`` (``text``/``json``).

    The same set-up the CLI uses for ``[log] level`` / ``format``
    (:func:`flywheel.logsetup.install_handler`). The handler goes on the root logger by
    default (``logger_name=""``), so workers' own log lines come out in the same format;
    calling it again replaces the handler it installed before. Returns the handler.
    """
    return install_handler(level, fmt, stream=stream, logger_name=logger_name)
