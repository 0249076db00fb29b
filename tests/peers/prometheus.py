"""A real Prometheus server on 127.0.0.1 that accepts remote_write (Debian package ``prometheus``).

Usable from pytest fixtures and from bench scripts::

    with Prometheus(tmp_path) as prom:
        prom.write_url                        # http://127.0.0.1:<port>/api/v1/write
        prom.samples('wattsight_power_watts{probe="a.b"}')   # [(t_ms, value), ...] of every raw sample
        prom.stop(); prom.start()             # down, then up again on the SAME port and storage

It runs with ``--web.enable-remote-write-receiver``, no scrape job, its TSDB in ``folder/data``
(kept across ``stop()``/``start()``, as a real server's disk is).  ``start()`` waits for
``/-/ready``; queries poll, never sleep for a fixed time.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

import httpx

from ._common import PeerMissing, free_port, http_answers, stop_process, wait_until


class Prometheus:
    """A Prometheus of our own: ``url`` (API), ``write_url`` (remote_write receiver)."""

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.log = self.folder / "prometheus.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def start(self, timeout: float = 60.0) -> Prometheus:
        exe = shutil.which("prometheus")
        if exe is None:
            raise PeerMissing("prometheus is not installed (Debian package prometheus)")
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "prometheus.yml"
        conf.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
        self._proc = subprocess.Popen(
            [exe, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={self.folder / 'data'}", "--web.enable-remote-write-receiver",
             "--storage.tsdb.retention.time=100y", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_until(http_answers(f"{self.url}/-/ready", 200), timeout, f"prometheus on {self.port}",
                   self._proc, output=self.output, cleanup=self.stop)
        return self

    def stop(self) -> None:
        stop_process(self._proc, 30)
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    # -- queries -------------------------------------------------------------------------
    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """``/api/v1/query`` result (a list of series) at ``at`` (epoch seconds, default now)."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        r = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query {expr!r}: HTTP {r.status_code} {body}")
        return body["data"]["result"]

    def samples(self, selector: str, at_ms: int | None = None, window: str = "1d") -> dict:
        """Every raw sample of the series matching ``selector`` within ``window`` before ``at_ms``:
        ``{frozenset(labels.items()): [(t_ms, value), ...]}``."""
        at = (at_ms if at_ms is not None else time.time() * 1000 + 60_000) / 1000
        out = {}
        for s in self.query(f"{selector}[{window}]", at):
            out[frozenset(s["metric"].items())] = [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
        return out

    def wait_samples(self, selector: str, count: int, timeout: float = 30.0, **kw) -> dict:
        """:meth:`samples` once they number at least ``count`` in all (polled)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.samples(selector, **kw)
            if sum(len(v) for v in got.values()) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
