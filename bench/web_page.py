"""How long the real overview page takes to open in a browser over a day of 1,000 probes (issue 5).

**The store.** N probes x H hours of 1 Hz power, built as bench/web_overview.py builds it
(the trace of bench/store_queries.py through ``Store.handle``, flushed every hour, so the rollups
are maintained as in production), then the next 37 minutes flushed minute by minute (as
``wattsight run`` flushes every 60 s): "now" is then 37 min 12.345 s into hour H + 1.  It is kept under ``bench/out/`` (gitignored), reused, and
rebuilt when the store's file format changed.

**The server.** A separate process serves that store with the real app (``create_app`` under
uvicorn, as ``wattsight run`` serves it: one process, default API settings).  Its clock says
it is that "now" (the last day ends inside an hour and a minute, as a user's does; the trace is
dated 2026-01-01), and the browser's ``Date`` is shifted to the same "now" before the page's
scripts run.

**The browser.** Debian's Chromium (``/usr/bin/chromium``, headless, through Playwright) opens
``/?period=day`` (the overview of every probe over the last day, as a user lands on it) in a
fresh browser context each run: an empty HTTP cache, as on a first visit.  The page records
``window.wattsight.timings`` (``performance.now()``: ms since navigation start):

- ``drawn``: the stacked graph is drawn (top 8 + "others"), the figure for the < 1 s target;
- ``legend``: the legend (min/max/avg/last, energy, cost per probe, totals) is filled too.

Where the time goes, from the browser's resource timing (ms since navigation start):
``data_asked`` (scripts loaded, probes listed: the page starts asking for data), ``probes_end``,
``summary_end``, ``series_end`` (the last ``/api/v1/series`` answer).  The same run then replays
the page's exact API requests from Python, one after the other (``server.probes``,
``server.summary``, ``server.series``: the server's own time, no browser, no concurrency).

``--before REV`` also times the page's scripts of git revision REV (``git archive``), served by
the same server to loads that ask for them, interleaved with today's: ``web_page.before.*``.

``web_page.inproc.*`` (after the server stopped, in this process): the page's "others" answer
(every probe but 8, at 1 h) with one ``store.buckets`` call vs ``rolled_buckets`` (the cut last
hour from minute rollups), and FastAPI's ``jsonable_encoder`` vs ``fast_json``.

One warm-up load per version, then ``--runs`` loads; p50 and max are printed as JSON lines
(``{"figure", "value", "unit", "engine", ...}``) with the load average.  ``--quick``: 100 probes
x 2 hours, 2 runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import T0_MS, emit
from bench.store_queries import HOUR

MINUTE = 60_000

CHROMIUM = "/usr/bin/chromium"
#: "now" is this far into the hour after the shown hours (stored too): as at 14:37:12, the range
#: ends inside an hour and a minute, as a user's does (an hour-aligned end would miss that cost)
NOW_MS = (37 * 60 + 12) * 1000 + 345
ENGINE = "chromium+uvicorn+embedded"
# the browser's clock starts at the end of the stored data (set before the page's scripts run)
SHIFT_DATE = """(() => {
  const Real = Date, shift = %d - Real.now();
  class Shifted extends Real {
    constructor(...a) { if (a.length) super(...a); else super(Real.now() + shift); }
    static now() { return Real.now() + shift; }
  }
  window.Date = Shifted;
})();"""
RESOURCES = """performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/v1/"))
  .map((e) => ({url: e.name, start: e.startTime, ttfb: e.responseStart, end: e.responseEnd,
                bytes: e.encodedBodySize}))"""


def store_path(args) -> Path:
    return args.store or ROOT / "bench" / "out" / f"web_page-store-{args.probes}x{args.hours}h-live"


def build(store, probes: int, hours: int, now_ms: int) -> int:
    """``hours`` whole hours (flushed and compacted hour by hour, as bench/web_overview.py), then the
    hour "now" falls in up to now, flushed minute by minute as ``wattsight run`` does (its
    ``flush_interval`` is 60 s): the newest data sits in small segments and the minute rollups."""
    from bench.store_queries import Trace
    from bench.web_overview import build as build_hours
    from wattsight.sample import Batch

    trace = Trace(probes)
    n = build_hours(store, trace, hours)
    batch = trace.hour(hours)
    for m in range(T0_MS + hours * HOUR, now_ms + 1, MINUTE):
        keep = (batch.t >= m) & (batch.t < min(m + MINUTE, now_ms + 1))
        store.handle(Batch(batch.series, batch.sidx[keep], batch.t[keep], batch.v[keep]))
        n += int(keep.sum())
        if m + MINUTE <= now_ms:
            store.flush()
    return n


def ensure_store(path: Path, probes: int, hours: int, now_ms: int) -> None:
    """Build the store once (a ``BUILT`` file marks a complete one)."""
    from wattsight.config import StoreConfig
    from wattsight.consumers.store import Store
    from wattsight.errors import StoreError

    if (path / "BUILT").exists():
        try:  # a store written by an older segment format is rebuilt
            Store(StoreConfig(path=path, flush_interval=10**6)).close()
            return
        except StoreError as exc:
            print(f"rebuilding {path}: {exc}", file=sys.stderr)
    shutil.rmtree(path, ignore_errors=True)
    t = time.perf_counter()
    with Store(StoreConfig(path=path, flush_interval=10**6)) as store:
        n = build(store, probes, hours, now_ms)
    (path / "BUILT").write_text(f"{n}\n")
    emit("web_page.build", time.perf_counter() - t, "s", "embedded", samples=n, probes=probes, hours=hours)


def with_static(app, root: Path | None):
    """``app``, serving ``/static/`` (not the vendor files) from ``root`` to requests that carry the
    header ``x-static: before``: the page's scripts of another version, over the same server."""
    if root is None:
        return app
    from starlette.responses import FileResponse, Response

    from wattsight.web import pages

    async def asgi(scope, receive, send):
        path = scope.get("path", "")
        if (scope["type"] == "http" and path.startswith("/static/") and not path.startswith("/static/vendor/")
                and (b"x-static", b"before") in scope["headers"]):
            f = root / path[len("/static/"):]
            resp = (FileResponse(f, media_type=pages.TYPES.get(f.suffix), headers=pages.REVALIDATE) if f.is_file()
                    else Response(status_code=404))
            return await resp(scope, receive, send)
        return await app(scope, receive, send)

    return asgi


