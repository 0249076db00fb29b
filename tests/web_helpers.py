"""Drive the web UI in real headless Chromium (Debian ``/usr/bin/chromium`` through Playwright).

- :func:`launch` starts the browser, or skips the test when Chromium or Playwright is missing;
- :func:`new_page` opens a page in a fresh 1280x800 context of that browser;
- :func:`configured` starts ``wattsight run -c`` on a configuration written for the test;
- :func:`wait_samples` waits until every probe has had some power samples;
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
from procs import Wattsight, free_port

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


@contextmanager
def new_page(browser, **context):
    """A page in a fresh 1280x800 browser context (``context``: more context options), closed on exit."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, **context)
    page = ctx.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        yield page
    finally:
        ctx.close()


@contextmanager
def configured(tmp: Path, site: str, secret: str, more: str = ""):
    """``wattsight run -c`` on a configuration of ``site`` (its own bus, store and API port), with
    ``more`` appended after the ``[api]`` listen line (more API keys, drivers, probes); ready on
    entry, stopped on exit."""
    bus = tmp / "bus"
    bus.mkdir(mode=0o700)
    port = free_port()
    config = tmp / f"{site}.toml"
    config.write_text(f"""site = "{site}"
[bus]
endpoint = "ipc://{bus}/bus"
secret = "{secret}"
[store]
path = "{tmp / 'store'}"
[api]
listen = "127.0.0.1:{port}"
{more}""")
    ws = Wattsight(["-c", str(config)], tmp, listen=f"127.0.0.1:{port}")
    try:
        ws.wait_ready()
        yield ws
    finally:
        ws.stop()


def wait_samples(ws: Wattsight, n: int, *, but: str | None = None) -> None:
    """Wait until every probe (but ``but``) has had ``n`` power samples."""
    ws.wait_for(lambda: all((p["last"] or {}).get("power", {}).get("samples", 0) >= n
                            for p in ws.get("/api/v1/probes")["probes"] if p["id"] != but),
                what=f"{n} samples per probe")


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
