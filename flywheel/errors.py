"""The exception tree every flywheel error belongs to, and the database error mapping."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class FlywheelError(Exception):
    """Base class of every error flywheel raises on purpose."""


class JobNotFound(FlywheelError, LookupError):
    """No job has that id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"flywheel: job not found: {job_id}")
        self.job_id = job_id


class JobTerminal(FlywheelError):
    """The operation needs a live job, and this one has already finished."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"flywheel: job {job_id} has already reached a terminal state ({state})")
        self.job_id = job_id
        self.state = state


class PeriodicNotFound(FlywheelError, LookupError):
    """No periodic schedule has that slug."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"flywheel: periodic not found: {slug}")
        self.slug = slug


class AlreadyEnqueued(FlywheelError):
    """A unique key collided with an existing job; ``job_id`` names it when it could be read."""

    def __init__(self, key: str | None = None, job_id: str | None = None) -> None:
        detail = f" (unique key {key!r}, existing job {job_id})" if key else ""
        super().__init__(f"jobs: already enqueued{detail}")
        self.key = key
        self.job_id = job_id


class ValidationError(FlywheelError, ValueError):
    """Bad input: ``field`` names what was wrong, ``message`` says how."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"flywheel: {field} {message}")
        self.field = field
        self.message = message


class MissingKind(ValidationError):
    """The args object does not name its kind (a ``kind`` class attribute)."""

    def __init__(self, args_type: type) -> None:
        super().__init__("kind", f"is missing: {args_type.__qualname__} has no 'kind' class attribute")
        self.args_type = args_type


class UnknownKind(FlywheelError):
    """No worker is registered for the kind."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"jobs: unknown job kind {kind!r}")
        self.kind = kind


class DuplicateKind(FlywheelError):
    """A second worker was registered for a kind."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"jobs: duplicate worker registration for kind {kind!r}")
        self.kind = kind


class DatabaseError(FlywheelError):
    """The database failed an operation; the driver's exception is ``__cause__``."""


class DuplicateKey(DatabaseError):
    """A unique constraint was violated."""


class ForeignKeyViolation(DatabaseError):
    """A foreign key constraint was violated."""


class SchemaMissing(DatabaseError):
    """The database has no flywheel tables yet (or, for SQLite, no file): ``flywheel migrate`` creates them."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"flywheel: the database is not migrated ({detail}); run `flywheel migrate` "
                         "(or flywheel.migrate(db)) first")
        self.detail = detail


def wrap_db_error(exc: BaseException) -> FlywheelError:
    """Map a driver exception to a flywheel error; flywheel's own errors pass through.

    The driver whose database raised ``exc`` names it (:meth:`flywheel.storage.driver.Driver.map_error`):
    a unique violation becomes :class:`DuplicateKey`, a foreign key one
    :class:`ForeignKeyViolation`, a missing table :class:`SchemaMissing`; anything else
    :class:`DatabaseError`. The driver's exception is the ``__cause__``.
    """
    import peewee  # here, not at the top: the CLI's start-up imports this module

    from flywheel.storage.driver import map_driver_error

    inner: BaseException | None = exc
    while isinstance(inner, peewee.PeeweeException):  # peewee's wrapper re-raises errors it takes for a driver's
        inner = getattr(inner, "orig", None)
    if isinstance(inner, FlywheelError):
        return inner
    wrapped = map_driver_error(exc)
    if wrapped is None:
        wrapped = DatabaseError(f"flywheel: database operation failed: {str(exc).strip() or type(exc).__name__}")
    wrapped.__cause__ = exc
    return wrapped


def translate_db_errors(fn: F) -> F:
    """Let a public function raise flywheel errors, never a driver's: peewee's become :func:`wrap_db_error`'s."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import peewee

        try:
            return fn(*args, **kwargs)
        except peewee.PeeweeException as exc:
            raise wrap_db_error(exc) from exc

    return wrapper  # type: ignore[return-value]


def one_line(exc: BaseException) -> str:
    """An exception as one log-friendly line."""
    return " ".join(str(exc).split()) or type(exc).__name__
