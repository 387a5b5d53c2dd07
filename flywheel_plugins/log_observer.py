"""Log every attempt through stdlib logging, with structured fields in ``extra``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flywheel.plugins import hookimpl

if TYPE_CHECKING:  # only annotations: loading the plugin stays cheap
    from flywheel.events import ClaimEvent, FinishEvent, JobEvent, RetryEvent

logger = logging.getLogger("flywheel.events")


@hookimpl
def flywheel_on_claim(event: ClaimEvent) -> None:
    logger.debug("claimed %d job(s) from %s", event.claimed, ",".join(event.queues),
                 extra={"action": "jobs_claimed", "claimed": event.claimed, "queues": event.queues})


@hookimpl
def flywheel_on_start(event: JobEvent) -> None:
    logger.debug("job %s (%s) attempt %d started", event.job_id, event.kind, event.attempt,
                 extra={"action": "job_started", "job_id": event.job_id, "kind": event.kind,
                        "run_id": event.run_id, "attempt": event.attempt})


@hookimpl
def flywheel_on_finish(event: FinishEvent) -> None:
    superseded = " (superseded: the job had moved on)" if event.superseded else ""
    logger.info("job %s (%s) attempt %d: %s in %.1f ms%s%s", event.job_id, event.kind, event.attempt,
               event.outcome, event.duration.total_seconds() * 1000, superseded,
               f": {event.error}" if event.error is not None else "",
               extra={"action": "job_finished", "job_id": event.job_id, "kind": event.kind,
                      "outcome": str(event.outcome), "error_class": event.error_class and str(event.error_class),
                      "duration_s": event.duration.total_seconds()})


@hookimpl
def flywheel_on_retry(event: RetryEvent) -> None:
    logger.info("job %s (%s) will retry in %.1fs (attempt %d)", event.job_id, event.kind,
                event.delay.total_seconds(), event.next_attempt,
                extra={"action": "job_retry", "job_id": event.job_id, "next_attempt": event.next_attempt})
