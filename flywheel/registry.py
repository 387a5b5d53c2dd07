"""Workers and the registry that maps a kind to the worker that runs it."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, get_args, get_origin

import attrs

from flywheel.errors import DuplicateKind, UnknownKind, ValidationError
from flywheel.jobs import InsertOpts, Job, Result

if TYPE_CHECKING:
    import pluggy

    from flywheel.enums import ErrorClass

A = TypeVar("A")


class Worker(Generic[A]):
    """Base class of class-based workers: set ``kind`` and implement ``work``.

    ``class SendEmail(Worker[EmailArgs])`` receives ``Job[EmailArgs]``. ``work`` may be
    ``async def``. Optional methods, used when defined: ``classify(exc)``,
    ``next_retry(job, error)``, ``timeout(job)`` and ``defaults()``.
    """

    kind: ClassVar[str]

    def work(self, job: Job[A]) -> Result | None:
        raise NotImplementedError

    def classify(self, exc: BaseException) -> ErrorClass | None:
        """Classify a failure of ``work``; None defers to plugins, then to transient."""
        return None

    def next_retry(self, job: Job[A], error: BaseException) -> timedelta | None:
        """The delay before the next attempt; None uses the runner's backoff."""
        return None

    def timeout(self, job: Job[A]) -> timedelta | None:
        """How long one attempt may run; None falls back to the runner's default."""
        return None

    def defaults(self) -> InsertOpts | None:
        """Insert options applied to this kind's jobs when the client knows the registry."""
        return None


@attrs.frozen
class Registered:
    """A registered worker with what dispatch needs to know about it."""

    kind: str
    worker: Any
    args_type: Any
    is_async: bool

    def call(self, name: str, *args: Any) -> Any:
        """Call an optional worker method, None when the worker lacks it."""
        method = getattr(self.worker, name, None)
        return None if method is None else method(*args)


class _FunctionWorker:
    """Adapts ``@registry.worker`` functions to the worker protocol."""

    def __init__(self, kind: str, fn: Callable[..., Any]) -> None:
        self.kind = kind
        self.fn = fn

    def work(self, job: Job[Any]) -> Any:
        return self.fn(job)


class Registry:
    """Kind → worker. Registration is not thread-safe; lookups are."""

    def __init__(self) -> None:
        self._workers: dict[str, Registered] = {}

    def register(self, worker: Any, *, kind: str | None = None) -> Any:
        """Register a worker instance (or a class, which is instantiated); returns it."""
        if inspect.isclass(worker):
            worker = worker()
        name = kind or getattr(worker, "kind", None)
        if not isinstance(name, str) or not name:
            raise ValidationError("kind", f"is missing: {type(worker).__qualname__} has no 'kind'")
        if name in self._workers:
            raise DuplicateKind(name)
        work = getattr(worker, "work", None)
        if not callable(work):
            raise ValidationError("kind", f"{name!r}: worker {type(worker).__qualname__} has no work() method")
        target = worker.fn if isinstance(worker, _FunctionWorker) else work
        self._workers[name] = Registered(
            kind=name, worker=worker, args_type=_args_type(worker), is_async=inspect.iscoroutinefunction(target)
        )
        return worker

    def worker(self, kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate ``fn(job: Job[A])`` as the worker of ``kind``; A is read from the annotation."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register(_FunctionWorker(kind, fn))
            return fn

        return decorate

    def load_plugins(self, pm: pluggy.PluginManager | None = None, config: Any = None) -> Registry:
        """Let every plugin's ``flywheel_register_workers`` add its kinds; returns self.

        ``config`` (a loaded ``flywheel.toml``, or None) is handed to the plugins, e.g. so
        the command workers read ``[runtime] env_allowlist``.
        """
        from flywheel.plugins import resolve

        resolve(pm).hook.flywheel_register_workers(registry=self, config=config)
        return self

    def get(self, kind: str) -> Registered:
        try:
            return self._workers[kind]
        except KeyError:
            raise UnknownKind(kind) from None

    def find(self, kind: str) -> Registered | None:
        return self._workers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._workers)

    def __contains__(self, kind: object) -> bool:
        return kind in self._workers

    def __iter__(self) -> Iterator[Registered]:
        return iter(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)


def _args_type(worker: Any) -> Any:
    """The ``A`` of a worker: ``Worker[A]`` base, ``args_type`` attribute, or ``Job[A]`` annotation."""
    explicit = getattr(worker, "args_type", None)
    if explicit is not None:
        return explicit
    if isinstance(worker, _FunctionWorker):
        return _annotation_arg(worker.fn)
    for base in getattr(type(worker), "__orig_bases__", ()):
        if get_origin(base) is Worker and get_args(base):
            arg = get_args(base)[0]
            return None if isinstance(arg, TypeVar) else arg
    return _annotation_arg(worker.work)


def _annotation_arg(fn: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an unresolvable annotation: fall back to plain JSON
        return None
    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "return")]
    if not params:
        return None
    hint = hints.get(params[0])
    if get_origin(hint) is Job and get_args(hint):
        arg = get_args(hint)[0]
        return None if isinstance(arg, TypeVar) or arg is Any else arg
    return None
