"""The ``health`` plugin: a node's HTTP probes (``/healthz``, ``/readyz``) and ``/metrics``.

Only the hook lives here: the server (:mod:`flywheel_plugins.health.server`, on the
stdlib's ``http.server``) is imported when a node with ``health.addr`` starts, so loading
the plugin (every ``flywheel`` command does) costs nothing. Its names (``HealthServer``,
``HealthServerError``, ``parse_addr``, ``readiness``) are reachable from here too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel.runtime.node import Node


@hookimpl
def flywheel_services(node: Node) -> Any:
    """A health server for a node with ``health.addr`` set; nothing otherwise."""
    if not node.health.addr:
        return None
    from flywheel_plugins.health.server import HealthServer

    return HealthServer(node, node.health.addr)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module("flywheel_plugins.health.server"), name)
