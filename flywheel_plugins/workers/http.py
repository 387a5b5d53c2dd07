"""The ``http`` worker plugin: one HTTP request per attempt, classified by what the server said.

Only the hooks live here; the worker is :mod:`flywheel_plugins.workers.http_worker`,
imported on first use (its names are reachable from this module too).
"""

from flywheel_plugins.workers import lazy_worker_plugin

flywheel_register_workers, flywheel_worker_types, __getattr__ = lazy_worker_plugin(
    "http", "flywheel_plugins.workers.http_worker")
