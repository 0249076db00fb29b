"""What the web UI's overview costs to open, and how far the live stream is behind the meter (issue 5).

**Overview.** A store of N probes x H hours of 1 Hz power (the trace of bench/store_queries.py,
stored through ``Store.handle`` and flushed every hour of data, so the rollups are maintained as
in production) is served by the real FastAPI app (``create_app``, through ``TestClient``).
Opening the overview on the last day asks for what its page needs:

- ``summary``: ``GET /api/v1/summary`` of every probe (legend: min/max/avg/last, energy, cost;
  totals per site and node);
- ``series``: what the page asks ``GET /api/v1/series`` for (web/static/js/dashboard.js): the 8
  probes of highest mean at ``resolution=auto`` with ``max_points`` = 1,000 (one point per pixel
  of a 1,000 px graph), the others (summed as "others" by the page) at a coarser step, about
  200,000 points in all;
- ``open`` = both; ``graph_png``: ``GET /graph/day/`` rendered (the PNG cache emptied first);
  ``series_hourly_others``: the same with the others at 1 h (the store's 1 h cells);
  ``series_all``: every probe at 1,000 points (what the page avoids), for comparison.

Each is run ``--runs`` times; p50 and max are printed (ms).  Target: the overview opens in < 1 s.

**Live.** A real ``python -m wattsight run --demo`` (8 probes at 1 Hz) is started; the bench
opens ``GET /api/v1/live`` and, for every value received, takes the arrival time minus the
sample's measured time (both from this machine's clock).  p50/p99/max over ``--live-seconds``.
Target: < 2 s behind the meter.

One JSON line per figure (``{"figure", "value", "unit", "engine", ...}``).  ``--quick``: 100 probes
x 2 hours and 10 s of live.  ``--store DIR`` keeps (and reuses) the store.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import T0_MS, emit
from bench.store_queries import HOUR, Trace
from wattsight import timeseries
from wattsight.config import ApiConfig, StoreConfig
from wattsight.consumers.api import ApiContext, create_app
from wattsight.consumers.store import Store
from wattsight.sample import Topology


def build(store: Store, trace: Trace, hours: int) -> int:
    """Store the first ``hours`` of ``trace``, flushing after each hour (segment + rollups); the
    number of samples.  bench/web_page.py builds its store with it too."""
    n = 0
    for h in range(hours):
        batch = trace.hour(h)
        store.handle(batch)
        store.flush()
        store.compact()
        n += len(batch)
    return n


def timed(fn, runs: int) -> tuple[list[float], object]:
    out, times = None, []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times, out


def overview(store: Store, probes: int, hours: int, runs: int, every: bool = True) -> None:
    from fastapi.testclient import TestClient

    from wattsight.web import graphs

    end = T0_MS + hours * HOUR
    start = max(T0_MS, end - 24 * HOUR)
    app = create_app(ApiContext(store=store, topology=Topology(), clock=lambda: end,
                                config=ApiConfig(max_points=1000, price_per_kwh=0.2)))
    client = TestClient(app)
    ids = ",".join(f"bench.pdu-{i}" for i in range(probes))
    span = {"from": start / 1000, "to": end / 1000}

    def get(path: str, **params):
        r = client.get(path, params={**span, **params})
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r

    def summary():
        return get("/api/v1/summary").json()

    top_n = 8

    def series():
        """What the overview page asks for (web/static/js/dashboard.js): the top probes (by their mean
        in the summary) at one bucket per pixel, the others at a coarser step (~200,000 points in all)."""
        ranked = sorted(ranked_ids, key=lambda p: -ranked_ids[p])
        top = get("/api/v1/series", probes=",".join(ranked[:top_n]), resolution="auto").json()
        others = ranked[top_n:]
        if not others:
            return top
        coarse = max(top["step"], timeseries.step_for(start, end, max(1, 200_000 // len(others))) / 1000)
        rest = get("/api/v1/series", probes=",".join(others), resolution=f"{coarse:g}s", agg="avg").json()
        return {"step": [top["step"], rest["step"]], "series": top["series"] + rest["series"]}

    def series_hourly_others():
        """The same with the others at a whole number of hours (the store's 1 h rollup cells)."""
        ranked = sorted(ranked_ids, key=lambda p: -ranked_ids[p])
        top = get("/api/v1/series", probes=",".join(ranked[:top_n]), resolution="auto").json()
        others = ",".join(ranked[top_n:]) or ranked[0]
        rest = get("/api/v1/series", probes=others, resolution="1h", agg="avg").json()
        return {"step": [top["step"], rest["step"]], "series": top["series"] + rest["series"]}

    def series_all():
        return get("/api/v1/series", probes=ids, resolution="auto").json()

    def graph():
        graphs.cache_of(app).__init__()  # a cold cache: the PNG is rendered each run
        return get("/graph/day/").content

    tag = {"probes": probes, "hours": hours, "span_h": (end - start) / HOUR, "runs": runs}
    ranked_ids = {p: e["avg"] or 0.0 for p, e in summary()["probes"].items()}
    results = {}
    queries = [("summary", summary), ("series", series), ("series_hourly_others", series_hourly_others),
               ("graph_png", graph)] + ([("series_all", series_all)] if every else [])
    for name, fn in queries:
        fn()  # warm: imports, first partition reads
        times, out = timed(fn, runs)
        results[name] = times
        extra = {}
        if name == "summary":
            extra = {"probes_in_answer": len(out["probes"]), "kwh": round(out["total"]["kwh"], 3)}
        elif name.startswith("series"):
            extra = {"points": sum(s["count"] for s in out["series"]), "step_s": out["step"]}
        else:
            extra = {"png_bytes": len(out)}
        emit(f"web_overview.{name}.p50", float(np.median(times)), "ms", "embedded+rollups", **tag, **extra)
        emit(f"web_overview.{name}.max", max(times), "ms", "embedded+rollups", **tag)
    for name, part in (("open", "series"), ("open_hourly_others", "series_hourly_others")):
        opened = [a + b for a, b in zip(results["summary"], results[part])]
        p50 = float(np.median(opened))
        emit(f"web_overview.{name}.p50", p50, "ms", "embedded+rollups", target_ms=1000, **tag)
        emit(f"web_overview.{name}.max", max(opened), "ms", "embedded+rollups", target_ms=1000, **tag)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bench/web_page.py uses it too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_lag(seconds: float, tmp: Path) -> None:
    """Start ``wattsight run --demo`` and measure arrival - measured time of every streamed value."""
    port = free_port()
    run = tmp / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run), "PYTHONUNBUFFERED": "1"}
    log = (tmp / "demo.log").open("wb")
    cmd = [sys.executable, "-m", "wattsight", "run", "--demo", "--data-dir", str(tmp / "data"),
           "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # until the API lists the 8 probes with power samples: the stream then follows them all
            try:
                r = httpx.get(url + "/api/v1/probes", timeout=2)
                if r.status_code == 200 and sum("power" in p["metrics"] for p in r.json()["probes"]) >= 8:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"wattsight run --demo did not start: {(tmp / 'demo.log').read_text()}")
            time.sleep(0.2)
        lags = []
        stop = time.monotonic() + seconds
        with httpx.stream("GET", url + "/api/v1/live?metric=power", timeout=30) as r:
            for line in r.iter_lines():
                now_ms = time.time() * 1000
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    for values in event["probes"].values():
                        lags += [now_ms - t for t, v in zip(event["t"], values) if v is not None]
                if time.monotonic() > stop:
                    break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lag = np.array(lags)
    tag = {"probes": 8, "seconds": seconds, "values": len(lag), "target_ms": 2000}
    for q in (50, 99):
        emit(f"web_live.lag.p{q}", float(np.percentile(lag, q)), "ms", "wattsight run --demo", **tag)
    emit("web_live.lag.max", float(lag.max()), "ms", "wattsight run --demo", **tag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 probes x 2 hours, 10 s of live")
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--live-seconds", type=float, default=30.0)
    ap.add_argument("--store", type=Path, help="keep the store here (reused when it holds segments)")
    ap.add_argument("--no-live", action="store_true", help="skip the live-lag measure")
    ap.add_argument("--no-overview", action="store_true", help="skip the overview timings")
    ap.add_argument("--no-all", action="store_true", help="skip series_all (every probe at 1,000 points)")
    args = ap.parse_args()
    probes, hours, live_s = (100, 2, 10.0) if args.quick else (args.probes, args.hours, args.live_seconds)
    with tempfile.TemporaryDirectory(prefix="ws-bench-web-") as tmp:
        if not args.no_overview:
            path = args.store or Path(tmp) / "store"
            reuse = (path / "segments").is_dir() and any((path / "segments").glob("*.parquet"))
            with Store(StoreConfig(path=path, flush_interval=10**6)) as store:
                if not reuse:
                    t = time.perf_counter()
                    n = build(store, Trace(probes), hours)
                    emit("web_overview.build", time.perf_counter() - t, "s", "embedded", samples=n)
                overview(store, probes, hours, args.runs, not args.no_all)
        if not args.no_live:
            live_lag(live_s, Path(tmp))


if __name__ == "__main__":
    main()
