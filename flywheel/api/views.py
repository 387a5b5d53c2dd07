"""Read projections: frozen views with go-flywheel's JSON field names (``to_json()``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


class _View:
    """``to_json()`` renders datetimes as RFC 3339 and drops the fields listed in ``_omit_empty`` when empty."""

    _omit_empty: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):  # type: ignore[arg-type]  # every subclass is an attrs class
            value = getattr(self, field.name)
            if field.name in self._omit_empty and value in (None, "", 0, [], {}):
                continue
            if isinstance(value, datetime):
                value = _iso(value)
            elif isinstance(value, timedelta):
                value = int(value.total_seconds() * 1_000_000_000)
            out[field.name] = value
        return out


@attrs.frozen(kw_only=True)
class JobView(_View):
    """A job. ``enqueued_at`` is when it was created; ``parent_job_id`` is "" without a parent."""

    id: str
    kind: str
    state: str
    parent_job_id: str
    enqueued_at: datetime
    attempt: int
    queue: str = "default"
    priority: int = 100
    max_attempts: int = 25
    scheduled_at: datetime | None = None
    finalized_at: datetime | None = None
    executor_class: str = ""
    unique_key: str | None = None
    unique_active_key: str | None = None
    tags: list[str] = attrs.field(factory=list)
    args: Any = None
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class JobRunView(_View):
    """One attempt of a job."""

    _omit_empty = ("error", "output", "error_class")

    id: str
    outcome: str
    executor_class: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None = None
    output: Any = None
    attempt: int = 0
    executor_id: str = ""
    error_class: str | None = None
    duration_ms: int | None = None
    cost_micros: int | None = None
    enqueued_children: int = 0


@attrs.frozen(kw_only=True)
class FailureView(_View):
    """A discarded job and the error of its last attempt."""

    job_id: str
    kind: str
    queue: str
    attempt: int
    finalized_at: datetime
    error_class: str
    error_message: str


@attrs.frozen(kw_only=True)
class JobsOverview(_View):
    """Job counts per state and their total."""

    counts_by_state: dict[str, int]
    total: int


@attrs.frozen(kw_only=True)
class QueueHealth(_View):
    """A gauge snapshot: depth by state, ready and in-flight work, and how far behind the oldest ready job is.

    ``oldest_ready_age`` is a timedelta; in JSON it is integer nanoseconds, as in go-flywheel.
    """

    counts_by_state: dict[str, int]
    ready: int
    inflight: int
    scheduled_ahead: int
    oldest_ready_age: timedelta
    sampled_at: datetime

    @property
    def discarded(self) -> int:
        return self.counts_by_state.get("discarded", 0)


@attrs.frozen(kw_only=True)
class PeriodicView(_View):
    """A periodic schedule and its cursor."""

    _omit_empty = ("cron", "interval_seconds", "last_enqueued_at")

    slug: str
    kind: str
    queue: str
    cron: str | None
    interval_seconds: int | None
    next_run_at: datetime
    last_enqueued_at: datetime | None
    active: bool
    timezone: str = "UTC"
    args: Any = None


@attrs.frozen(kw_only=True)
class JobArgsView(_View):
    """A live job with its args decoded to a dict."""

    id: str
    kind: str
    state: str
    args: dict[str, Any]
