"""The ``mage`` worker plugin: run build targets with a mage binary (default ``magex``).

Only the hooks live here; the worker is :mod:`flywheel_plugins.workers.mage_worker`,
imported on first use (its names are reachable from this module too).
"""

from flywheel_plugins.workers import lazy_worker_plugin

flywheel_register_workers, flywheel_worker_types, __getattr__ = lazy_worker_plugin(
    "mage", "flywheel_plugins.workers.mage_worker")
