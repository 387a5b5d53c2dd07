"""Finding, loading, blocking and calling flywheel plugins.

The default manager is built on first use (importing flywheel loads nothing). Every
``Client``, ``Runner`` and ``connect()`` takes ``pm=`` to use another one instead.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import pluggy

from flywheel import hookspecs

if TYPE_CHECKING:
    from flywheel.enums import ErrorClass
    from flywheel.jobs import Job
    from flywheel.runtime.node import Node
    from flywheel.storage.driver import Driver

ENTRY_POINT_GROUP = "flywheel"
DISABLE_ENV = "FLYWHEEL_DISABLE_PLUGINS"

hookimpl = pluggy.HookimplMarker("flywheel")
logger = logging.getLogger(__name__)

_default: pluggy.PluginManager | None = None
_default_lock = threading.Lock()


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    disabled: Iterable[str] | None = None,
    plugins: Iterable[object] = (),
) -> pluggy.PluginManager:
    """Build a fresh manager: specs, blocked names, installed plugins, then ``plugins``.

    ``disabled`` defaults to the names in ``FLYWHEEL_DISABLE_PLUGINS``. A plugin that
    implements a hook that does not exist fails here (``check_pending``).
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in disabled_from_env() if disabled is None else disabled:
        pm.set_blocked(name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide manager, loading the installed plugins on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_plugin_manager()
        return _default


def resolve(pm: pluggy.PluginManager | None) -> pluggy.PluginManager:
    """``pm`` if given, else the default manager."""
    return pm if pm is not None else get_plugin_manager()


def register(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object on the default manager; it takes effect at once."""
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except Exception:
        pm.unregister(plugin)  # a broken plugin must not poison the default manager
        raise
    return registered


def unregister(plugin: object) -> object | None:
    """Remove a plugin object from the default manager."""
    return get_plugin_manager().unregister(plugin)


def disabled_from_env() -> list[str]:
    """Plugin names listed in ``FLYWHEEL_DISABLE_PLUGINS`` (comma-separated)."""
    return [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]


# Typed façade: the only places that call pm.hook.* directly.


def find_driver(pm: pluggy.PluginManager, url: str) -> Driver:
    """The driver for ``url``; an unknown scheme names the schemes the loaded drivers know."""
    driver: Driver | None = pm.hook.flywheel_driver(url=url)
    if driver is None:
        scheme = url.partition(":")[0] or url
        known = sorted({s for plugin in pm.get_plugins() for s in getattr(plugin, "URL_SCHEMES", ())})
        hint = ", ".join(f"{s}://" for s in known) or "none (is flywheel installed, or every driver plugin blocked?)"
        raise ValueError(f"flywheel: no driver for {scheme!r} URLs; the loaded drivers understand: {hint}")
    return driver


def classify_error(pm: pluggy.PluginManager, error: BaseException, job: Job[Any]) -> ErrorClass | None:
    """Ask the ``flywheel_classify_error`` plugins; a plugin that raises is logged and skipped."""
    for impl in reversed(pm.hook.flywheel_classify_error.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        kwargs = {"error": error, "job": job}
        try:
            result = impl.function(*(kwargs[a] for a in impl.argnames))
        except Exception:
            logger.exception("classifier %r failed", impl.plugin_name)
            continue
        if result is not None:
            return cast("ErrorClass", result)
    return None


def plugin_services(pm: pluggy.PluginManager, node: Node) -> list[Any]:
    """What every ``flywheel_services`` implementation returned (None results dropped)."""
    return [result for result in pm.hook.flywheel_services(node=node) if result is not None]


def emit(pm: pluggy.PluginManager, hook_name: str, **kwargs: object) -> None:
    """Call every observer of ``hook_name``; one that raises is logged and skipped."""
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):  # pluggy's own LIFO order
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        except Exception:
            logger.exception("observer %r failed in %s", impl.plugin_name, hook_name)


def has_observers(pm: pluggy.PluginManager, hook_name: str) -> bool:
    """Whether any plugin implements ``hook_name`` (lets the hot path skip building events)."""
    return bool(getattr(pm.hook, hook_name).get_hookimpls())
