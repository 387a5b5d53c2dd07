"""The node: one process's runners, its scheduler and its plugin services, run with one call.

``Node.run()`` starts the services that plugins return from ``flywheel_services(node)``
(in order), the scheduler and every runner (each on its own thread), then blocks. When
``stop()`` is called, or SIGINT/SIGTERM arrives (handlers are installed only when ``run``
is on the main thread), the node drains:

1. every runner stops claiming;
2. in-flight jobs get up to ``drain_timeout`` to finish (None waits for them all), and
   every outcome that finishes is committed;
3. the scheduler and the services stop (services in reverse order);
4. jobs still running are released: their leases are dropped and their ``started`` runs
   marked ``crashed``, so another node can claim them at once instead of waiting for the
   lease to expire. Their threads cannot be interrupted (Python cannot stop a thread);
   whatever they return is dropped, and they do not hold up interpreter exit. Attempts
   whose worker had returned by then are not released: their finalisation is committed
   first (given up to a lease, at most ``FINALIZE_GRACE``), so finished work is kept.

A second signal exits the process at once (``os._exit(1)``); one that arrives within
``SIGNAL_REPEAT_WINDOW`` (1 s) of the first is taken as the same stop delivered twice.
A component that fails (a runner or the scheduler raising, a service failing to start) tears
the node down the same way; ``run()`` then logs the error and re-raises it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flywheel.durations import remaining, to_timedelta
from flywheel.errors import ValidationError, one_line
from flywheel.plugins import plugin_services, resolve
from flywheel.runtime.node_config import HealthConfig, RunnerConfig, SchedulerConfig
from flywheel.runtime.runner import FINALIZE_GRACE

if TYPE_CHECKING:
    import pluggy

    from flywheel.config import Config
    from flywheel.registry import Registry
    from flywheel.runtime.runner import Runner
    from flywheel.scheduling.scheduler import Scheduler
    from flywheel.storage.db import Database

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: a repeat of the stop signal within this many seconds is the same stop delivered twice
#: (``timeout`` signals the child and then its process group), not an operator's second signal
SIGNAL_REPEAT_WINDOW = 1.0
_JOIN_GRACE_S = 1.0


@runtime_checkable
class Service(Protocol):
    """A long-running part of a node returned by ``flywheel_services``.

    ``start()`` returns once the service runs (raising if it cannot start); ``stop()``
    returns once it stopped. A service that fails later calls ``node.fail(error)``.
    """

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Node:
    """Runs runners, an optional scheduler and plugin services; see the module docstring."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        runners: Sequence[RunnerConfig] | None = None,
        scheduler: SchedulerConfig | None = SchedulerConfig(),  # frozen: one default shared safely
        health: HealthConfig = HealthConfig(),
        drain_timeout: timedelta | float | None = None,
        pm: pluggy.PluginManager | None = None,
        logger: logging.Logger | None = None,
        config: Config | None = None,
    ) -> None:
        configs = [RunnerConfig()] if runners is None else list(runners)
        if not configs:
            raise ValidationError("runners", "a node needs at least one runner")
        self.db = db
        self.registry = registry
        self.pm = resolve(pm) if pm is not None else db.pm
        self.health = health
        self.config = config  # what `flywheel serve` loaded (service plugins read it), or None
        self.drain_timeout = to_timedelta(drain_timeout, field="drain_timeout")
        if self.drain_timeout is not None and self.drain_timeout < timedelta(0):
            raise ValidationError("drain_timeout", "must not be negative")
        self.log = logger or logging.getLogger("flywheel.node")
        self.runners: list[Runner] = [self._build_runner(i, c) for i, c in enumerate(configs)]
        self.scheduler: Scheduler | None = None if scheduler is None else scheduler.build(db, pm=self.pm)
        self.services: list[Service] = []
        self._stop_requested = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._maintenance_stop = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._signalled: float | None = None  # monotonic time of the first stop signal
        self._started = False

    def _build_runner(self, index: int, config: RunnerConfig) -> Runner:
        try:
            return config.build(self.db, self.registry, pm=self.pm)
        except ValidationError as exc:
            raise ValidationError(exc.field, f"runner[{index}]: {exc.message}") from exc

    # -- public API --------------------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop` or a signal, drain, and return; re-raise a component's failure."""
        if self._started:
            raise RuntimeError("a node runs once; build a new one")
        self._started = True
        restore = self._install_signal_handlers()
        try:
            self._run()
        finally:
            restore()
        if self._error is not None:
            self.log.error("flywheel: node stopped with error: %s", one_line(self._error))
            raise self._error
        self.log.info("flywheel: node drained and stopped")

    def stop(self) -> None:
        """Ask :meth:`run` to drain and return (idempotent, callable from any thread)."""
        self._stop_requested.set()
        self._wake.set()

    def fail(self, error: BaseException, component: str = "service") -> None:
        """Report a component's failure: the node is torn down and ``run()`` re-raises ``error``."""
        with self._error_lock:
            first = self._error is None
            if first:
                self._error = error
        if first:
            self.log.error("flywheel: node %s failed; stopping the node", component, exc_info=error)
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once the node has begun to drain (a health service reports not-ready then)."""
        return self._stopping.is_set()

    # -- lifecycle ---------------------------------------------------------------

    def _run(self) -> None:
        context = contextvars.copy_context()
        started: list[Service] = []
        runner_threads: list[threading.Thread] = []
        scheduler_thread: threading.Thread | None = None
        try:
            for service in self._collect_services():
                service.start()
                started.append(service)
            if self.scheduler is not None:
                scheduler_thread = self._spawn(context, "scheduler", self.scheduler.run, self._maintenance_stop)
            for index, runner in enumerate(self.runners):
                runner_threads.append(self._spawn(context, f"runner[{index}]", runner.run, None))
            self.log.info("flywheel: node started", extra={
                "action": "node_started", "runners": len(self.runners), "scheduler": self.scheduler is not None,
                "health_addr": self.health.addr, "services": len(started)})
            while not self._wake.wait(0.25):
                pass
        except BaseException as exc:  # a service that cannot start, or a bug here: still drain
            self.fail(exc, "start-up")
        finally:
            self._teardown(runner_threads, scheduler_thread, started)

    def _collect_services(self) -> list[Service]:
        services: list[Service] = []
        for result in plugin_services(self.pm, self):
            if result is None:
                continue
            for service in result if isinstance(result, Iterable) else [result]:
                if not (callable(getattr(service, "start", None)) and callable(getattr(service, "stop", None))):
                    raise TypeError(f"flywheel_services returned {service!r}, which has no start()/stop()")
                services.append(service)
        self.services = services
        return services

    def _spawn(self, context: contextvars.Context, name: str, target: Callable[..., Any],
               stop_event: threading.Event | None) -> threading.Thread:
        def component() -> None:
            try:
                target(stop_event) if stop_event is not None else target()
            except BaseException as exc:
                self.fail(exc, name)
                return
            if not self._stopping.is_set():
                self.fail(RuntimeError(f"flywheel: node {name} stopped unexpectedly"), name)

        # daemon, as are a runner's worker threads: a job stuck past the drain deadline
        # cannot keep the process alive.
        thread = threading.Thread(target=context.copy().run, args=(component,), name=f"flywheel-{name}", daemon=True)
        thread.start()
        return thread

    def _teardown(self, runner_threads: list[threading.Thread], scheduler_thread: threading.Thread | None,
                  services: list[Service]) -> None:
        self._stopping.set()
        deadline = None if self.drain_timeout is None else time.monotonic() + self.drain_timeout.total_seconds()
        if runner_threads:
            self.log.info("flywheel: node draining", extra={
                "action": "node_draining", "in_flight": sum(r.in_flight for r in self.runners),
                "drain_timeout": None if self.drain_timeout is None else self.drain_timeout.total_seconds()})
        for runner in self.runners:
            runner.stop()
        for runner in self.runners[: len(runner_threads)]:
            runner.wait_idle(remaining(deadline))
        for runner, thread in zip(self.runners, runner_threads, strict=False):
            if not runner.in_flight:  # drained: it returns as soon as its last commits are done
                thread.join(remaining(deadline, grace=_JOIN_GRACE_S))
        self._maintenance_stop.set()
        if scheduler_thread is not None:
            scheduler_thread.join(remaining(deadline, grace=_JOIN_GRACE_S))
        for service in reversed(services):
            try:
                service.stop()
            except Exception:
                self.log.exception("flywheel: stopping service %r failed", service)
        self._release_stuck()

    def _release_stuck(self) -> None:
        """Hand jobs still running after the drain deadline back to the queue at once.

        Attempts that already returned are committed instead (each runner's finaliser
        still runs), waited for up to a lease (at most ``FINALIZE_GRACE``).
        """
        for index, runner in enumerate(self.runners):
            if not runner.in_flight:
                continue
            try:
                released = runner.release_in_flight()
            except Exception:
                self.log.exception("flywheel: releasing runner[%d]'s jobs failed; the sweep will recover them",
                                   index)
                released = 0
            if not runner.wait_idle(min(FINALIZE_GRACE, runner.lease).total_seconds()):
                self.log.warning("flywheel: runner[%d]'s finished jobs are not committed yet; the sweep will "
                                 "recover them", index)
            self.log.warning(
                "flywheel: node drain timed out with jobs still in flight; released %d for another node", released,
                extra={"action": "node_drain_timeout", "runner": index, "in_flight": runner.in_flight,
                       "released": released,
                       "drain_timeout": None if self.drain_timeout is None else self.drain_timeout.total_seconds()})

    # -- signals -----------------------------------------------------------------

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self._signalled is not None:
            if now - self._signalled < SIGNAL_REPEAT_WINDOW:
                return  # the same stop delivered twice (timeout(1), a process-group kill): keep draining
            self.log.critical("flywheel: second %s, exiting immediately without draining", name)
            _flush_logs()
            os._exit(1)
        self._signalled = now
        self.log.warning("flywheel: %s received, draining (send it again to exit at once)", name)
        self.stop()


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()


__all__ = ["HealthConfig", "Node", "RunnerConfig", "SchedulerConfig", "Service"]
