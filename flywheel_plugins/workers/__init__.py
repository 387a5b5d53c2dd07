"""The built-in workers: ``exec``, ``shell``, ``python``, ``mage`` and ``http``.

Each is one plugin (entry points of the same names), so any of them can be blocked with
``FLYWHEEL_DISABLE_PLUGINS``. A plugin module (``exec.py``, …) holds only its hooks; the
worker itself (``exec_worker.py``, …) is imported when the hooks are first called, so
loading the plugins (every ``flywheel`` command does) costs nothing. The worker's names
(``ExecArgs``, ``ExecWorker``, …) are reachable from the plugin module too. Their args use
go-flywheel's JSON field names, so a Go and a Python node can run each other's jobs. See
docs/workers.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from flywheel.plugins import hookimpl


def lazy_worker_plugin(kind: str, module: str) -> tuple[Callable[..., None], Callable[[], dict[str, Any]],
                                                         Callable[[str], Any]]:
    """The two hooks and the module ``__getattr__`` of the plugin for ``kind``, whose code is ``module``.

    ``module`` defines ``make_worker(config)`` and ``from_table(table)``; it is imported on
    the first hook call (or the first attribute asked of the plugin module), not before.
    """

    def impl() -> Any:
        return importlib.import_module(module)

    @hookimpl
    def flywheel_register_workers(registry: Any, config: Any) -> None:
        registry.register(impl().make_worker(config))

    def from_table(table: Mapping[str, Any]) -> Any:
        return impl().from_table(table)

    @hookimpl
    def flywheel_worker_types() -> dict[str, Any]:
        return {kind: from_table}

    def module_getattr(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(impl(), name)

    return flywheel_register_workers, flywheel_worker_types, module_getattr
