"""GET /api/v1/live (Server-Sent Events) through a real HTTP server: uvicorn over a real store fed
while the stream is open, and a real ``wattsight run --demo`` process."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest
from procs import Wattsight, free_port
from test_api_helpers import CONFIG, T_END, open_store, served_app, topology

from wattsight.consumers.api import ApiContext, create_app
from wattsight.sample import Batch, Series
from wattsight.web import live

RAMP = Series("lyon.ramp", "power", "W")
CONST = Series("lyon.const", "power", "W")
RX = Series("lyon.sw1", "network_in", "B", "counter")


@pytest.fixture
def served(tmp_path):
    """(url, store): uvicorn serving the app over the known store, in a thread of this process."""
    store = open_store(tmp_path / "store")
    app = create_app(ApiContext(store=store, topology=topology(), config=CONFIG, clock=lambda: T_END))
    with served_app(app) as url:
        yield url, store
    store.close()


def events(url: str, n, *, timeout: float = 20, headers=None, on_open=None) -> list[dict]:
    """The first ``n`` data events of a stream, or (``n`` callable) those until ``n(events)`` is true;
    then the client closes it.  ``on_open()`` runs once the stream has started."""
    out = []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, timeout=timeout, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in r.iter_lines():
            if on_open is not None:
                on_open()
                on_open = None
            assert time.monotonic() < deadline, f"{timeout} s without the events awaited; got {out}"
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                out.append({**json.loads(line[6:]), "id": event_id})
                if (n(out) if callable(n) else len(out) == n):
                    break
    return out


def feeder(store, rows: list[tuple[Series, int, float]], every: float = 0.3):
    """A callable starting a thread that stores ``rows`` one at a time, as a runner would."""
    def run():
        for series, t, v in rows:
            time.sleep(every)
            store.handle(Batch.of_series(series, [t], [v]))
    return threading.Thread(target=run, daemon=True).start


def test_new_samples_arrive_in_order_with_the_stored_values(served):
    url, store = served
    rows = [(s, T_END + i * 1000, 200.0 + i if s is RAMP else 50.0 + i)
            for i in range(1, 5) for s in (RAMP, CONST)]
    def complete(got: list[dict]) -> bool:
        return sum(v is not None for e in got for vs in e["probes"].values() for v in vs) >= len(rows)

    got = events(f"{url}/api/v1/live?probes=ramp,lyon.const", complete, timeout=30,
                 on_open=feeder(store, rows))
    times = [t for e in got for t in e["t"]]
    assert times == sorted(times) and set(times) <= {T_END + i * 1000 for i in range(1, 5)}
    assert all(e["metric"] == "power" and e["unit"] == "W" and e["id"] == max(e["t"]) for e in got)
    seen: dict[str, dict[int, float]] = {"lyon.ramp": {}, "lyon.const": {}}
    for e in got:
        for pid, values in e["probes"].items():
            seen[pid].update({t: v for t, v in zip(e["t"], values) if v is not None})
    stored = store.read([RAMP.key, CONST.key], T_END + 1, T_END + 10_000)
    for series in (RAMP, CONST):
        t, v = stored[series.key]
        assert seen[series.probe] == dict(zip(t.tolist(), v.tolist()))  # every new sample, exactly once
    assert len(seen["lyon.ramp"]) == 4


def test_counters_stream_as_rates_and_since_resumes(served):
    url, store = served
    start = feeder(store, [(RX, T_END + 1000, 1e9 + 1000.0 * 3600 + 2500.0)])
    [e] = events(f"{url}/api/v1/live?probes=lyon.sw1&metric=network_in", 1, on_open=start)
    assert e["unit"] == "B/s" and e["t"] == [T_END + 1000] and e["probes"]["lyon.sw1"] == [2500.0]
    [old] = events(f"{url}/api/v1/live?probes=lyon.sw1&metric=network_in&since={T_END - 3000}", 1)
    assert old["t"] == [T_END - 2000, T_END - 1000, T_END, T_END + 1000]
    assert old["probes"]["lyon.sw1"] == [1000.0, 1000.0, 1000.0, 2500.0]
    [clamped] = events(f"{url}/api/v1/live?probes=lyon.sw1&metric=network_in&raw=true&since=0", 1)
    assert clamped["t"][0] == T_END - live.CATCH_UP_MS + 1000  # at most 10 min back: history is /series'
    [again] = events(f"{url}/api/v1/live?probes=lyon.sw1&metric=network_in&raw=true",
                     1, headers={"Last-Event-ID": str(T_END - 1000)})
    assert again["unit"] == "B" and again["t"] == [T_END, T_END + 1000]
    assert again["probes"]["lyon.sw1"] == [1e9 + 1000.0 * 3600, 1e9 + 1000.0 * 3600 + 2500.0]


def test_keep_alive_then_the_stream_ends_when_the_client_goes(served):
    url, _ = served
    lines, before = [], live.OPEN  # streams of other tests still closing, if any
    with httpx.stream("GET", f"{url}/api/v1/live?probes=ramp", timeout=20) as r:
        for line in r.iter_lines():
            lines.append(line)
            if line == ": keep-alive":
                open_then = live.OPEN
                break
    assert open_then == before + 1
    assert lines[0] == "retry: 1000" and not any(x.startswith("data:") for x in lines)
    deadline = time.monotonic() + 10
    while live.OPEN > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.OPEN <= before  # the generator stopped: no store polling for a gone client


def test_live_errors(served):
    url, _ = served
    r = httpx.get(f"{url}/api/v1/live?probes=nope", timeout=10)
    assert r.status_code == 404 and "GET /api/v1/probes" in r.json()["detail"]
    r = httpx.get(f"{url}/api/v1/live?metric=volts", timeout=10)
    assert r.status_code == 422


@pytest.mark.slow
def test_demo_process_streams_what_its_store_holds(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    ws = Wattsight(["--demo", "--data-dir", str(tmp_path / "data")], tmp_path, listen=listen)
    try:
        ws.wait_ready()
        got = events(f"{ws.url}/api/v1/live?metric=power", 3, timeout=30)
        times = [t for e in got for t in e["t"]]
        assert times == sorted(times) and len(set(times)) == len(times)
        pid = min(got[-1]["probes"])
        assert pid.startswith("demo.") and len(got[-1]["probes"]) == 8
        t = got[-1]["t"][-1]
        span = {"from": t / 1000 - 5, "to": t / 1000}
        series = ws.get("/api/v1/series", probes=pid, resolution="raw", **span)
        stored = {round(p[0] * 1000): p[1] for p in series["series"][0]["points"]}
        sent = {tt: v for e in got for tt, v in zip(e["t"], e["probes"][pid]) if v is not None}
        common = set(sent) & set(stored)
        assert common and all(sent[k] == pytest.approx(stored[k]) for k in common)
        assert np.all(np.isfinite(list(sent.values())))
    finally:
        ws.stop()