def serve(path: Path, end_ms: int, port: int, before: Path | None = None) -> None:
    """The server process: the real app over the store, under uvicorn, its clock at ``end_ms``."""
    import uvicorn

    from wattsight.config import ApiConfig, StoreConfig
    from wattsight.consumers.api import ApiContext, create_app
    from wattsight.consumers.store import Store
    from wattsight.sample import Topology

    with Store(StoreConfig(path=path, flush_interval=10**6)) as store:
        app = create_app(ApiContext(store=store, topology=Topology(), clock=lambda: end_ms,
                                    config=ApiConfig(price_per_kwh=0.2)))
        uvicorn.run(with_static(app, before), host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def start_server(path: Path, end_ms: int, log: Path, before: Path | None = None) -> tuple[subprocess.Popen, str]:
    from bench.web_overview import free_port

    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(path), "--end-ms", str(end_ms), "--port", str(port)]
    cmd += ["--static-before", str(before)] if before else []
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/api/v1/health", timeout=5).status_code < 500:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)


def open_page(browser, url: str, end_ms: int, version: str = "now") -> dict:
    """One load of the overview in a fresh context: the page's timings and its API requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  extra_http_headers={"x-static": version})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(SHIFT_DATE % end_ms)
        page.goto(url + "/?period=day", wait_until="commit")
        page.wait_for_function("window.wattsight && window.wattsight.timings", timeout=120_000)
        got = page.evaluate(f"({{timings: window.wattsight.timings, ids: window.wattsight.ids.length,"
                            f" layers: window.wattsight.charts[0]?.layers.length, api: {RESOURCES}}})")
        if errors:
            raise SystemExit(f"the page failed: {errors}")
        return got
    finally:
        context.close()


def where(load: dict) -> dict:
    """Request times of one load (ms since navigation start)."""
    api = load["api"]
    part = {name: [r for r in api if f"/api/v1/{name}" in r["url"]] for name in ("probes", "summary", "series")}
    out = {"drawn": load["timings"]["drawn"], "legend": load["timings"]["legend"],
           "data_asked": load["timings"]["start"]}
    for name, rs in part.items():
        if rs:
            out[f"{name}_end"] = max(r["end"] for r in rs)
            out[f"{name}_span"] = max(r["end"] for r in rs) - min(r["start"] for r in rs)
    out["series_requests"] = len(part["series"])
    out["series_bytes"] = sum(r["bytes"] for r in part["series"])
    return out


def replay(url: str, api: list[dict], runs: int) -> dict[str, list[float]]:
    """The page's API requests again, one after the other, from Python: the server's own time."""
    times: dict[str, list[float]] = {"probes": [], "summary": [], "series": []}
    with httpx.Client(timeout=120) as client:
        for _ in range(runs):
            got = dict.fromkeys(times, 0.0)
            for r in api:
                name = next((n for n in times if f"/api/v1/{n}" in r["url"]), None)
                if name:
                    t = time.perf_counter()
                    client.get(r["url"]).raise_for_status()
                    got[name] += (time.perf_counter() - t) * 1000
            for k, v in got.items():
                times[k].append(v)
    return times


def measure(url: str, end_ms: int, runs: int, tag: dict, versions: tuple[str, ...] = ("now",)) -> None:
    """``runs`` loads of each version of the page, interleaved (the same server, the same load)."""
    from playwright.sync_api import sync_playwright

    loads: dict[str, list[dict]] = {v: [] for v in versions}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            for v in versions:
                open_page(browser, url, end_ms, v)  # warm-up: the server's first reads, the browser's start
            for _ in range(runs):
                for v in versions:
                    loads[v].append(open_page(browser, url, end_ms, v))
        finally:
            browser.close()
    load_avg = round(os.getloadavg()[0], 1)
    for v in versions:
        name = "web_page" if v == "now" else f"web_page.{v}"
        rows = [where(x) for x in loads[v]]
        last = loads[v][-1]
        vtag = {**tag, "runs": runs, "cache": "empty (fresh context each load)", "load_avg": load_avg,
                "probes_drawn": last["ids"], "layers": last["layers"],
                "series_requests": rows[-1]["series_requests"], "series_bytes": rows[-1]["series_bytes"]}
        for key, target in (("drawn", 1000), ("legend", 1000), ("data_asked", None), ("probes_end", None),
                            ("summary_end", None), ("series_end", None)):
            vals = [r[key] for r in rows if key in r]
            if not vals:
                continue
            extra = {"target_ms": target} if target else {}
            emit(f"{name}.{key}.p50", float(np.median(vals)), "ms", ENGINE, **vtag, **extra)
            emit(f"{name}.{key}.max", max(vals), "ms", ENGINE, **vtag, **extra)
        for part, vals in replay(url, last["api"], runs).items():
            for stat, value in (("p50", float(np.median(vals))), ("max", max(vals))):
                emit(f"{name}.server.{part}.{stat}", value, "ms", "uvicorn+embedded (httpx, one by one)", **vtag)


def server_parts(path: Path, probes: int, end_ms: int, runs: int, tag: dict) -> None:
    """In this process (the server stopped): the page's "others" /series answer (every probe but 8,
    at 1 h) with and without what made it fast -- the cut last hour from minute rollups
    (``rolled_buckets``) vs one ``store.buckets`` call, and ``fast_json`` vs FastAPI's encoder."""
    from fastapi.encoders import jsonable_encoder

    from bench.web_overview import timed
    from wattsight.config import StoreConfig
    from wattsight.consumers.api.catalog import Catalog
    from wattsight.consumers.api.models import fast_json
    from wattsight.consumers.api.queries import rolled_buckets, series_report
    from wattsight.consumers.store import Store
    from wattsight.sample import Topology

    start_ms, step = end_ms - 24 * HOUR, HOUR
    first = start_ms - start_ms % step
    ids = [f"bench.pdu-{i}" for i in range(8, probes)]
    keys = [(p, "power") for p in ids]
    with Store(StoreConfig(path=path, flush_interval=10**6)) as store:
        report = series_report(store, Catalog(store, Topology()), ids, "power", start_ms, end_ms,
                               resolution=f"{step}ms", agg="avg", max_points=10**5)
        parts = {"buckets_one_call": lambda: store.buckets(keys, first, end_ms - 1, step),
                 "buckets_rolled": lambda: rolled_buckets(store, keys, first, end_ms, step),
                 "json_fastapi_encoder": lambda: jsonable_encoder(report),
                 "json_fast": lambda: fast_json(report)}
        for name, fn in parts.items():
            fn()  # warm
            times, _ = timed(fn, runs)
            emit(f"web_page.inproc.{name}.p50", float(np.median(times)), "ms", "embedded (in process)",
                 **tag, series=len(ids), points=sum(x["count"] for x in report["series"]),
                 load_avg=round(os.getloadavg()[0], 1))


