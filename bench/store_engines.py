"""Which engine for the embedded store: DuckDB, our Parquet segments, plain float Parquet.

Run:  .venv/bin/python bench/store_engines.py [--probes 100] [--seconds 86400] [--seed 1] [--quick]

On one realistic 1 Hz PDU trace (bench/common.py: power at 1 W or 0.1 W resolution with load
phases, noise and gaps; energy registers; byte counters), prints one JSON line per figure::

    {"figure": ..., "value": ..., "unit": ..., "engine": ...}

- duckdb: rows appended 10k at a time into a table (rows/s), bytes/row after CHECKPOINT;
- segment: our writer on the whole trace (samples/s, bytes/sample, per metric too), in format 1
  (scaled integers, before residuals) and ``segment.FORMAT`` (residuals; also at the merges' zstd
  level), reads of it (whole, ``read_hour_all_ms``: one hour of every series from the middle of
  the day, ``read_whole_quarter_ms``: every fourth series whole; best of 3), and the
  Store end to end (``--format``, default ``segment.FORMAT``): handle() in 10k batches (samples/s), then the
  steady state of a store flushed every 60 s of data with its merges (bytes/sample on disk; ``--seconds
  172800`` for two days: the first day's full segments are then merged into a tier, compaction.pick_tier);
- parquet-float: the same rows sorted the same way, pyarrow defaults (v as float64) + zstd.

Times are wall-clock on whatever machine runs it; sizes do not depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import batches, emit, parse_with_format, pdu_trace
from wattsight.codec import encode_batch
from wattsight.config import StoreConfig
from wattsight.consumers.store import Store, segment
from wattsight.consumers.store.segment import COLD_LEVEL, COMPRESSION_LEVEL, write_segment
from wattsight.sample import Batch


def rows_table(batch: Batch) -> pa.Table:
    """The batch as plain rows: probe, metric, unit, kind, provenance, t, v."""
    cols = {}
    for pos, name in enumerate(("probe", "metric", "unit", "kind", "provenance")):
        names = np.asarray([s.as_tuple()[pos] for s in batch.series], dtype=object)
        codes = batch.sidx.astype(np.int32)
        cols[name] = pa.DictionaryArray.from_arrays(codes, names.tolist()).cast(pa.string())
    cols["t"] = pa.array(batch.t)
    cols["v"] = pa.array(batch.v)
    return pa.table(cols)


def bench_duckdb(batch: Batch, tmp: Path) -> None:
    import duckdb

    path = tmp / "samples.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE samples (probe VARCHAR, metric VARCHAR, unit VARCHAR, kind VARCHAR, "
                "provenance VARCHAR, t BIGINT, v DOUBLE)")
    pieces = [rows_table(b) for b in batches(batch)]  # converting is not DuckDB's cost
    start = time.perf_counter()
    for piece in pieces:
        con.execute("INSERT INTO samples SELECT * FROM piece")
    con.execute("CHECKPOINT")
    took = time.perf_counter() - start
    con.close()
    emit("append_rate", len(batch) / took, "rows/s", "duckdb", batch_rows=10_000)
    emit("bytes_per_sample", path.stat().st_size / len(batch), "B/sample", "duckdb")


def bench_segment(batch: Batch, tmp: Path) -> None:
    sid = batch.sidx.astype(np.int64)
    for fmt, level in ((1, COMPRESSION_LEVEL), (segment.FORMAT, COMPRESSION_LEVEL), (segment.FORMAT, COLD_LEVEL)):
        start = time.perf_counter()
        seg = write_segment(tmp, fmt * 100 + level, 1, list(batch.series), sid, batch.t, batch.v, fmt=fmt,
                            compression_level=level)
        took = time.perf_counter() - start
        start = time.perf_counter()
        seg.read_all()
        read = time.perf_counter() - start
        tag = {"format": fmt, "level": level, "note": "whole trace, one segment"}
        emit("write_rate", len(batch) / took, "samples/s", "segment", **tag)
        emit("read_rate", len(batch) / read, "samples/s", "segment", **tag)
        every = list(range(len(seg.series)))
        mid = int(batch.t[0] + batch.t[-1]) // 2
        for name, keys, start_ms, end_ms in (("read_hour_all_ms", every, mid, mid + 3_599_999),
                                             ("read_whole_quarter_ms", every[::4], 0, 2**62)):
            took_ms = best_ms(seg.read, keys, start_ms, end_ms)
            emit(name, took_ms, "ms", "segment", format=fmt, level=level, series=len(keys), note="best of 3")
        emit("bytes_per_sample", seg.size / len(batch), "B/sample", "segment", **tag)
        seg.path.unlink()
    metric = np.asarray([s.metric for s in batch.series])
    fine = np.asarray([int(s.probe.rsplit("-", 1)[1]) % 2 == 1 for s in batch.series])
    groups = {"power_1W": (metric == "power") & ~fine, "power_0.1W": (metric == "power") & fine,
              "energy": metric == "energy", "network": np.char.startswith(metric.astype(str), "network"),
              "pdu(power+energy)": (metric == "power") | (metric == "energy")}
    for n, (name, pick) in enumerate(groups.items()):
        part = batch.select(pick[batch.sidx])
        for fmt in (1, segment.FORMAT):
            seg = write_segment(tmp, 10 + n, 10 + n, list(part.series), part.sidx.astype(np.int64),
                                part.t, part.v, fmt=fmt)
            emit("bytes_per_sample", seg.size / len(part), "B/sample", "segment", metric=name, format=fmt)
            seg.path.unlink()


def best_ms(fn, *args, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def bench_store(batch: Batch, tmp: Path, flush_every_s: int) -> None:
    pieces = batches(batch)
    raws = [encode_batch(b) for b in pieces]  # the bus hands these over with each batch
    for fsync, label in ((False, "store"), (True, "store fsync")):
        with Store(StoreConfig(path=tmp / f"rate-{fsync}", flush_interval=86400, fsync=fsync)) as store:
            n = min(len(pieces), 300 if fsync else len(pieces))
            start = time.perf_counter()
            for piece, raw in zip(pieces[:n], raws[:n]):
                store.handle(piece, raw)
            took = time.perf_counter() - start
            emit("handle_rate", sum(len(p) for p in pieces[:n]) / took, "samples/s", label,
                 batch_rows=10_000, note="WAL write + tail, raw bus bytes given")
    with Store(StoreConfig(path=tmp / "rate-noraw", flush_interval=86400)) as store:
        start = time.perf_counter()
        for piece in pieces:
            store.handle(piece)
        emit("handle_rate", len(batch) / (time.perf_counter() - start), "samples/s", "store",
             batch_rows=10_000, note="no raw bytes: handle() encodes")
        start = time.perf_counter()
        store.flush()
        emit("flush_rate", len(batch) / (time.perf_counter() - start), "samples/s", "store",
             note="the whole tail as one segment")
    with Store(StoreConfig(path=tmp / "steady", flush_interval=86400)) as store:
        edges = np.searchsorted(batch.t, np.arange(batch.t[0], batch.t[-1] + 1, flush_every_s * 1000)[1:])
        merging = 0.0
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(batch)]):
            store.handle(Batch(batch.series, batch.sidx[lo:hi], batch.t[lo:hi], batch.v[lo:hi]))
            store.flush()
            start = time.perf_counter()
            store.compact()
            merging += time.perf_counter() - start
        st = store.stats()
        emit("bytes_per_sample", st["segment_bytes"] / st["segment_rows"], "B/sample", "store",
             note=f"flushed every {flush_every_s} s of data, merged 8 by 8", format=segment.FORMAT, segments=st["segments"],
             merges=st["merges"])
        emit("merge_time_share", merging / (batch.t[-1] - batch.t[0]) * 1000, "s per s of data", "store")


def bench_parquet_float(batch: Batch, tmp: Path) -> None:
    table = rows_table(batch)
    table = table.sort_by([("probe", "ascending"), ("metric", "ascending"), ("t", "ascending")])
    path = tmp / "float.parquet"
    start = time.perf_counter()
    pq.write_table(table, path, compression="zstd")
    took = time.perf_counter() - start
    emit("write_rate", len(batch) / took, "samples/s", "parquet-float", note="sorted, pyarrow defaults")
    emit("bytes_per_sample", path.stat().st_size / len(batch), "B/sample", "parquet-float")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=86400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jitter-ms", type=int, default=0, help="per-read timestamp jitter (0: on the tick)")
    ap.add_argument("--flush-every", type=int, default=60, help="seconds of data per flush (steady state)")
    ap.add_argument("--only", choices=["duckdb", "segment", "store", "parquet-float"], action="append")
    ap.add_argument("--quick", action="store_true", help="one hour instead of one day (a smoke run)")
    args = parse_with_format(ap, "; the segment figures show both")
    if args.quick:
        args.seconds = min(args.seconds, 3600)
    batch = pdu_trace(args.probes, args.seconds, args.seed, jitter_ms=args.jitter_ms)
    emit("trace_samples", len(batch), "samples", "input", probes=args.probes, seconds=args.seconds,
         series=len(batch.series), jitter_ms=args.jitter_ms)
    todo = args.only or ["segment", "parquet-float", "duckdb", "store"]
    with tempfile.TemporaryDirectory(prefix="wattsight-bench-") as tmp:
        for name in todo:
            work = Path(tmp) / name
            work.mkdir()
            if name == "store":
                bench_store(batch, work, args.flush_every)
            else:
                run = {"duckdb": bench_duckdb, "segment": bench_segment, "parquet-float": bench_parquet_float}
                run[name](batch, work)


if __name__ == "__main__":
    main()
