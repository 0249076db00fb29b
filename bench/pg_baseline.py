"""PostgreSQL side by side: wattsight's PgStore against a plain Kwollect-like table, same trace, same queries.

Run:  .venv/bin/python bench/pg_baseline.py [--probes 100] [--seconds 86400] [--seed 1] [--quick]
      [--dsn "host=127.0.0.1 user=postgres dbname=test"] [--keep]

The trace is bench/store_engines.py's (bench/common.py: pdu_trace): per probe, power at 1 W or
0.1 W resolution, an energy register and two byte counters at 1 Hz, with gaps.  One JSON line
per figure, ``{"figure", "value", "unit", "engine", ...}``:

- ingest (samples/s): ``pgstore`` -- PgStore.handle() on 10k-sample batches, ack "queued"
  (the whole trace; the rate counts until flush() returned), then on the first --prefix
  batches ack "commit" (one transaction per batch) and "queued" with and without rollups;
  ``kwollect`` -- the same 10k batches COPYed (CSV, built beforehand by pyarrow) into
  Kwollect's layout: ``metrics (timestamp, device_id, metric_id, value, labels jsonb)``
  indexed on (device_id, metric_id, timestamp), one transaction per batch;
- bytes/sample: pg_total_relation_size (heap, indexes, TOAST; PgStore with and without its
  rollup tables);
- queries, median of 5 after a warm-up (ms): the energy of every probe over the whole span
  from its energy counter (last - first), the same from power (sum of 1 Hz power: PgStore
  from its 1 h rollups, Kwollect over every raw row), one probe's day at 2,000 points
  (min/avg/max buckets of 43.2 s, raw on both), and a week (or the whole trace if shorter)
  of 100 probes as min/avg/max buckets of about 1/168 of the span (PgStore: its rollups).

Each engine gets its own schema of the database, dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import psycopg

from bench.common import batches, emit, pdu_trace
from wattsight.consumers.pgstore import PgStore, PgStoreConfig
from wattsight.consumers.pgstore.read import when
from wattsight.sample import Batch

KWOLLECT_DDL = """
CREATE TABLE {s}.metrics (timestamp timestamptz NOT NULL, device_id text NOT NULL, metric_id text NOT NULL,
                          value double precision, labels jsonb NOT NULL DEFAULT '{{}}'::jsonb);
CREATE INDEX ON {s}.metrics (device_id, metric_id, timestamp DESC);
"""


def timed(fn, repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in ms, after one warm-up run."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def size(conn, schema: str, tables: tuple[str, ...] | None = None) -> int:
    rows = conn.execute("SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                        (schema,)).fetchall()
    return sum(b for name, b in rows if tables is None or name.startswith(tables))


def ingest_pgstore(dsn: str, schema: str, pieces: list[Batch], n: int, **cfg) -> float:
    """Samples/s through PgStore.handle() for the first ``n`` pieces, until flush() returned."""
    store = PgStore(PgStoreConfig(dsn=dsn, schema=schema, partition="day", **cfg))
    start = time.perf_counter()
    for piece in pieces[:n]:
        store.handle(piece)
    store.flush()
    took = time.perf_counter() - start
    store.close()
    return sum(len(p) for p in pieces[:n]) / took


def csv_pieces(pieces: list[Batch]) -> list[bytes]:
    """Each batch as Kwollect rows in CSV (timestamp, device_id, metric_id, value), by pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    out = []
    for b in pieces:
        probes = pa.array([s.probe for s in b.series])
        metrics = pa.array([s.metric for s in b.series])
        idx = pa.array(b.sidx.astype(np.int32))
        table = pa.table({"timestamp": pa.array(b.t, pa.timestamp("ms", tz="UTC")),
                          "device_id": probes.take(idx), "metric_id": metrics.take(idx), "value": b.v})
        buf = io.BytesIO()
        pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False))
        out.append(buf.getvalue())
    return out