def old_static(rev: str, into: Path) -> Path:
    """``src/wattsight/web/static`` as of git revision ``rev`` (git archive), extracted under ``into``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/wattsight/web/static"],
                         capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    return into / "src" / "wattsight" / "web" / "static"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 probes x 2 hours, 2 runs")
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--store", type=Path, help="the store (default bench/out/web_page-store-<N>x<H>h, reused)")
    ap.add_argument("--before", metavar="REV", help="also time the page's scripts of git revision REV "
                    "(or of a copy of web/static in directory REV), interleaved with today's, over the "
                    "same server: before/after a change")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--static-before", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--end-ms", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.end_ms, args.port, args.static_before)
    if args.quick:
        args.probes, args.hours, args.runs = 100, 2, min(args.runs, 2)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (Debian's build, driven by Playwright)")
    path = store_path(args)
    end_ms = T0_MS + args.hours * HOUR + NOW_MS
    ensure_store(path, args.probes, args.hours, end_ms)
    log = path.parent / f"{path.name}.server.log"
    with tempfile.TemporaryDirectory(prefix="ws-web-page-") as tmp:
        before = None
        if args.before:
            before = Path(args.before) if Path(args.before).is_dir() else old_static(args.before, Path(tmp))
        proc, url = start_server(path, end_ms, log, before)
        try:
            tag = {"probes": args.probes, "hours": args.hours, **({"before": args.before} if before else {})}
            measure(url, end_ms, args.runs, tag, ("before", "now") if before else ("now",))
        finally:
            proc.terminate()
            proc.wait(30)
    server_parts(path, args.probes, end_ms, args.runs, {"probes": args.probes, "hours": args.hours})


if __name__ == "__main__":
    main()
