"""SQLite driver plugin: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` and ``sqlite://:memory:``.

The driver itself is :mod:`flywheel_plugins.sqlite.driver`, imported when a SQLite URL is
first opened, so loading the plugin (every ``flywheel`` command does) costs nothing. Its
names (``SQLiteDriver``, ``path_from_url``, …) are reachable from here too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flywheel.plugins import hookimpl

if TYPE_CHECKING:
    from flywheel.storage.driver import Driver

URL_SCHEMES = ("sqlite",)


@hookimpl(trylast=True)
def flywheel_driver(url: str) -> Driver | None:
    """Open ``sqlite:`` URLs."""
    if not url.startswith("sqlite:"):
        return None
    from flywheel_plugins.sqlite.driver import SQLiteDriver

    return SQLiteDriver(url)


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module("flywheel_plugins.sqlite.driver"), name)
