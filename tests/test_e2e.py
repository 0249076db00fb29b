"""End to end: real ``wattsight run`` processes, the real bus, store and HTTP API.

- the demo's energy over the last minute matches the dummy pattern's analytic value;
- /metrics passes ``promtool check metrics``; Kwapi's API answers;
- drivers and store/api in two processes answer exactly as one process does;
- kill -9 loses no acknowledged sample and the gap shows in coverage.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from procs import Wattsight, free_port

from wattsight.config import DEMO_RACK, StoreConfig
from wattsight.consumers.store import Store
from wattsight.drivers.dummy import DummyConfig, DummyDriver

pytestmark = pytest.mark.slow

METRICS = ("power", "energy", "network_in", "network_out")


def demo_probes() -> list[str]:
    return [p.id for p in DummyDriver(DummyConfig(**DEMO_RACK), site="demo").probes()]


def test_demo_energy_is_analytic_and_metrics_pass_promtool(tmp_path):
    ws = Wattsight(["--demo", "--data-dir", str(tmp_path / "data")], tmp_path, listen=f"127.0.0.1:{free_port()}")
    try:
        ws.wait_ready()
        assert "SIMULATED" in ws.output()
        started = time.time()
        probes = demo_probes()
        assert len(probes) == 8
        listed = ws.get("/api/v1/probes")
        assert {p["id"] for p in listed["probes"]} >= set(probes)

        # a minute of data, ending 2 s ago so the last interval is surely stored
        time.sleep(max(0.0, started + 64 - time.time()))
        t1 = math.floor(time.time()) - 2
        t0 = t1 - 60
        got = ws.get("/api/v1/energy", probes=",".join(probes), **{"from": t0, "to": t1})
        driver = DummyDriver(DummyConfig(**DEMO_RACK), site="demo")
        analytic = driver.power.energy(np.int64(t0 * 1000), np.int64(t1 * 1000)).reshape(-1)
        for pid, exact in zip(driver.ids, analytic):
            e = got["probes"][pid]
            assert e["coverage"] > 0.99, e
            assert abs(e["joules"] - exact) <= 1e-3 * exact, (pid, e["joules"], exact, e)
            assert e["kwh"] == pytest.approx(e["joules"] / 3.6e6)

        metrics = subprocess.run(["promtool", "check", "metrics"], input=httpx_text(ws.url + "/metrics"),
                                 capture_output=True, text=True, check=False)
        assert metrics.returncode == 0, metrics.stdout + metrics.stderr
        text = httpx_text(ws.url + "/metrics")
        assert f'wattsight_power_watts{{probe="{probes[0]}",site="demo"}}' in text
        assert "wattsight_energy_joules_total" in text and "wattsight_network_receive_bytes_total" in text

        # Kwapi's read API, for old clients
        assert probes[0] in ws.get("/v1/probe-ids/")["probe_ids"]
        one = ws.get(f"/v1/probes/{probes[0]}/")[probes[0]]
        assert {"w", "kwh", "timestamp"} <= set(one)
        assert set(ws.get(f"/v1/probes/{probes[0]}/w/")[probes[0]]) == {"w"}
    finally:
        code = ws.stop()
    assert code == 0, ws.output()
    assert "Traceback" not in ws.output()
    # SIGTERM flushed the store: everything is in segments, nothing left to replay from the WAL
    with Store(StoreConfig(path=tmp_path / "data" / "store")) as store:
        stats = store.stats()
    assert stats["segments"] >= 1 and stats["replayed_batches"] == 0, stats


def httpx_text(url: str) -> str:
    import httpx

    r = httpx.get(url, timeout=30)
    assert r.status_code == 200
    return r.text


def write_trace(path: Path, probes: int, seconds: int, t0: int) -> int:
    """A 1 Hz power trace with 0.1 W resolution; returns the number of rows."""
    rng = np.random.default_rng(7)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["probe", "metric", "measured_at", "value", "unit"])
        for s in range(seconds):
            for p in range(probes):
                w.writerow([f"lab.node-{p}", "power", t0 + s * 1000, round(150 + 50 * rng.random(), 1), "W"])
    return probes * seconds


def site_config(tmp: Path, name: str, trace: Path, port: int) -> Path:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(f"""
site = "lab"
[bus]
endpoint = "tcp://127.0.0.1:{port}"
secret = "a-test-secret-of-enough-length-0123456789"
[store]
path = "{tmp / name}-store"
[drivers.trace]
type = "replay"
path = "{trace}"
keep_time = true
speed = 100.0
period = 0.2
[probes."lab.node-1"]
aliases = ["first"]
nodes = ["lab.rack-a"]
[probes."lab.node-2"]
nodes = ["lab.rack-a", "lab.rack-b"]
""")
    return cfg


def test_two_processes_answer_exactly_as_one(tmp_path):
    t0 = (int(time.time()) - 600) * 1000
    rows = write_trace(tmp_path / "trace.csv", probes=6, seconds=120, t0=t0)
    split = site_config(tmp_path, "split", tmp_path / "trace.csv", free_port())
    single = site_config(tmp_path, "single", tmp_path / "trace.csv", free_port())
    store = Wattsight(["-c", str(split), "--role", "store,api"], tmp_path, name="store",
                      listen=f"127.0.0.1:{free_port()}")
    drivers = Wattsight(["-c", str(split), "--role", "drivers"], tmp_path, name="drivers")
    one = Wattsight(["-c", str(single)], tmp_path, name="one", listen=f"127.0.0.1:{free_port()}")
    try:
        for p in (store, drivers, one):
            p.wait_ready()
        for p in (store, one):
            p.wait_for(lambda p=p: p.get("/api/v1/health")["store"]["samples_total"] >= rows,
                       what=f"{p.name} stored {rows} rows")
        rng = {"from": t0 / 1000 - 1, "to": t0 / 1000 + 121}
        for path, params in [
            ("/api/v1/series", {"probes": ",".join(f"lab.node-{i}" for i in range(6)), "metric": "power",
                                "resolution": "raw", **rng}),
            ("/api/v1/series", {"probes": "first,lab.node-3", "metric": "power", "resolution": "10s", **rng}),
            ("/api/v1/energy", {"nodes": "lab.rack-a,lab.rack-b", **rng}),
            ("/api/v1/energy", {"probes": "lab.node-0,lab.node-5", **rng}),
            ("/v1/probes/", {}),
        ]:
            a, b = store.get(path, **params), one.get(path, **params)
            assert a == b, path
        raw = one.get("/api/v1/series", probes="lab.node-0", metric="power", resolution="raw", **rng)
        assert sum(s["count"] for s in raw["series"]) == 120
        nodes = one.get("/api/v1/energy", nodes="lab.rack-a,lab.rack-b", **rng)["nodes"]
        assert nodes["lab.rack-a"]["shared"] and "lab.node-2" in nodes["lab.rack-a"]["shared_probes"]
    finally:
        for p in (drivers, store, one):
            p.stop()
    assert drivers.proc.returncode == store.proc.returncode == one.proc.returncode == 0


def test_kill_9_loses_no_acknowledged_sample_and_the_gap_shows(tmp_path):
    data = tmp_path / "data"
    listen = f"127.0.0.1:{free_port()}"
    ws = Wattsight(["--demo", "--data-dir", str(data)], tmp_path, name="first", listen=listen)
    ws.wait_ready()
    begin = time.time() - 1
    ws.wait_for(lambda: ws.get("/api/v1/health")["bus"]["inbox"]["acked_samples"] >= 150, what="150 acked")
    acked = ws.get("/api/v1/health")["bus"]["inbox"]["acked_samples"]
    killed_at = time.time()
    ws.kill9()
    time.sleep(9)  # longer than the gap limit (5 s): the outage must not be bridged
    again = Wattsight(["--demo", "--data-dir", str(data)], tmp_path, name="second", listen=listen)
    try:
        again.wait_ready()
        restarted = time.time()
        time.sleep(4)
        probes = ",".join(demo_probes())
        stored = 0
        for metric in METRICS:
            got = again.get("/api/v1/series", probes=probes, metric=metric, resolution="raw",
                            **{"from": begin, "to": killed_at})
            stored += sum(s["count"] for s in got["series"])
        assert stored >= acked, (stored, acked)
        span = {"from": killed_at - 10, "to": restarted + 2}
        for e in again.get("/api/v1/energy", probes=probes, **span)["probes"].values():
            outage = restarted - killed_at
            assert e["coverage"] < 1 - (outage - 3) / (span["to"] - span["from"]), e
            assert e["coverage"] > 0.2, e
    finally:
        again.stop()
    assert "Traceback" not in again.output(), again.output()


def test_run_without_a_configuration_reads_the_local_meters_or_says_it_models(tmp_path):
    """`wattsight run` with no file: the meters of this machine (whatever it has) are found,
    said at start, and read; where nothing measures the host, its power is modelled and says so."""
    env_config = os.environ.pop("WATTSIGHT_CONFIG", None)
    try:
        ws = Wattsight(["--data-dir", str(tmp_path / "data")], tmp_path, listen=f"127.0.0.1:{free_port()}")
    finally:
        if env_config is not None:
            os.environ["WATTSIGHT_CONFIG"] = env_config
    try:
        ws.wait_ready()
        probes = ws.wait_for(lambda: [p for p in ws.get("/api/v1/probes")["probes"] if p["last"]],
                             what="a local meter's first sample in the API")
        out = ws.output()
        assert "wattsight: found: " in out
        modelled = "the host's power is modelled from CPU use (cpumodel), not measured" in out
        assert modelled or "the host's power is measured by " in out
        drivers = {p["driver"] for p in probes}
        if modelled:
            host = next(p for p in probes if p["driver"] == "cpumodel")
            assert host["last"]["power"]["provenance"] == "modelled"
            assert host["last"]["power"]["value"] > 0
        else:
            assert drivers & {"rapl", "hwmon"}
    finally:
        ws.stop()
    assert ws.proc.returncode == 0
