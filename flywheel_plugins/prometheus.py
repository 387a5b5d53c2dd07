"""The ``prometheus`` plugin: go-flywheel's metrics (spec §7.2) and queue-health gauges on prometheus-client.

A node whose health server is on (``HealthConfig(addr=…)`` / ``[runtime] metrics_addr``)
gets a :class:`PrometheusObserver` of its own: a plugin registered on the node's plugin
manager while the node runs, with its own ``CollectorRegistry`` (never the process-wide
default one), which the health server's ``/metrics`` exposes. The counters see every
event of that plugin manager (so, usually, of the process). The queue-health gauges are
sampled from the node's database at each scrape.

Without ``prometheus-client`` the module still imports and the plugin stays quiet; :func:`status`
says how to enable it (``flywheel doctor`` prints it). Label values are bounded: kind,
queue, outcome, error class and executor class, never job ids.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flywheel.enums import JobState
from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel.events import ClaimEvent, FinishEvent, JobEvent, RetryEvent, SupersedeEvent, SweepEvent
    from flywheel.runtime.node import Node
    from flywheel.storage.db import Database

INSTALL_HINT = "pip install 'flywheel-jobs[prometheus]'"
#: go-flywheel's default histogram buckets, in seconds
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

log = logging.getLogger("flywheel.prometheus")
_by_node: weakref.WeakKeyDictionary[Node, PrometheusObserver] = weakref.WeakKeyDictionary()


class PrometheusMissing(ImportError):
    """prometheus-client is not installed."""


def available() -> bool:
    """Whether prometheus-client can be imported (imported only now: loading the plugin stays cheap)."""
    try:
        import prometheus_client  # noqa: F401 - only whether it imports
    except ImportError:  # the optional extra is not installed: stay quiet, say so in status()
        return False
    return True


def status() -> tuple[bool, str]:
    """``(enabled, one line for doctor)``: whether metrics can be served, and how to turn them on."""
    if not available():
        return False, f"prometheus-client is not installed, so /metrics is off: {INSTALL_HINT}"
    import prometheus_client

    version = getattr(prometheus_client, "__version__", None) or _distribution_version()
    return True, (f"prometheus-client {version}: /metrics is served by the health server "
                  "([runtime] metrics_addr or HealthConfig(addr=...))")


def _distribution_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prometheus-client")
    except PackageNotFoundError:
        return "(version unknown)"


def metrics_for(node: Node) -> PrometheusObserver | None:
    """The observer serving ``node``'s ``/metrics``, or None when this plugin is off for it."""
    return _by_node.get(node)


# -- the per-node service --------------------------------------------------------------------


@hookimpl
def flywheel_services(node: Node) -> Any:
    """A metrics observer for a node that serves ``/metrics``; nothing without prometheus-client."""
    if not node.health.addr or not available():
        return None
    observer = PrometheusObserver(db=node.db)
    _by_node[node] = observer
    return _Attached(node, observer)


class _Attached:
    """Registers a node's observer on the node's plugin manager while the node runs."""

    def __init__(self, node: Node, observer: PrometheusObserver) -> None:
        self.node, self.observer = node, observer

    def start(self) -> None:
        self.node.pm.register(self.observer)

    def stop(self) -> None:
        if self.node.pm.is_registered(self.observer):
            self.node.pm.unregister(self.observer)


# -- the observer ---------------------------------------------------------------------------


