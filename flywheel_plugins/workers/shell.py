"""The ``shell`` worker plugin: a script file or an inline snippet, run by ``sh`` (or ``shell``).

Only the hooks live here; the worker is :mod:`flywheel_plugins.workers.shell_worker`,
imported on first use (its names are reachable from this module too).
"""

from flywheel_plugins.workers import lazy_worker_plugin

flywheel_register_workers, flywheel_worker_types, __getattr__ = lazy_worker_plugin(
    "shell", "flywheel_plugins.workers.shell_worker")
