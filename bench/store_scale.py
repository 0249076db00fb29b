"""The embedded store at scale: bus ingest into durable storage, bytes/sample, against PostgreSQL and InfluxDB.

Run:  .venv/bin/python bench/store_scale.py [--quick] [--runs 1000x3,100x30] [--baseline 100x1] [--rate 2e6]
      [--dsn "host=127.0.0.1 port=5432 user=postgres dbname=test"] [--no-pg] [--no-influx]

The trace is bench/common.py's rack (per node: PDU outlet power at 1 W or 0.1 W, its energy
register, the switch port's two byte counters following the load phases; 1 Hz; gaps).  The
issue's target is 1,000 nodes for 30 days (4 series each: 10.4 G samples; 2.6 G for power
alone); generating and ingesting that takes hours on 2 shared cores, so by default two runs of
a quarter of it each (``--runs 1000x3,100x30``: 1,000 nodes x 3 days and 100 nodes x 30 days,
1.04 G samples each).  For each run (``figure ... run="<probes>x<days>"``):

- ``ingest_rate`` (samples/s): a sender process generates the trace hour by hour and publishes it
  on the signed ZeroMQ bus (ipc); this process receives it (``app.Inbox``) into a ``Store``
  (WAL written, a flush every 10 s, background merges), from the first to the last sample
  acknowledged.  The sender also generates the trace, so the rate is a floor when
  ``sender_busy`` (its share of time spent generating and sending) is near 1;
  ``lost_batches``/``refused`` come from the bus's sequence numbers, ``stored`` must equal ``sent``;
  ``flushed_rate`` counts until the last sample is in a segment (a short run ends with up to
  ``Store.TAIL_FLUSHES`` x ``FLUSH_ROWS`` samples acknowledged but still in memory);
- ``freshness_p99`` (ms), with ``--rate R``: the sender offers R samples/s on average instead of
  all it can, and after each piece of 50,000 samples a sample of ``bench.clock`` holding the time
  it was sent; this process reads that series back with ``Store.read()`` every 10 ms and records
  how long each one took to become readable (p50, p99, max; bench/freshness.py): the target is
  < 1 s at 2 M/s (``store_cpu`` then includes those reads);
- ``store_cpu`` (us/sample): this process's CPU from the first sample to the last flush and
  ``compact()``, split into the bus thread and the store's thread (``capacity``: samples/s one
  core of it sustains; the sender takes the other core);
- ``bytes_per_sample`` of the segments after the final flush and ``compact(whole_days=True)`` (each
  day's full segments in one tier, as the merge thread leaves a day once it is over; raw samples; the
  store's other files -- rollups, if any -- are reported separately as ``other_bytes``), and by
  metric (a segment of each metric's rows written from the trace's first day).

Baselines, on the first ``--baseline`` nodes x days of the same trace (``figure ... engine=``):
``store`` (the same rows in-process: handle() 10k batches, flush, compact), ``pgstore`` and
``kwollect`` (bench/pg_baseline.py: PgStore.handle() with ack "queued"; COPY into Kwollect's
table), ``influxdb`` (a real influxd 1.x from tests/peers/influxdb.py: line protocol built
beforehand by wattsight.consumers.influx, POSTed 10k lines at a time with precision=ms; size of
its data dir once its WAL has been written to TSM and compacted), then ``*_vs_store`` ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import Rack, batches, emit, parse_with_format
from bench.figures import machine
from bench.freshness import clock_batch, emit_freshness, watch
from wattsight.config import StoreConfig
from wattsight.consumers.store import Store, segment
from wattsight.consumers.store.segment import write_segment
from wattsight.memory import keep_freed_memory
from wattsight.sample import Batch

KEY = b"bench-store-scale-0123456789abcdef0123"
DAY = 86400


# -- the sender process --------------------------------------------------------------------
def sender(endpoint: str, probes: int, seconds: int, seed: int, rate: float = 0.0) -> None:
    """Publish the whole trace on ``endpoint``, report on stdout, and wait for "done" on stdin.

    ``rate`` (samples/s, 0: as fast as the bus takes them): the trace is sent at that average rate
    (a piece as soon as it is due; late pieces at once), each piece followed by a one-sample batch
    of ``bench.freshness.CLOCK`` whose value is the time it was sent."""
    from wattsight.bus import Publisher

    pub = Publisher(endpoint, KEY, hwm=2000)
    while not pub.listening():
        time.sleep(0.05)
    time.sleep(0.2)
    sent, clocks, at, gen, start = 0, 0, 0, 0.0, time.perf_counter()
    rack = Rack(probes, seconds, seed)
    while rack.done < rack.seconds:
        t = time.perf_counter()
        block = next(rack.blocks())
        gen += time.perf_counter() - t
        for piece in batches(block, 50_000):
            if rate:
                time.sleep(max(start + sent / rate - time.perf_counter(), 0.0))
            pub.publish(piece)
            sent += len(piece)
            if rate:
                at = max(int(piece.t.max()), at + 1)
                pub.publish(clock_batch(at))
                sent, clocks = sent + 1, clocks + 1
    took = time.perf_counter() - start
    print(json.dumps({"sent": sent, "clocks": clocks, "generate_s": gen, "total_s": took}), flush=True)
    sys.stdin.readline()  # keep the socket open until everything was received
    pub.close()


# -- the store through the bus -------------------------------------------------------------
def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_now(inbox, store) -> dict[str, float]:
    """CPU seconds so far: the whole process, the bus thread, the store's flush and merge threads."""
    def thread(t) -> float:
        return time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    return {"process": time.process_time(), "receive": thread(inbox.thread), "flush": thread(store._thread),
            "merge": thread(store._merger)}


