"""End-to-end figures of the whole pipeline, one JSON line each.

- ``e2e_rate``: samples/s from dummy drivers (``wattsight run --role drivers`` in its own
  process) through the signed ZeroMQ bus into the durable store (WAL written), sustained.
- ``kwapi_style_rate``: the same drivers' samples sent the way Kwapi did -- one JSON message
  per sample, each signed with HMAC-SHA256 -- into the same store, batched on the consumer
  side so that only the bus and its encoding differ; ``e2e_vs_kwapi`` is the ratio.
- ``latency_p50`` / ``latency_p99``: from a sample's measurement to its being visible in the
  REST API (``wattsight run`` all in one; a client polls the API).
- ``energy_month_query``: energy over 30 days of 100 probes at 1 Hz (259 M samples) from
  the REST API.

Run: ``python bench/e2e.py [--quick]`` (``bash bench/run.sh`` runs every benchmark).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dummy_rack_config
from figures import emit_json

from wattsight.app import Inbox
from wattsight.bus import Subscriber
from wattsight.config import StoreConfig
from wattsight.consumers.store import Store
from wattsight.sample import Batch, Series

KEY = "bench-secret-0123456789abcdef0123456789"


def _config(tmp: Path, endpoint: str, *, count: int, burst: int, period: float, listen: str = "127.0.0.1:8080") -> Path:
    return dummy_rack_config(tmp / "bench.toml", site="bench", endpoint=endpoint, secret=KEY, store=tmp / "store",
                             count=count, burst=burst, period=period, listen=listen)


def _spawn(args: list[str], tmp: Path, log: str) -> subprocess.Popen:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "wattsight", "run", *args], env=env,
                            stdout=open(tmp / log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _measure(counter, warmup: float, seconds: float) -> tuple[float, float]:
    """Samples/s of ``counter()`` over ``seconds`` after ``warmup``, and this process's CPU per
    sample meanwhile (us: every thread, the bus and the store's)."""
    time.sleep(warmup)
    n0, t0, c0 = counter(), time.perf_counter(), time.process_time()
    time.sleep(seconds)
    n, cpu = counter() - n0, time.process_time() - c0
    return n / (time.perf_counter() - t0), cpu * 1e6 / max(n, 1)


def bench_e2e(tmp: Path, seconds: float) -> float:
    endpoint = f"ipc://{tmp}/e2e-bus"
    count, burst, period = 2000, 100, 0.1
    offered = count * burst / period  # 2 M samples/s
    cfg = _config(tmp, endpoint, count=count, burst=burst, period=period)
    store = Store(StoreConfig(path=tmp / "e2e-store", flush_interval=10.0))
    inbox = Inbox(Subscriber(endpoint, KEY.encode()), [store])
    drivers = _spawn(["-c", str(cfg), "--role", "drivers"], tmp, "drivers.log")
    try:
        rate, cpu = _measure(lambda: inbox.acked_samples, 3.0, seconds)
        behind = store.stats()["tail_samples"]
    finally:
        drivers.terminate()
        drivers.wait(30)
        inbox.close()
        store.close()
    lost = inbox.stats()["lost"]
    emit_json("e2e_rate", rate, "samples/s", offered=offered, lost_batches=lost,
              refused=inbox.stats()["refused"], store_cpu_us_per_sample=round(cpu, 4), unflushed=behind,
              load_avg=[round(x, 2) for x in os.getloadavg()],
              note="dummy drivers process -> ipc bus -> store (WAL written); store_cpu: this process's CPU per "
              "sample over the window (flushes at 10 s: one at most); unflushed: samples in memory at its end")
    return rate


KWAPI_SENDER = r"""
import hashlib, hmac, json, sys, time, zmq
key, endpoint, n_probes = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
sock = zmq.Context().socket(zmq.PUB)
sock.setsockopt(zmq.SNDHWM, 100000)
sock.setsockopt(zmq.XPUB_NODROP, 1) if hasattr(zmq, "XPUB_NODROP") else None
sock.bind(endpoint)
time.sleep(0.5)
i = 0
while True:
    now = time.time()
    for p in range(n_probes):
        msg = {"probe_id": "bench.node-%d" % p, "data_type": "power", "timestamp": now, "w": 100.0 + (i % 50)}
        # Kwapi's security.append_signature: HMAC-SHA256 over the sorted items, in the message
        body = "".join("%s%s" % kv for kv in sorted(msg.items())).encode()
        msg["message_signature"] = hmac.new(key, body, hashlib.sha256).hexdigest()
        sock.send_string(json.dumps(msg))
    i += 1
"""


def bench_kwapi_style(tmp: Path, seconds: float) -> float:
    endpoint = f"ipc://{tmp}/kwapi-bus"
    key = KEY.encode()
    store = Store(StoreConfig(path=tmp / "kwapi-store", flush_interval=10.0))
    sender = subprocess.Popen([sys.executable, "-c", KWAPI_SENDER, KEY, endpoint, "1000"])
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    count = [0]
    stop = threading.Event()
    series = {}

    def consume() -> None:
        sidx, ts, vs, table = [], [], [], []
        while not stop.is_set():
            if not sock.poll(100):
                continue
            msg = json.loads(sock.recv())
            sig = msg.pop("message_signature")
            body = "".join(f"{k}{v}" for k, v in sorted(msg.items())).encode()
            if not hmac.compare_digest(sig, hmac.new(key, body, hashlib.sha256).hexdigest()):
                continue
            s = series.get(msg["probe_id"])
            if s is None:
                s = series[msg["probe_id"]] = (len(table), Series(msg["probe_id"], "power", "W"))
                table.append(s[1])
            sidx.append(s[0])
            ts.append(int(msg["timestamp"] * 1000))
            vs.append(msg["w"])
            if len(ts) >= 10_000:  # same batching into the same store as wattsight's path
                store.handle(Batch(tuple(table), np.asarray(sidx, np.uint32), np.asarray(ts, np.int64),
                                   np.asarray(vs, np.float64)))
                count[0] += len(ts)
                sidx, ts, vs = [], [], []

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    try:
        rate, _cpu = _measure(lambda: count[0], 2.0, seconds)
    finally:
        stop.set()
        th.join(5)
        sender.kill()
        sender.wait()
        store.close()
    emit_json("kwapi_style_rate", rate, "samples/s",
              note="one JSON message per sample, HMAC-SHA256 each, same store batched by 10k")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs and a smaller month (for a smoke test)")
    ap.add_argument("--only", help="comma-separated: e2e,kwapi,latency,month")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else {"e2e", "kwapi", "latency", "month"}
    seconds = 3.0 if args.quick else 10.0
    with tempfile.TemporaryDirectory(prefix="wattsight-bench-") as d:
        tmp = Path(d)
        os.chmod(tmp, 0o700)
        e2e = bench_e2e(tmp, seconds) if "e2e" in only else None
        kw = bench_kwapi_style(tmp, seconds) if "kwapi" in only else None
        if e2e and kw:
            emit_json("e2e_vs_kwapi", e2e / kw, "x", note="ratio of the two rates, same run")
        if "latency" in only:
            from e2e_latency import bench_latency as latency

            latency(tmp, 30 if args.quick else 200)
        if "month" in only:
            from e2e_month import bench_month

            bench_month(tmp, days=3 if args.quick else 30, probes=100)


if __name__ == "__main__":
    main()
