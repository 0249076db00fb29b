"""Latency from a sample's measurement to its being visible in the REST API (p50, p99).

``wattsight run`` hosts drivers, bus, store and API in one process (the embedded default);
a client polls ``/api/v1/series`` for the newest sample of one probe and, each time a new one
appears, records now - measured_at.  Polling adds at most one poll interval (~2-5 ms here).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import numpy as np
from figures import emit_json


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_latency(tmp: Path, samples: int) -> None:
    from e2e import _config, _spawn

    listen = f"127.0.0.1:{_free_port()}"
    (tmp / "lat").mkdir()
    cfg = _config(tmp / "lat", f"ipc://{tmp}/lat-bus", count=100, burst=1, period=0.1, listen=listen)
    proc = _spawn(["-c", str(cfg)], tmp / "lat", "latency.log")
    url = f"http://{listen}/api/v1/series"
    lat: list[float] = []
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 60
            last = None
            while len(lat) < samples and time.monotonic() < deadline:
                try:
                    r = client.get(url, params={"probes": "bench.node-1", "metric": "power",
                                                "from": "-2s", "resolution": "raw"})
                except httpx.HTTPError:
                    time.sleep(0.1)
                    continue
                now = time.time()
                if r.status_code != 200:
                    time.sleep(0.1)
                    continue
                pts = r.json()["series"][0]["points"]
                if pts and pts[-1][0] != last:
                    if last is not None:  # the first one seen may be old
                        lat.append(now - pts[-1][0])
                    last = pts[-1][0]
                time.sleep(0.002)
    finally:
        proc.terminate()
        proc.wait(30)
    if not lat:
        raise SystemExit(f"no sample became visible; see {tmp / 'lat' / 'latency.log'}")
    a = np.asarray(lat) * 1000
    note = "read -> bus -> store -> API, one process, 100 probes at 10 Hz, client polling every ~2 ms"
    emit_json("latency_p50", float(np.percentile(a, 50)), "ms", samples=len(a), note=note)
    emit_json("latency_p99", float(np.percentile(a, 99)), "ms", samples=len(a), note=note)
