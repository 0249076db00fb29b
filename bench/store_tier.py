"""A day's tier at full scale, as one job: its peak memory, its time, the bytes before and after.

Run:  .venv/bin/python bench/store_tier.py [--probes 1000] [--hours 24] [--seed 1] [--store DIR]

1. *ingest* (a child process): the rack trace of bench/common.py (per node: power, energy, two
   byte counters, 1 Hz) hour by hour into a ``Store`` through ``handle()`` in 10k-sample batches,
   with its flush and merge threads as in production (a flush every ``--flush-interval`` s);
   then ``close()``.  The day is not merged into one tier yet: a store merges a day's full
   segments into its tier once it holds data a day after that day's start.
2. *tier* (another child process, so that its peak memory is its own): ``Store(path).compact(whole_days=True)``,
   which merges each day's full segments into its tier at once (at 1,000 nodes: ~350 M rows,
   read and encoded a slice of probes at a time, compaction.Sliced).

Prints one JSON line per figure: ``tier_peak_rss`` (MiB: the process's peak resident memory,
``ru_maxrss``, and ``open_rss``: after opening the store, before the merge), ``tier_time`` (s),
``tier_rate`` (rows/s), ``bytes_per_sample`` before and after, and the segments before and after.
``--store DIR`` keeps the store (a later run with the same DIR skips the ingest).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import Rack, batches, emit
from bench.figures import machine
from wattsight.config import StoreConfig
from wattsight.consumers.store import Store


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ingest(path: Path, probes: int, hours: int, seed: int, flush_interval: float) -> dict:
    rack = Rack(probes, hours * 3600, seed)
    store = Store(StoreConfig(path=path, flush_interval=flush_interval))
    start, samples = time.perf_counter(), 0
    for block in rack.blocks():
        for b in batches(block, 10_000):
            store.handle(b)
        samples += len(block)
    store.close()
    return {"samples": samples, "ingest_s": time.perf_counter() - start}


def tier(path: Path) -> dict:
    store = Store(StoreConfig(path=path, flush_interval=86400.0))
    before = store.stats()
    open_rss = rss_mib()
    start = time.perf_counter()
    merges = store.compact(whole_days=True)
    took = time.perf_counter() - start
    after = store.stats()
    store.close()
    return {"merges": merges, "tier_s": took, "open_rss": open_rss, "peak_rss": rss_mib(),
            "rows": after["segment_rows"], "segments_before": before["segments"], "segments_after": after["segments"],
            "bytes_before": before["segment_bytes"], "bytes_after": after["segment_bytes"],
            "rows_before": before["segment_rows"]}


def child(step: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--step", step, *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flush-interval", type=float, default=10.0)
    ap.add_argument("--store", type=Path, help="keep the store here (reused when it holds segments)")
    ap.add_argument("--step", choices=["ingest", "tier"], help=argparse.SUPPRESS)
    ap.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step == "ingest":
        print(json.dumps(ingest(args.path, args.probes, args.hours, args.seed, args.flush_interval)))
        return
    if args.step == "tier":
        print(json.dumps(tier(args.path)))
        return
    tmp = None
    path = args.store
    if path is None:
        tmp = Path(tempfile.mkdtemp(prefix="ws-tier-"))
        path = tmp / "store"
    tag = {"probes": args.probes, "hours": args.hours, "machine": machine()}
    try:
        if not (path / "segments").is_dir() or not any((path / "segments").glob("*.parquet")):
            got = child("ingest", "--path", str(path), "--probes", str(args.probes), "--hours", str(args.hours),
                        "--seed", str(args.seed), "--flush-interval", str(args.flush_interval))
            emit("ingest_rate", got["samples"] / got["ingest_s"], "samples/s", "store", **tag,
                 note="handle() in 10k batches, flush and merge threads on, until close()")
        t = child("tier", "--path", str(path))
        emit("tier_peak_rss", t["peak_rss"], "MiB", "store", open_rss=round(t["open_rss"], 4), **tag,
             note="ru_maxrss of the process that opened the store and ran compact()")
        emit("tier_time", t["tier_s"], "s", "store", merges=t["merges"], **tag)
        emit("tier_rate", t["rows_before"] / max(t["tier_s"], 1e-9), "rows/s", "store", **tag)
        emit("bytes_per_sample", t["bytes_before"] / max(t["rows_before"], 1), "B/sample", "store",
             segments=t["segments_before"], **tag, note="before compact(): the day in full segments")
        emit("bytes_per_sample", t["bytes_after"] / max(t["rows"], 1), "B/sample", "store",
             segments=t["segments_after"], **tag, note="after compact(): the day's tier")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