def ingest_kwollect(conn, schema: str, pieces: list[Batch]) -> tuple[float, float]:
    """(rows/s of the COPYs, rows/s of building the CSV) into the Kwollect-like table."""
    start = time.perf_counter()
    texts = csv_pieces(pieces)
    build = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts:
        copy = f"COPY {schema}.metrics (timestamp, device_id, metric_id, value) FROM STDIN (FORMAT CSV)"
        with conn.transaction(), conn.cursor().copy(copy) as cp:
            cp.write(text)
    rows = sum(len(p) for p in pieces)
    return rows / (time.perf_counter() - start), rows / build


ENERGY_PG = """SELECT se.probe,
    (SELECT v FROM {s}.samples WHERE series_id = se.id AND t <= %s ORDER BY t DESC LIMIT 1)
  - (SELECT v FROM {s}.samples WHERE series_id = se.id AND t >= %s ORDER BY t LIMIT 1)
FROM {s}.series se WHERE se.metric = 'energy' AND se.probe = ANY(%s)"""
ENERGY_KW = """SELECT d,
    (SELECT value FROM {kw}.metrics WHERE device_id = d AND metric_id = 'energy' AND timestamp <= %s
     ORDER BY timestamp DESC LIMIT 1)
  - (SELECT value FROM {kw}.metrics WHERE device_id = d AND metric_id = 'energy' AND timestamp >= %s
     ORDER BY timestamp LIMIT 1)
FROM unnest(%s::text[]) AS d"""
SUM_PG = """SELECT se.probe, sum(r.vsum) FROM {s}.rollup_1h r JOIN {s}.series se ON se.id = r.series_id
WHERE se.metric = 'power' AND r.bucket >= %s AND r.bucket < %s GROUP BY 1"""
SUM_KW = """SELECT device_id, sum(value) FROM {kw}.metrics
WHERE metric_id = 'power' AND timestamp >= %s AND timestamp < %s GROUP BY 1"""
BUCKETS_KW = """SELECT device_id, date_bin(%s::interval, timestamp, %s), count(*),
       min(value), avg(value), max(value)
FROM {kw}.metrics WHERE device_id = ANY(%s) AND metric_id = 'power' AND timestamp >= %s AND timestamp < %s
GROUP BY 1, 2 ORDER BY 1, 2"""


