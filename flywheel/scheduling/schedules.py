"""Periodic schedules: ``PeriodicSpec``, their cadence arithmetic, and their table.

Cron expressions are evaluated on the schedule's own wall clock (an IANA zone, UTC by
default; a ``CRON_TZ=Zone`` prefix sets it too). Across daylight-saving changes:

* a wall-clock time that does not exist (the spring-forward gap) fires once, at the first
  valid minute after the gap (``02:30`` → ``03:00``);
* a wall-clock time that happens twice (the fall-back hour) fires once, at its first
  occurrence;

so a daily job never skips a day and never fires twice for one wall-clock time. An
``every`` schedule is a fixed interval of real time, anchored to its stored cursor.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import croniter

from flywheel import clock
from flywheel.api.views import PeriodicView
from flywheel.durations import to_timedelta
from flywheel.errors import PeriodicNotFound, ValidationError, translate_db_errors
from flywheel.ids import new_id
from flywheel.serde import normalise_json_payload

if TYPE_CHECKING:
    from flywheel.storage.db import Database

PERIODIC_QUEUE = "periodic"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
_CRON_TZ = re.compile(r"^\s*(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")
_MAX_CRON_STEPS = 100_000
#: robfig/cron's descriptors, which croniter reads as their 5-field equivalents
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _every(value: timedelta | float | None) -> timedelta | None:
    """``PeriodicSpec.every`` as a timedelta (a number is seconds); named so mypy sees its type."""
    return to_timedelta(value, field="every")


@attrs.frozen(kw_only=True)
class PeriodicSpec:
    """A cron or fixed-interval schedule; exactly one of ``cron`` and ``every``."""

    slug: str
    kind: str
    queue: str = PERIODIC_QUEUE
    args: Any = None
    cron: str | None = None
    every: timedelta | None = attrs.field(default=None, converter=_every)
    active: bool = True
    timezone: str = "UTC"


@attrs.frozen
class Cadence:
    """A validated schedule rule: the cron expression and zone, or the interval."""

    cron: str | None
    every: timedelta | None
    zone: str

    def next_after(self, instant: datetime) -> datetime:
        """The first fire strictly after ``instant``."""
        if self.every is not None:
            return instant + self.every
        return next(cron_fires(self.cron or "", self.zone, instant))

    def fires_between(self, start: datetime, end: datetime, cap: int) -> tuple[list[datetime], datetime]:
        """The last ``cap`` fires in ``[start, end]`` (``start`` is a due fire) and the fire after them."""
        if self.every is not None:
            count = int((end - start) / self.every) + 1
            first = max(0, count - cap)
            return [start + self.every * k for k in range(first, count)], start + self.every * count
        due: deque[datetime] = deque([start], maxlen=cap)
        for steps, fire in enumerate(cron_fires(self.cron or "", self.zone, start)):
            if fire > end:
                return list(due), fire
            due.append(fire)
            if steps > _MAX_CRON_STEPS:  # far behind: skip ahead to the recent past
                spacing = (fire - start) / (steps + 1)
                return self.fires_between(self._recent_fire(end, spacing * cap * 4), end, cap)
        raise AssertionError("unreachable")

    def _recent_fire(self, end: datetime, window: timedelta) -> datetime:
        """A fire at or before ``end``, about ``window`` before it (further back if none is)."""
        window = max(window, timedelta(days=1))
        while True:
            fire = self.next_after(end - window)
            if fire <= end:
                return fire
            window *= 2


def validate(spec: PeriodicSpec) -> Cadence:
    """Check a spec; a bad one raises ``ValidationError`` naming the field."""
    if not isinstance(spec.slug, str) or not _SLUG.match(spec.slug or ""):
        raise ValidationError("slug", f"must be letters, digits and _.:/- , not {spec.slug!r}")
    if not isinstance(spec.kind, str) or not spec.kind.strip():
        raise ValidationError("kind", "must be a non-empty string")
    if not isinstance(spec.queue, str) or not spec.queue.strip():
        raise ValidationError("queue", "must be a non-empty string")
    if (spec.cron is None) == (spec.every is None):
        raise ValidationError("cron", "exactly one of cron and every must be set")
    zone = spec.timezone or "UTC"
    if spec.every is not None:
        if spec.every < timedelta(seconds=1):
            raise ValidationError("every", f"must be at least 1s, not {spec.every}")
        if spec.every.microseconds:
            raise ValidationError("every", f"must be a whole number of seconds, not {spec.every}")
        return Cadence(None, spec.every, _zone_name(zone))
    expression = spec.cron.strip() if isinstance(spec.cron, str) else ""
    if (match := _CRON_TZ.match(expression)) is not None:
        zone, expression = match.group(1), match.group(2).strip()
    if expression.lower().startswith("@every"):
        raise ValidationError("cron", f"@every is not cron: use every= instead of cron={spec.cron!r}")
    if expression.lower() in _DESCRIPTORS:
        expression = expression.lower()
    elif len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValidationError("cron", f"is not a valid 5-field cron expression: {spec.cron!r}")
    return Cadence(expression, None, _zone_name(zone))


def _zone_name(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError("timezone", f"is not a known IANA time zone: {name!r}") from exc
    return name


def cron_fires(expression: str, zone_name: str, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after ``after``, by the DST rule in the module docstring."""
    zone = ZoneInfo(zone_name)
    local = after.astimezone(zone).replace(tzinfo=None)
    walls = croniter(expression, local)
    last = after
    while True:
        wall: datetime = walls.get_next(datetime)
        instant = _instant_of(wall, zone)
        if instant > last:
            last = instant
            yield instant


