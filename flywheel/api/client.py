"""The producer: ``Client.insert``, ``enqueue`` and ``insert_many``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flywheel import clock
from flywheel.context import request_id as current_request_id
from flywheel.enums import ACTIVE_STATES, JobState
from flywheel.errors import AlreadyEnqueued, MissingKind, ValidationError, translate_db_errors
from flywheel.ids import new_id, new_ids
from flywheel.jobs import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, DEFAULT_QUEUE, InsertOpts, check_unique_key
from flywheel.serde import dump_args, normalise_json_payload
from flywheel.storage.sanitize import check_text, require_aware

if TYPE_CHECKING:
    import pluggy

    from flywheel.registry import Registry
    from flywheel.storage.db import Database


def kind_of(args: object) -> str:
    """The kind an args object names through its ``kind`` class attribute."""
    kind = getattr(type(args), "kind", None)
    if not isinstance(kind, str):
        raise MissingKind(type(args))
    return kind


def build_job_row(kind: str, args_json: str, opts: InsertOpts, now: datetime,
                  job_id: str | None = None) -> dict[str, Any]:
    """Validate one insert and return its complete ``jobs`` row; nothing is written.

    JSON columns (``args``, ``metadata``, ``tags``) hold JSON text, ready to store.
    """
    if not isinstance(kind, str) or not kind.strip():
        raise ValidationError("kind", "must be a non-empty string")
    queue = DEFAULT_QUEUE if opts.queue is None else opts.queue
    if not isinstance(queue, str) or not queue.strip():
        raise ValidationError("queue", "must be a non-empty string")
    max_attempts = opts.max_attempts or DEFAULT_MAX_ATTEMPTS
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 0:
        raise ValidationError("max_attempts",
                              f"must not be negative (0 means the default, 25), not {opts.max_attempts!r}")
    priority = DEFAULT_PRIORITY if opts.priority is None else opts.priority
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValidationError("priority", f"must be an integer, not {priority!r}")
    tags = list(opts.tags or [])
    if not all(isinstance(t, str) for t in tags):
        raise ValidationError("tags", "must be a list of strings")
    require_aware(opts.schedule_at, "schedule_at")
    check_unique_key(opts.unique_key)
    check_unique_key(opts.unique_active_key, "unique_active_key")
    timeout_ms = None
    if opts.timeout is not None:
        if opts.timeout.total_seconds() <= 0:
            raise ValidationError("timeout", "must be positive")
        timeout_ms = max(1, round(opts.timeout.total_seconds() * 1000))
    request_id = opts.request_id or current_request_id()
    _check_texts(kind=kind, queue=queue, unique_key=opts.unique_key, unique_active_key=opts.unique_active_key,
                 parent=opts.parent, executor_class=opts.executor_class, request_id=request_id, tags="".join(tags))
    return {
        "id": job_id or new_id(),
        "created_at": now,
        "updated_at": now,
        "metadata": json.dumps({"request_id": request_id}) if request_id else "{}",
        "kind": kind,
        "queue": queue,
        "args": args_json,
        "priority": priority,
        "state": JobState.AVAILABLE.value,
        "attempt": 0,
        "max_attempts": max_attempts,
        "timeout_ms": timeout_ms,
        "scheduled_at": opts.schedule_at or now,
        "leased_until": None,
        "lease_token": None,
        "unique_key": opts.unique_key,
        "unique_active_key": opts.unique_active_key,
        "parent_job_id": opts.parent,
        "executor_class": opts.executor_class or "",
        "finalized_at": None,
        "tags": json.dumps(tags) if tags else "[]",
    }


def _check_texts(**fields: object) -> None:
    """Text options must be storable: no NUL, no lone surrogate (see :mod:`flywheel.storage.sanitize`)."""
    for field, value in fields.items():
        if isinstance(value, str):
            check_text(value, field)


_NO_OPTS = InsertOpts()
#: ids minted at once by ``insert_many`` (one lock and one read of the random source per block)
_ID_BLOCK = 256


class Client:
    """Inserts jobs. Given the registry, it applies each worker's ``defaults()``.

    ``pm`` is the plugin manager to use (default: the database's).
    """

    def __init__(self, db: Database, *, registry: Registry | None = None,
                 pm: pluggy.PluginManager | None = None) -> None:
        self.db = db
        self.registry = registry
        self.pm = pm if pm is not None else db.pm

    @translate_db_errors
    def insert(self, args: object, **opts: Any) -> str:
        """Insert one typed job; returns its id. A unique collision raises ``AlreadyEnqueued``."""
        return self._insert_row(self._row(kind_of(args), dump_args(args), InsertOpts(**opts)))

    @translate_db_errors
    def enqueue(self, kind: str, args_json: str | bytes | dict[str, Any] | None = None, **opts: Any) -> str:
        """Insert one job from a kind and a JSON payload; no worker class needed."""
        payload = normalise_json_payload(args_json, field="args")
        return self._insert_row(self._row(kind, payload, InsertOpts(**opts)))

    @translate_db_errors
    def insert_many(self, items: Iterable[object | tuple[object, InsertOpts]]) -> list[str | None]:
        """Insert many jobs in one transaction, a multi-row statement per chunk.

        Each item is an args object or ``(args, InsertOpts)``. Returns the ids in order,
        None where a unique collision skipped the row. Every row is validated before
        anything is written; a bad one raises ``ValidationError`` naming its index.
        """
        rows = []
        now = clock.now()  # one instant for the batch: its rows keep their order in the claim
        templates: dict[tuple[str, InsertOpts | None], dict[str, Any]] = {}
        ids: list[str] = []
        for index, item in enumerate(items):
            args, opts = item if isinstance(item, tuple) else (item, _NO_OPTS)
            if not ids:
                ids = new_ids(_ID_BLOCK)[::-1]  # minted a block at a time; popped in minting order
            try:
                kind, args_json = kind_of(args), dump_args(args)
                rows.append(self._templated_row(templates, kind, args_json, opts, now, ids.pop()))
            except ValidationError as exc:
                raise ValidationError(exc.field, f"{exc.message} (item {index})") from exc
        if not rows:
            return []
        landed = self.db.driver.enqueue(self.db, rows)
        return [row["id"] if row["id"] in landed else None for row in rows]

    # -- internals -------------------------------------------------------------

    def _templated_row(self, templates: dict[tuple[str, InsertOpts | None], dict[str, Any]], kind: str,
                       args_json: str, opts: InsertOpts, now: datetime, job_id: str) -> dict[str, Any]:
        """A row validated once per (kind, options) in a batch: later ones only get an id and args.

        Items without options share the key ``(kind, None)``, which spares hashing the options.
        """
        try:
            key = (kind, None if opts is _NO_OPTS else opts)
            template = templates.get(key)
        except TypeError:  # options holding a list (tags) are not hashable: build the row in full
            return self._row(kind, args_json, opts, now, job_id)
        if template is None:
            template = templates[key] = self._row(kind, args_json, opts, now, job_id)
            return template
        row = template.copy()
        row["id"] = job_id
        row["args"] = args_json
        return row

    def _row(self, kind: str, args_json: str, opts: InsertOpts, now: datetime | None = None,
             job_id: str | None = None) -> dict[str, Any]:
        if self.registry is not None and (entry := self.registry.find(kind)) is not None:
            defaults = entry.call("defaults")
            if defaults is not None:
                opts = defaults.overlay(opts)
        return build_job_row(kind, args_json, opts, now or clock.now(), job_id)

    def _insert_row(self, row: dict[str, Any]) -> str:
        if row["id"] in self.db.driver.enqueue(self.db, [row]):
            return str(row["id"])
        key = row["unique_key"] or row["unique_active_key"]
        raise AlreadyEnqueued(key, existing_job_id(self.db, row))


def existing_job_id(db: Database, row: dict[str, Any]) -> str | None:
    """The id of the job a colliding row collided with, when it can be read."""
    Job = db.Job
    if row.get("unique_key"):
        query = Job.select(Job.id).where(Job.unique_key == row["unique_key"])
    else:
        query = Job.select(Job.id).where(
            Job.unique_active_key == row["unique_active_key"], Job.state.in_([s.value for s in ACTIVE_STATES])
        )
    found = query.first()
    return None if found is None else str(found.id)