class PrometheusObserver:
    """A flywheel observer plugin that records spec §7.2's metrics on its own ``registry``.

    Use it outside a node too: ``flywheel.plugins.register(PrometheusObserver(db=db))``
    and serve ``observer.exposition()`` (or ``observer.registry``) yourself. With ``db``,
    the queue-health gauges are sampled from it at each collection.
    """

    def __init__(self, *, registry: Any = None, db: Database | None = None,
                 buckets: tuple[float, ...] = BUCKETS) -> None:
        if not available():
            raise PrometheusMissing(f"flywheel: metrics need prometheus-client: {INSTALL_HINT}")
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        reg, b = self.registry, buckets
        self.claimed = Counter("flywheel_jobs_claimed", "Jobs claimed.", ["executor_class"], registry=reg)
        self.claim_duration = Histogram("flywheel_claim_duration_seconds", "Duration of a non-empty claim.",
                                        ["executor_class", "queue"], buckets=b, registry=reg)
        self.started = Counter("flywheel_jobs_started", "Attempts started.", ["kind", "queue"], registry=reg)
        self.finished = Counter("flywheel_jobs_finished", "Attempts finalised, by outcome.",
                                ["kind", "queue", "outcome"], registry=reg)
        self.job_duration = Histogram("flywheel_job_duration_seconds", "Worker wall time of an attempt.",
                                      ["kind", "outcome"], buckets=b, registry=reg)
        self.finalize_duration = Histogram("flywheel_finalize_duration_seconds",
                                           "Duration of the finalisation commit.", ["kind", "outcome"],
                                           buckets=b, registry=reg)
        self.errored = Counter("flywheel_jobs_errored", "Failed attempts, by error class.",
                               ["kind", "error_class"], registry=reg)
        self.retried = Counter("flywheel_jobs_retried", "Failed attempts scheduled for another try.",
                               ["kind", "error_class"], registry=reg)
        self.superseded = Counter("flywheel_jobs_superseded",
                                  "Attempts that lost their lease; not counted as finished.",
                                  ["kind", "queue"], registry=reg)
        self.discarded = Counter("flywheel_jobs_discarded", "Attempts that discarded their job (failed for good).",
                                 ["kind", "queue"], registry=reg)
        self.sweep_duration = Histogram("flywheel_sweep_duration_seconds", "Duration of a lease-sweep pass.",
                                        buckets=b, registry=reg)
        self.sweep_reclaimed = Counter("flywheel_sweep_reclaimed", "Expired leases recovered by the sweep.",
                                       registry=reg)
        self.sweep_discarded = Counter("flywheel_sweep_discarded",
                                       "Crash-looping jobs discarded by the sweep (also counted as reclaimed).",
                                       registry=reg)
        if db is not None:
            self.registry.register(QueueHealthCollector(db))
        # labelled children by label values: ``labels()`` costs more than the update itself,
        # and these run on the runner's threads for every attempt (bounded: kind x queue x outcome)
        self._start_series: dict[tuple[str, str], Any] = {}
        self._finish_series: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """``(body, content type)`` of this registry for a scrape with the given Accept header."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    @hookimpl
    def flywheel_on_claim(self, event: ClaimEvent) -> None:
        self.claimed.labels(event.executor_class).inc(event.claimed)
        self.claim_duration.labels(event.executor_class, ",".join(event.queues)).observe(
            event.duration.total_seconds())

    @hookimpl
    def flywheel_on_start(self, event: JobEvent) -> None:
        key = (event.kind, event.queue)
        if (started := self._start_series.get(key)) is None:
            started = self._start_series[key] = self.started.labels(*key)
        started.inc()

    @hookimpl
    def flywheel_on_finish(self, event: FinishEvent) -> None:
        key = (event.kind, event.queue, str(event.outcome))
        if (series := self._finish_series.get(key)) is None:
            series = self._finish_series[key] = (self.finished.labels(*key), self.job_duration.labels(key[0], key[2]),
                                                 self.finalize_duration.labels(key[0], key[2]))
        finished, job_duration, finalize_duration = series
        finished.inc()
        job_duration.observe(event.duration.total_seconds())
        finalize_duration.observe(event.finalize_duration.total_seconds())
        if event.error_class is not None:
            self.errored.labels(event.kind, str(event.error_class)).inc()
        if event.state is JobState.DISCARDED:
            self.discarded.labels(event.kind, event.queue).inc()

    @hookimpl
    def flywheel_on_retry(self, event: RetryEvent) -> None:
        self.retried.labels(event.kind, str(event.error_class)).inc()

    @hookimpl
    def flywheel_on_supersede(self, event: SupersedeEvent) -> None:
        self.superseded.labels(event.kind, event.queue).inc()

    @hookimpl
    def flywheel_on_sweep(self, event: SweepEvent) -> None:
        self.sweep_duration.observe(event.duration.total_seconds())
        self.sweep_reclaimed.inc(event.reclaimed)  # 0 too, so the series exists from the first pass
        self.sweep_discarded.inc(event.discarded)


# -- queue health at scrape time ------------------------------------------------------------


class QueueHealthCollector:
    """Samples :func:`flywheel.queue_health` at each scrape, on the scraping thread.

    A failed sample (the database is away) exports ``flywheel_queue_health_up 0`` and no
    other gauge, so the counters are still scraped; it is logged once per outage.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._failing = False
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Any]:
        yield from self._families()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            from flywheel.api.ops import queue_health

            health = queue_health(self.db)
        except Exception as exc:  # a scrape must not fail with the database away
            self._note(exc)
            up = GaugeMetricFamily("flywheel_queue_health_up", "1 when this scrape's queue-health sample succeeded.")
            up.add_metric([], 0)
            yield up
            return
        self._note(None)
        states, ready, inflight, ahead, oldest, up = self._families()
        for state in JobState:
            states.add_metric([state.value], health.counts_by_state.get(state.value, 0))
        ready.add_metric([], health.ready)
        inflight.add_metric([], health.inflight)
        ahead.add_metric([], health.scheduled_ahead)
        oldest.add_metric([], health.oldest_ready_age.total_seconds())
        up.add_metric([], 1)
        yield from (states, ready, inflight, ahead, oldest, up)

    def _families(self) -> tuple[Any, ...]:
        from prometheus_client.core import GaugeMetricFamily

        return (
            GaugeMetricFamily("flywheel_queue_jobs", "Jobs by state.", labels=["state"]),
            GaugeMetricFamily("flywheel_queue_ready", "Jobs claimable now."),
            GaugeMetricFamily("flywheel_queue_inflight", "Jobs running."),
            GaugeMetricFamily("flywheel_queue_scheduled_ahead",
                              "Claimable jobs due later (retries, snoozes, schedules)."),
            GaugeMetricFamily("flywheel_queue_oldest_ready_seconds", "How long the oldest ready job has waited."),
            GaugeMetricFamily("flywheel_queue_health_up", "1 when this scrape's queue-health sample succeeded."),
        )

    def _note(self, error: Exception | None) -> None:
        with self._lock:
            was_failing, self._failing = self._failing, error is not None
        if error is not None and not was_failing:
            log.warning("flywheel: queue health sample for /metrics failed: %s", " ".join(str(error).split()),
                        extra={"action": "metrics_sample_failed"})
        elif error is None and was_failing:
            log.warning("flywheel: queue health sample for /metrics works again", extra={"action": "metrics_sample_ok"})
