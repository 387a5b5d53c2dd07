"""The ``python`` worker plugin: a script, ``-m module`` or ``-c`` snippet, by default on this interpreter.

Only the hooks live here; the worker is :mod:`flywheel_plugins.workers.python_worker`,
imported on first use (its names are reachable from this module too).
"""

from flywheel_plugins.workers import lazy_worker_plugin

flywheel_register_workers, flywheel_worker_types, __getattr__ = lazy_worker_plugin(
    "python", "flywheel_plugins.workers.python_worker")