def _instant_of(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock time names: its first occurrence, or the end of a DST gap."""
    probe = wall
    for _ in range(24 * 60):
        aware = probe.replace(tzinfo=zone, fold=0)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == probe:
            return aware.astimezone(UTC)
        probe = (probe + timedelta(minutes=1)).replace(second=0, microsecond=0)
    raise ValueError(f"no valid wall-clock time near {wall} in {zone}")


# -- the table ---------------------------------------------------------------------


@translate_db_errors
def upsert_periodic(db: Database, spec: PeriodicSpec) -> PeriodicView:
    """Create or update a schedule by slug.

    A new schedule first fires one period from now, never at once. Re-upserting an
    unchanged cadence keeps its cursor (safe on every boot); a changed one re-seeds it.
    """
    cadence = validate(spec)
    args_json = normalise_json_payload(spec.args, field="args")
    now = clock.now()
    Periodic = db.JobPeriodic
    interval = None if cadence.every is None else int(cadence.every.total_seconds())
    with db.atomic():
        row = Periodic.get_or_none(Periodic.slug == spec.slug)
        same_cadence = row is not None and (row.cron_expr, row.interval_seconds, row.timezone) == (
            cadence.cron, interval, cadence.zone)
        values = {
            "kind": spec.kind, "queue": spec.queue, "args_template": args_json, "cron_expr": cadence.cron,
            "interval_seconds": interval, "timezone": cadence.zone, "is_active": bool(spec.active),
            "updated_at": now,
        }
        if not same_cadence:
            values["next_run_at"] = _first_fire(cadence, now, spec.cron)
        if row is None:
            Periodic.insert(id=new_id(), slug=spec.slug, created_at=now, **values).execute()
        else:
            Periodic.update(**values).where(Periodic.id == row.id).execute()
    return find_periodic(db, spec.slug)


def _first_fire(cadence: Cadence, now: datetime, expression: str | None) -> datetime:
    try:
        return cadence.next_after(now)
    except (ValueError, KeyError, ArithmeticError) as exc:  # croniter: a date that never comes (Feb 30)
        raise ValidationError("cron", f"never fires: {expression!r}") from exc


def cadence_of(row: Any) -> Cadence:
    """The cadence stored on a ``job_periodics`` row."""
    every = None if row.interval_seconds is None else timedelta(seconds=row.interval_seconds)
    return Cadence(row.cron_expr, every, row.timezone or "UTC")


@translate_db_errors
def find_periodic(db: Database, slug: str) -> PeriodicView:
    row = db.JobPeriodic.get_or_none(db.JobPeriodic.slug == slug)
    if row is None:
        raise PeriodicNotFound(slug)
    return periodic_view(row)


@translate_db_errors
def delete_periodic(db: Database, slug: str) -> None:
    """Remove a schedule; jobs it already enqueued stay."""
    Periodic = db.JobPeriodic
    if not Periodic.delete().where(Periodic.slug == slug).execute():
        raise PeriodicNotFound(slug)


@translate_db_errors
def set_periodic_active(db: Database, slug: str, active: bool) -> PeriodicView:
    """Pause or resume a schedule. Resuming skips the fires missed while paused."""
    Periodic = db.JobPeriodic
    now = clock.now()
    with db.atomic():
        row = Periodic.get_or_none(Periodic.slug == slug)
        if row is None:
            raise PeriodicNotFound(slug)
        changes: dict[str, Any] = {"is_active": bool(active), "updated_at": now}
        if active and not row.is_active and row.next_run_at <= now:
            changes["next_run_at"] = cadence_of(row).next_after(now)
        Periodic.update(**changes).where(Periodic.id == row.id).execute()
    return find_periodic(db, slug)


@translate_db_errors
def list_periodics(db: Database) -> list[PeriodicView]:
    """Every schedule, by slug."""
    Periodic = db.JobPeriodic
    return [periodic_view(row) for row in Periodic.select().order_by(Periodic.slug)]


def periodic_view(row: Any) -> PeriodicView:
    return PeriodicView(
        slug=row.slug, kind=row.kind, queue=row.queue, cron=row.cron_expr, interval_seconds=row.interval_seconds,
        next_run_at=row.next_run_at, last_enqueued_at=row.last_enqueued_at, active=bool(row.is_active),
        timezone=row.timezone or "UTC", args=row.args_template,
    )
