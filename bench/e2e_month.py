"""Energy over a month of 100 probes at 1 Hz (259 M power samples), asked of the REST API.

The month is written into a real store day by day (``handle`` in 50k-sample batches, then
``flush``), then ``GET /api/v1/energy`` for all 100 probes over the 30 days is timed
(best of 3, after one warm-up call) through the real FastAPI app.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import T0_MS, batches, pdu_trace
from figures import emit_json

from wattsight.config import ApiConfig, StoreConfig
from wattsight.consumers.store import Store

DAY_MS = 86_400_000


def _power_only(day: int, probes: int):
    trace = pdu_trace(probes, 86_400, seed=day, start_ms=T0_MS + day * DAY_MS)
    power = np.asarray([s.metric == "power" for s in trace.series])
    return trace.select(power[trace.sidx])


def bench_month(tmp: Path, days: int, probes: int) -> None:
    from fastapi.testclient import TestClient

    from wattsight.consumers.api.app import ApiContext, create_app
    from wattsight.sample import Topology

    store = Store(StoreConfig(path=tmp / "month-store", flush_interval=3600.0))
    total, spent = 0, 0.0
    try:
        for day in range(days):
            part = _power_only(day, probes)
            t = time.perf_counter()
            for b in batches(part, 50_000):
                store.handle(b)
            store.flush()
            spent += time.perf_counter() - t
            total += len(part)
            print(f"  month: day {day + 1}/{days} written ({total / 1e6:.0f} M samples)", flush=True)
        emit_json("bulk_ingest_rate", total / spent, "samples/s", samples=total,
                  note="handle() in 50k batches + flush per day, in-process")
        client = TestClient(create_app(ApiContext(store=store, topology=Topology(), config=ApiConfig(),
                                                  runner_state=None, bus_stats=None)))
        params = {"probes": ",".join(f"bench.pdu-{i}" for i in range(probes)),
                  "from": T0_MS / 1000, "to": (T0_MS + days * DAY_MS) / 1000}
        times = []
        for _ in range(4):
            t = time.perf_counter()
            r = client.get("/api/v1/energy", params=params)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        cov = np.mean([p["coverage"] for p in r.json()["probes"].values()])
        emit_json("energy_month_query", min(times[1:]), "s", probes=probes, days=days, samples=total,
                  mean_coverage=round(float(cov), 4), note="GET /api/v1/energy, best of 3 after a warm-up")
        disk = store.stats()
        emit_json("month_bytes_per_sample", disk["bytes_on_disk"] / total, "B/sample", samples=total,
                  note="power only, 1 W / 0.1 W resolution, on disk after flush")
    finally:
        store.close()