def store_run(tmp: Path, probes: int, seconds: int, seed: int, flush_interval: float = 10.0, rate: float = 0.0,
              lags_csv: str | None = None) -> dict:
    from wattsight.app import Inbox
    from wattsight.bus import Subscriber

    run = f"{probes}x{seconds / DAY:g}d" + (f"@{rate / 1e6:g}M/s" if rate else "")
    endpoint = f"ipc://{tmp}/scale-bus"
    store = Store(StoreConfig(path=tmp / f"store-{run}", flush_interval=flush_interval))
    inbox = Inbox(Subscriber(endpoint, KEY), [store])
    proc = subprocess.Popen([sys.executable, __file__, "--sender", endpoint, str(probes), str(seconds), str(seed),
                             str(rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stop, lags = threading.Event(), []
    watcher = threading.Thread(target=watch, args=(store, stop, lags), daemon=True)
    if rate:
        watcher.start()
    try:
        first = None
        while first is None:  # the clock starts with the first sample received
            if inbox.acked_samples:
                first = time.perf_counter()
                cpu0 = cpu_now(inbox, store)
            elif proc.poll() is not None:
                raise RuntimeError(f"the sender exited with {proc.returncode} before sending")
            time.sleep(0.001)
        report = json.loads(proc.stdout.readline())
        while inbox.acked_samples + inbox.failed_samples < report["sent"] and not inbox.stats()["lost"]:
            time.sleep(0.01)
        took = time.perf_counter() - first
        stop.set()
        if rate:
            watcher.join()
        cpu = {k: v - cpu0[k] for k, v in cpu_now(inbox, store).items()}
        load, behind = os.getloadavg(), store.stats()
        proc.stdin.write("done\n")
        proc.stdin.flush()
        proc.wait(30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        inbox.close()
    stats = inbox.stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    store.close()  # the last flush
    flushed = time.perf_counter() - first
    again = Store(StoreConfig(path=store.path, flush_interval=86400.0))
    merges = again.compact(whole_days=True)
    st = again.stats()
    again.close()
    cpu["after"] = time.process_time() - cpu_start
    emit("ingest_rate", stats["acked_samples"] / took, "samples/s", "store", run=run, sent=report["sent"],
         stored=st["segment_rows"], lost_batches=stats["lost"], refused=stats["refused"],
         failed_samples=stats["failed_samples"], sender_busy=round(report["total_s"] / took, 3),
         flushed_rate=round(stats["acked_samples"] / flushed), unflushed_at_end=behind["tail_samples"],
         merges_while_ingesting=behind["merges"],
         sender_generate_s=round(report["generate_s"], 1),
         flush_interval=flush_interval, format=segment.FORMAT,
         note="sender process (generates the trace) -> signed ipc bus -> Inbox -> Store (WAL, flushes, merges); "
         "flushed_rate: until the last sample was in a segment too (the backlog in memory, unflushed_at_end, "
         "written); merges_while_ingesting: merges done by then (a day's tier is one)")
    per = 1e6 / max(stats["acked_samples"], 1)
    total = (cpu["process"] + cpu["after"]) * per
    emit("store_cpu", total, "us/sample", "store", run=run, during_ingest=round(cpu["process"] * per, 4),
         receive=round(cpu["receive"] * per, 4), flush_merge=round((cpu["flush"] + cpu["merge"]) * per, 4),
         after_ingest=round(cpu["after"] * per, 4), capacity=round(1e6 / max(total, 1e-9)),
         unflushed_at_end=behind["tail_samples"], ingest_waits=behind.get("ingest_waits", 0),
         ingest_wait_s=round(behind.get("ingest_wait_s", 0), 1), load_avg=[round(x, 2) for x in load],
         note="CPU of this process (every thread) per sample acknowledged, from the first sample to the last "
         "flush and compact() done; during_ingest: until the last sample was acknowledged, of which receive: the "
         "bus thread (decode, WAL, tail) and flush_merge: the store's flush and merge threads (segments, rollups, merges); "
         "after_ingest: the last flush and compact(); capacity: samples/s one core would sustain; "
         "unflushed_at_end: samples still in memory then; ingest_waits: times handle() waited for a flush")
    if rate:
        emit_freshness(run, lags, report["clocks"], rate, lags_csv)
    emit("bytes_per_sample", st["segment_bytes"] / st["segment_rows"], "B/sample", "store", run=run, format=segment.FORMAT,
         samples=st["segment_rows"], segments=st["segments"], final_compact_s=round(time.perf_counter() - start, 1),
         final_merges=merges, other_bytes=dir_bytes(store.path) - st["segment_bytes"],
         note="segments after the last flush and compact(); raw samples only")
    shutil.rmtree(store.path)
    return st


def by_metric(tmp: Path, probes: int, seed: int) -> None:
    """Bytes/sample per metric: each metric's rows of one day in one segment."""
    day = next(Rack(probes, DAY, seed).blocks(DAY))
    metric = np.asarray([s.metric for s in day.series])
    fine = np.asarray([int(s.probe.rsplit("-", 1)[1]) % 2 == 1 for s in day.series])
    groups = {"power_1W": (metric == "power") & ~fine, "power_0.1W": (metric == "power") & fine,
              "energy": metric == "energy", "network_in": metric == "network_in",
              "network_out": metric == "network_out", "pdu(power+energy)": (metric == "power") | (metric == "energy"),
              "all": np.ones(len(metric), bool)}
    for n, (name, pick) in enumerate(groups.items()):
        part = day.select(pick[day.sidx])
        seg = write_segment(tmp, 100 + n, 100 + n, list(part.series), part.sidx.astype(np.int64), part.t, part.v)
        emit("bytes_per_sample", seg.size / len(part), "B/sample", "segment", metric=name, probes=probes,
             days=1, samples=len(part))
        seg.path.unlink()


# -- baselines -----------------------------------------------------------------------------
def baseline_store(tmp: Path, pieces: list[Batch], n: int) -> tuple[float, float]:
    store = Store(StoreConfig(path=tmp / "store-baseline", flush_interval=10.0))
    start = time.perf_counter()
    for piece in pieces:
        store.handle(piece)
    rate = n / (time.perf_counter() - start)
    store.close()
    again = Store(StoreConfig(path=tmp / "store-baseline", flush_interval=86400.0))
    again.compact(whole_days=True)
    st = again.stats()
    again.close()
    return rate, st["segment_bytes"] / st["segment_rows"]


def baseline_pg(dsn: str, pieces: list[Batch], n: int) -> dict:
    import psycopg

    from bench.pg_baseline import KWOLLECT_DDL, ingest_kwollect, ingest_pgstore, size

    tag = uuid.uuid4().hex[:8]
    pg, kw = f"bench_scale_pg_{tag}", f"bench_scale_kw_{tag}"
    out = {}
    conn = psycopg.connect(dsn, autocommit=True)
    try:
        out["pgstore_rate"] = ingest_pgstore(dsn, pg, pieces, len(pieces), ack="queued")
        out["pgstore_bytes"] = size(conn, pg, ("samples",)) / n
        out["pgstore_all_bytes"] = size(conn, pg) / n
        conn.execute(f"CREATE SCHEMA {kw}")
        conn.execute(KWOLLECT_DDL.format(s=kw))
        out["kwollect_rate"], _ = ingest_kwollect(conn, kw, pieces)
        out["kwollect_bytes"] = size(conn, kw) / n
    finally:
        for schema in (pg, kw):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()
    return out


def baseline_influx(tmp: Path, pieces: list[Batch], n: int) -> dict:
    import httpx

    from tests.peers.influxdb import InfluxDB
    from wattsight.consumers.influx import line_prefix, lines

    class Influx(InfluxDB):  # write the cache to TSM and compact soon after ingest ends
        def _configure(self) -> Path:
            conf = super()._configure()
            text = conf.read_text().replace("[data]\n", "[data]\n  cache-snapshot-write-cold-duration = \"2s\"\n"
                                            "  compact-full-write-cold-duration = \"5s\"\n")
            conf.write_text(text)
            return conf

    prefixes = [line_prefix(s, {}) for s in pieces[0].series]
    texts = [lines(prefixes, b)[0] for b in pieces]
    folder = tmp / "influx"
    with Influx(folder) as influx:
        influx.create_database("bench")
        with httpx.Client(timeout=120) as client:
            start = time.perf_counter()
            for text in texts:
                r = client.post(f"{influx.url}/write", params={"db": "bench", "precision": "ms"}, content=text)
                r.raise_for_status()
            rate = n / (time.perf_counter() - start)
        count = sum(row.get("count", 0) for row in influx.select("SELECT count(value) FROM /.*/", "bench"))
        deadline, last = time.monotonic() + 300, -1
        while time.monotonic() < deadline:  # the WAL written to TSM files and their size settled
            time.sleep(10)
            data = dir_bytes(folder / "data")
            if dir_bytes(folder / "wal") < 1 << 20 and data == last:
                break
            last = data
        data, wal = dir_bytes(folder / "data"), dir_bytes(folder / "wal")
    return {"influx_rate": rate, "influx_bytes": data / n, "influx_wal_bytes": wal / n, "influx_count": count}


def baselines(tmp: Path, probes: int, seconds: int, seed: int, dsn: str | None, influx: bool) -> None:
    trace = next(Rack(probes, seconds, seed).blocks(seconds))
    pieces, n = batches(trace), len(trace)
    common = {"probes": probes, "days": round(seconds / DAY, 3), "samples": n, "batch_rows": 10_000}
    rate, size = baseline_store(tmp, pieces, n)
    emit("ingest_rate", rate, "samples/s", "store", **common, note="handle() in-process, WAL written")
    emit("bytes_per_sample", size, "B/sample", "store", **common, note="segments after compact()")
    if dsn:
        pg = baseline_pg(dsn, pieces, n)
        emit("ingest_rate", pg["pgstore_rate"], "samples/s", "pgstore", **common, ack="queued",
             note="PgStore.handle(), binary COPY, until flush() returned")
        emit("bytes_per_sample", pg["pgstore_bytes"], "B/sample", "pgstore", **common,
             note=f"samples table + index (with rollups and series: {pg['pgstore_all_bytes']:.2f})")
        emit("ingest_rate", pg["kwollect_rate"], "samples/s", "kwollect", **common,
             note="COPY CSV into Kwollect's table, a transaction per 10k (CSV built beforehand)")
        emit("bytes_per_sample", pg["kwollect_bytes"], "B/sample", "kwollect", **common,
             note="heap + (device_id, metric_id, timestamp) index")
        for e in ("pgstore", "kwollect"):
            emit("bytes_vs_store", pg[f"{e}_bytes"] / size, "x", e, **common)
            emit("ingest_vs_store", rate / pg[f"{e}_rate"], "x", e, **common, note="store rate / engine rate")
    if influx:
        try:
            ix = baseline_influx(tmp, pieces, n)
        except Exception as exc:  # noqa: BLE001 - the peer may be missing here: say so, go on
            emit("influxdb_skipped", 0, "", "influxdb", reason=str(exc)[:200])
            return
        emit("ingest_rate", ix["influx_rate"], "samples/s", "influxdb", **common, stored=ix["influx_count"],
             note="line protocol POST /write 10k lines, precision=ms (text built beforehand)")
        emit("bytes_per_sample", ix["influx_bytes"], "B/sample", "influxdb", **common,
             wal_bytes_per_sample=round(ix["influx_wal_bytes"], 4), note="data dir (TSM + index) after compaction")
        emit("bytes_vs_store", ix["influx_bytes"] / size, "x", "influxdb", **common)
        emit("ingest_vs_store", rate / ix["influx_rate"], "x", "influxdb", **common, note="store rate / engine rate")


def parse_runs(text: str) -> list[tuple[int, int]]:
    """``"1000x3,100x30"`` -> [(1000, 3 days in s), (100, 30 days in s)]; ``20x0.1`` works too."""
    out = []
    for item in filter(None, text.split(",")):
        probes, days = item.split("x")
        out.append((int(probes), round(float(days) * DAY)))
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        endpoint, probes, seconds, seed = sys.argv[2], *map(int, sys.argv[3:6])
        return sender(endpoint, probes, seconds, seed, float(sys.argv[6]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="1000x3,100x30", help="probes x days, comma-separated")
    ap.add_argument("--baseline", default="100x1", help="probes x days for the PostgreSQL/InfluxDB side by side")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument("--flush-interval", type=float, default=10.0,
                    help="the store's flush_interval in s (10 as in e2e.py: at ~1 M samples/s the store's default "
                    "60 s keeps ~60 M samples in memory and a flush needs several GB)")
    ap.add_argument("--only-runs", action="store_true", help="no per-metric figures and no baselines")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-influx", action="store_true")
    ap.add_argument("--quick", action="store_true", help="20 nodes x 2 h, baselines on 10 nodes x 1 h")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="samples/s the sender offers (default 0: as fast as the store takes them); with a rate, "
                    "freshness_p99 gives how long a sample takes to be readable")
    ap.add_argument("--lags", metavar="CSV", help="with --rate: each clock sample's sending time and lag, to plot")
    ap.add_argument("--malloc-defaults", action="store_true",
                    help="leave glibc's malloc as it is (wattsight run keeps freed memory: wattsight.memory); "
                    "the sender process always runs with the defaults")
    args = parse_with_format(ap)
    kept = not args.malloc_defaults and keep_freed_memory()
    if args.quick:
        args.runs, args.baseline = "20x0.0833333", "10x0.0416667"
    emit("machine", 0, "", "input", machine=machine(), runs=args.runs, baseline=args.baseline,
         target="1000 probes x 30 days; see runs", malloc="keep freed memory" if kept else "defaults")
    with tempfile.TemporaryDirectory(prefix="wattsight-scale-") as d:
        tmp = Path(d)
        os.chmod(tmp, 0o700)
        if not args.only_runs:
            by_metric(tmp, 10 if args.quick else 100, args.seed)
        for probes, seconds in parse_runs(args.runs):
            store_run(tmp, probes, seconds, args.seed, args.flush_interval, args.rate, args.lags)
        if args.only_runs:
            return
        [(probes, seconds)] = parse_runs(args.baseline)
        baselines(tmp, probes, seconds, args.seed, None if args.no_pg else args.dsn, not args.no_influx)


if __name__ == "__main__":
    main()