def queries(conn, store: PgStore, kw: str, probes: list[str], first: int, last: int) -> None:
    """The same questions to both layouts, over [first, last]."""
    s = f'"{store.layout.schema}"'
    lo, hi = when(first), when(last)
    energy_pg, energy_kw = ENERGY_PG.format(s=s), ENERGY_KW.format(kw=kw)
    a = sorted(conn.execute(energy_pg, (hi, lo, probes)).fetchall())
    assert a == sorted(conn.execute(energy_kw, (hi, lo, probes)).fetchall()), "the layouts disagree on energy"
    for engine, q in (("pgstore", energy_pg), ("kwollect", energy_kw)):
        emit("energy_counter_query", timed(lambda q=q: conn.execute(q, (hi, lo, probes)).fetchall()), "ms",
             engine, probes=len(probes), note="last - first of each probe's energy counter over the span")

    end_hour = when(first + (last + 1 - first) // 3_600_000 * 3_600_000)
    for engine, q, how in (("pgstore", SUM_PG.format(s=s), "its 1 h rollups"),
                           ("kwollect", SUM_KW.format(kw=kw), "every raw row")):
        took = timed(lambda q=q: conn.execute(q, (lo, end_hour)).fetchall(), repeat=3)
        emit("energy_from_power_query", took, "ms", engine, probes=len(probes),
             note=f"sum of 1 Hz power over whole hours, from {how}")

    day = min(last + 1, first + 86_400_000)
    buckets(conn, store, kw, "day_at_2000_points", probes[:1], first, day, (day - first) // 2000)
    week = min(last + 1, first + 7 * 86_400_000)
    step = max(60_000, (week - first) // 168 // 60_000 * 60_000)  # whole minutes: the rollups answer
    buckets(conn, store, kw, "week_of_100_probes", probes[:100], first, week, step)


def buckets(conn, store: PgStore, kw: str, figure: str, probes: list[str], first: int, end: int,
            step: int) -> None:
    """min/avg/max buckets of ``step`` ms of power for ``probes`` over [first, end)."""
    end = first + (end - first) // step * step
    keys = [(p, "power") for p in probes]
    got = store.buckets(keys, first, end - 1, step)
    took = timed(lambda: store.buckets(keys, first, end - 1, step))
    emit(figure, took, "ms", "pgstore", probes=len(probes), step_ms=step,
         points=sum(len(g["t"]) for g in got.values()),
         note="PgStore.buckets(): " + ("its rollups" if step % 60_000 == 0 else "raw samples"))
    args = (f"{step} milliseconds", when(first), probes, when(first), when(end))
    q = BUCKETS_KW.format(kw=kw)
    took = timed(lambda: conn.execute(q, args).fetchall(), repeat=3)
    emit(figure, took, "ms", "kwollect", probes=len(probes), step_ms=step)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=86400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument("--prefix", type=int, default=200, help="batches for the 'commit' and 'no rollups' rates")
    ap.add_argument("--keep", action="store_true", help="leave the schemas in the database")
    ap.add_argument("--quick", action="store_true", help="20 probes for one hour (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.probes, args.seconds, args.prefix = min(args.probes, 20), min(args.seconds, 3600), 20
    trace = pdu_trace(args.probes, args.seconds, args.seed)
    pieces = batches(trace)
    emit("trace_samples", len(trace), "samples", "input", probes=args.probes, seconds=args.seconds,
         series=len(trace.series))
    tag = uuid.uuid4().hex[:8]
    schemas = {k: f"bench_{k}_{tag}" for k in ("queued", "commit", "prefix", "norollup", "kwollect")}
    conn = psycopg.connect(args.dsn, autocommit=True)
    try:
        n = len(pieces)
        emit("ingest_rate", ingest_pgstore(args.dsn, schemas["queued"], pieces, n, ack="queued"), "samples/s",
             "pgstore", ack="queued", batch_rows=10_000, note="whole trace, until flush() returned")
        k = min(args.prefix, n)
        emit("ingest_rate", ingest_pgstore(args.dsn, schemas["commit"], pieces, k, ack="commit"), "samples/s",
             "pgstore", ack="commit", batches=k, note="a transaction per 10k batch")
        emit("ingest_rate", ingest_pgstore(args.dsn, schemas["prefix"], pieces, k, ack="queued"), "samples/s",
             "pgstore", ack="queued", batches=k, note="the same prefix, for the next figure")
        rate = ingest_pgstore(args.dsn, schemas["norollup"], pieces, k, ack="queued", rollups=False)
        emit("ingest_rate", rate, "samples/s", "pgstore", ack="queued", rollups=False, batches=k)
        conn.execute(f"CREATE SCHEMA {schemas['kwollect']}")
        conn.execute(KWOLLECT_DDL.format(s=schemas["kwollect"]))
        copy_rate, csv_rate = ingest_kwollect(conn, schemas["kwollect"], pieces)
        emit("ingest_rate", copy_rate, "samples/s", "kwollect", note="COPY CSV, a transaction per 10k batch")
        emit("csv_build_rate", csv_rate, "samples/s", "kwollect",
             note="pyarrow CSV writer, not in the rate above")
        total = size(conn, schemas["queued"])
        emit("bytes_per_sample", total / len(trace), "B/sample", "pgstore", note="samples + rollups + series")
        samples = size(conn, schemas["queued"], ("samples",))
        emit("bytes_per_sample", samples / len(trace), "B/sample", "pgstore",
             note="samples table (heap + primary key) only")
        emit("bytes_per_sample", size(conn, schemas["kwollect"]) / len(trace), "B/sample", "kwollect",
             note="heap + (device_id, metric_id, timestamp) index")
        store = PgStore(PgStoreConfig(dsn=args.dsn, schema=schemas["queued"], partition="day"))
        store.compact()  # ANALYZE
        conn.execute(f"ANALYZE {schemas['kwollect']}.metrics")
        first = int(trace.t[0])
        probes = sorted({s.probe for s in trace.series})
        queries(conn, store, schemas["kwollect"], probes, first, first + args.seconds * 1000 - 1)
        store.close()
    finally:
        if not args.keep:
            for schema in schemas.values():
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


if __name__ == "__main__":
    main()
