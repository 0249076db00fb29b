"""Drive the web UI in real headless Chromium (Debian ``/usr/bin/chromium`` through Playwright).

- :func:`launch` starts the browser, or skips the test when Chromium or Playwright is missing;
- :class:`Watch` collects what a page logs: console errors, uncaught exceptions, failed requests
  and every URL it asked for (to check that nothing leaves 127.0.0.1);
- :func:`ready` waits until a page has drawn (``window.wattsight.ready``) and its legend is in;
- :func:`shot` saves a screenshot under ``$WATTSIGHT_SCREENSHOTS`` (default ``build/screenshots``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
#: Generous: two cores shared by several test runs; these bound waits, they are not assertions on speed.
WAIT_MS = 30_000


@contextmanager
def launch():
    """A headless Chromium browser; skips when Debian's chromium or Playwright is absent."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (test.sh installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Watch:
    """What a page did: console errors, page errors, failed requests and the URLs it asked for."""

    def __init__(self, page) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console.append(f"{m.text} @ {m.location}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("requestfailed", self._failed)
        page.on("request", lambda r: self.urls.append(r.url))

    def _failed(self, request) -> None:
        # an event stream cut when the page goes away is normal, not a failure
        if "/api/v1/live" in request.url and "ERR_ABORTED" in (request.failure or ""):
            return
        self.failed.append(f"{request.url}: {request.failure}")

    def foreign(self) -> list[str]:
        """URLs that are not on 127.0.0.1 (data: and blob: URLs stay in the page)."""
        out = []
        for u in self.urls:
            parts = urlsplit(u)
            if parts.scheme in ("data", "blob"):
                continue
            if parts.hostname != "127.0.0.1":
                out.append(u)
        return out

    def assert_clean(self) -> None:
        assert not self.errors, f"uncaught errors: {self.errors}"
        assert not self.console, f"console errors: {self.console}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.foreign(), f"requests leaving 127.0.0.1: {self.foreign()}"


def ready(page, *, legend: bool = True) -> dict:
    """Wait until the page has drawn its graphs (and its legend), and return ``window.wattsight``."""
    page.wait_for_function("window.wattsight && window.wattsight.ready", timeout=WAIT_MS)
    if legend and page.locator(".legend-area").count():
        page.wait_for_function("!document.querySelector('.legend-area .loading')", timeout=WAIT_MS)
    return page.evaluate("window.wattsight")


def state(page) -> dict:
    return page.evaluate("window.wattsight")


def screenshots_dir() -> Path:
    """Where screenshots go: ``$WATTSIGHT_SCREENSHOTS`` or ``build/screenshots`` of the checkout."""
    d = Path(os.environ.get("WATTSIGHT_SCREENSHOTS") or ROOT / "build" / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def shot(page, name: str) -> Path:
    """A full-page screenshot ``<name>.png``; its path."""
    path = screenshots_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def no_overflow(page) -> tuple[int, int]:
    """(document width, viewport width): equal when nothing sticks out sideways."""
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
