"""The ``exec`` worker plugin: run a program with arguments, directly (never through a shell).

Only the hooks live here; the worker is :mod:`flywheel_plugins.workers.exec_worker`,
imported on first use (its names are reachable from this module too).
"""

from flywheel_plugins.workers import lazy_worker_plugin

flywheel_register_workers, flywheel_worker_types, __getattr__ = lazy_worker_plugin(
    "exec", "flywheel_plugins.workers.exec_worker")
