"""A headless Chromium driven by Playwright, for the browser tests and the screenshots.

Playwright's own browser download is not used: it drives the system's Chromium (Debian's
``chromium`` package, ``/usr/bin/chromium``, or ``FLYWHEEL_CHROMIUM``). Playwright is a
test-time dependency (the ``dev`` extra); the dashboard itself never imports this module.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM_ENV = "FLYWHEEL_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: No GPU, no sandbox (containers), and nothing that reaches the network on its own.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = "pip install playwright (the dev extra) and apt-get install -y chromium"


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when there is none."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    if os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def unavailable() -> str | None:
    """Why no browser can be driven here (None when one can)."""
    try:
        import playwright.sync_api  # noqa: F401 - only whether it imports
    except ImportError:
        return f"playwright is not installed ({INSTALL_HINT})"
    if chromium_path() is None:
        return f"no Chromium at {os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM} ({INSTALL_HINT})"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright ``Browser``), closed on exit."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
