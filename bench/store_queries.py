"""Query times of the embedded store with and without rollups, in the same run (issue 4, part 2).

A 1 Hz power trace of N probes x D days (0.1 W or 1 W resolution, noise, load phases, a few
gaps of 10 s .. 10 min) is generated hour by hour, stored through ``Store.handle`` and flushed
every hour of data (so the rollups are maintained as in production).  Then each query with
rollups (``Store.energy`` / ``Store.buckets``, best of 5 runs) and without (raw samples: ``read`` +
``energy.integrate`` / ``timeseries.buckets``, as the API did before; best of 3, energy once),
the answers checked equal.  The energy queries are also timed without the cells' gap columns
(``rollup_query.USE_GAP_COLUMNS = False``: a cell with a gap above the limit is replaced by finer
cells, as before they existed), in the same run, same answers:

- ``energy_all``: energy of every probe over the whole span (the raw path reads 100 probes at a
  time, to stay within memory); ``energy_all_1d``: over the first day only (with the whole span:
  how the cost grows with the span); ``energy_all_unaligned``: from 12 h 17.3 s after the start
  to 5 h 41.7 s before the end (edges inside minutes: raw samples there);
- ``probe_day``: one probe's last full day at 2,000 points at most (1 min buckets);
- ``week_100``: 100 probes over the last 7 days (or the whole span when shorter) as min/avg/max
  buckets, 2,000 points at most per probe (10 min buckets for a week: the 5 min cells).  Also timed
  without the 5 min level (``rollup_query.BUCKET_LEVELS``: from the 1 min cells, as before it
  existed) and cold (the rollups' partition cache emptied before each run: the first view after
  a start), same answers; cold also for 100 probes spread over all (every 10th): partitions are
  read by row groups of about 57 probes (rollup_parquet.GROUP_ROWS), so the first 100 probes read
  2 or 3 of each day's 18 groups and spread ones read all of them;
- ``backfill_5m``: building the 5 min level from the 1 min cells, as a store written before it
  existed does at its first start (on a copy of the store's rollups).

One JSON line per figure (``{"figure", "value", "unit", "engine", ...}``).  ``--quick``: 50
probes x 2 days.  Without it: ``--probes 1000 --days 3`` by default (2.6e8 samples; 1000 x 30
days would be 2.6e9, too much to generate in one run on a small machine: run ``--probes 100
--days 30`` for the long span).  ``--store DIR`` keeps the store (a later run with the same
options queries it again without generating the trace); ``--no-raw`` skips the raw path.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import T0_MS, emit, parse_with_format
from wattsight import energy, timeseries
from wattsight.config import StoreConfig
from wattsight.consumers.store import Store, rollup_query, rollup_sync, segment
from wattsight.consumers.store import rollup as ru
from wattsight.consumers.store.rollup_files import OLD_LEVELS, Rollups
from wattsight.sample import Batch, Series

HOUR, DAY = 3_600_000, 86_400_000
GAP_MS = 5_000


class Trace:
    """Power of ``probes`` probes at 1 Hz, one hour at a time (state carried between hours)."""

    def __init__(self, probes: int, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = probes
        self.level = self.rng.uniform(120, 450, probes)
        self.res = np.where(np.arange(probes) % 2 == 0, 1.0, 0.1)
        self.series = tuple(Series(f"bench.pdu-{i}", "power", "W") for i in range(probes))

    def hour(self, h: int) -> Batch:
        rng, n = self.rng, self.n
        change = rng.random((n, 3600)) < 1 / 1200  # a new load phase every 20 min on average
        jumps = np.where(change, rng.uniform(-150, 150, (n, 3600)), 0.0)
        level = np.clip(self.level[:, None] + np.cumsum(jumps, axis=1), 80, 600)
        self.level = level[:, -1]
        v = np.round((level + rng.normal(0, 1.5, (n, 3600))) / self.res[:, None]) * self.res[:, None]
        keep = np.ones((n, 3600), bool)
        for p in rng.choice(n, max(1, n // 50), replace=False):  # a few gaps of 10 s .. 10 min
            a = int(rng.integers(0, 3600))
            keep[p, a:a + int(rng.integers(10, 600))] = False
        t = T0_MS + h * HOUR + np.arange(3600, dtype=np.int64) * 1000
        sidx = np.repeat(np.arange(n, dtype=np.uint32)[None, :], 3600, axis=0).T  # (n, 3600)
        order = np.argsort(np.broadcast_to(t, (n, 3600))[keep], kind="stable")  # time order, as the bus
        return Batch(self.series, sidx[keep][order], np.broadcast_to(t, (n, 3600))[keep][order],
                     v[keep][order])


def best(fn, runs: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def raw_energy(store: Store, keys, start: int, end: int) -> float:
    total = 0.0
    for i in range(0, len(keys), 100):
        got = store.read(keys[i:i + 100], start - GAP_MS, end + GAP_MS)
        total += sum(energy.integrate(t, v, start, end, GAP_MS).joules for t, v in got.values())
    return total


def raw_buckets(store: Store, keys, start: int, end: int, step: int) -> int:
    got = store.read(keys, start, end)
    return sum(len(timeseries.buckets(t, v, start, end + 1, step)["t"]) for t, v in got.values())


def build(trace: Trace, days: int, store: Store, tag: dict) -> None:
    """Store the trace hour by hour, flushing (segment + rollups) after each hour of data."""
    samples, t_ingest, t_flush = 0, 0.0, 0.0
    for h in range(days * 24):
        batch = trace.hour(h)
        a = time.perf_counter()
        store.handle(batch)
        b = time.perf_counter()
        store.flush()  # segment + rollups of the hour
        store.compact()
        t_ingest += b - a
        t_flush += time.perf_counter() - b
        samples += len(batch)
    emit("store_queries.samples", samples, "samples", "embedded", **tag)
    emit("store_queries.handle_rate", samples / t_ingest, "samples/s", "embedded", **tag)
    emit("store_queries.flush_with_rollups_rate", samples / t_flush, "samples/s", "embedded", **tag)
    u = store.usage()
    emit("store_queries.rollup_bytes", u["rollup_bytes"], "B", "embedded", segment_bytes=u["segment_bytes"],
         **tag)


def run(probes: int, days: int, path: Path, raw: bool = True) -> None:
    trace = Trace(probes)
    tag = {"probes": probes, "days": days, "format": segment.FORMAT}
    reuse = (path / "segments").is_dir() and any((path / "segments").glob("*.parquet"))
    store = Store(StoreConfig(path=path, flush_interval=10**6))
    if not reuse:
        build(trace, days, store, tag)
    keys = [s.key for s in trace.series]
    start, end = T0_MS, T0_MS + days * DAY
    last_day = end - DAY
    week = max(start, end - 7 * DAY)
    week_step = timeseries.step_for(week, end, 2000)
    day_step = timeseries.step_for(last_day, end, 2000)
    odd = (start + 12 * HOUR + 17_300, end - 5 * HOUR - 41_700)  # edges inside minutes: raw samples there

    def energy_q(lo, hi):
        return (lambda: sum(e.joules for e in store.energy(keys, lo, hi, GAP_MS).values()),
                lambda: raw_energy(store, keys, lo, hi))

    queries = {
        "energy_all": energy_q(start, end),
        "energy_all_1d": energy_q(start, start + DAY),
        "energy_all_unaligned": energy_q(*odd),
        "probe_day": (lambda: len(store.buckets(keys[:1], last_day, end - 1, day_step)[keys[0]]["t"]),
                      lambda: raw_buckets(store, keys[:1], last_day, end - 1, day_step)),
        "week_100": (lambda: sum(len(b["t"]) for b in store.buckets(keys[:100], week, end - 1, week_step).values()),
                     lambda: raw_buckets(store, keys[:100], week, end - 1, week_step)),
    }
    spans = {"energy_all": (start, end), "energy_all_1d": (start, start + DAY), "energy_all_unaligned": odd}
    for name, (fast, slow) in queries.items():
        tf, a = best(fast, runs=5)
        extra = {"step_s": (week_step if name == "week_100" else day_step) / 1000} if name not in spans else {
            "span_h": round((spans[name][1] - spans[name][0]) / HOUR, 3)}
        emit(f"store_queries.{name}", tf * 1000, "ms", "embedded+rollups", **tag, **extra)
        if name in spans:  # the same query without the cells' gap columns (as before them)
            rollup_query.USE_GAP_COLUMNS = False
            try:
                tn, c = best(fast, runs=5)
            finally:
                rollup_query.USE_GAP_COLUMNS = True
            assert abs(a - c) <= 1e-9 * abs(c), (name, a, c)
            emit(f"store_queries.{name}", tn * 1000, "ms", "embedded+rollups, no gap columns", **tag, **extra)
            emit(f"store_queries.{name}.gap_columns_speedup", tn / tf, "x", "gap columns vs none", **tag)
        if not raw:
            continue
        ts, b = best(slow, runs=1 if name in spans else 3)
        if name in spans:
            assert abs(a - b) <= 1e-9 * abs(b), (name, a, b)
        else:
            assert a == b, (name, a, b)
        emit(f"store_queries.{name}", ts * 1000, "ms", "embedded raw", **tag, **extra)
        emit(f"store_queries.{name}.speedup", ts / tf, "x", "rollups vs raw", **tag)
    spread = keys[::10][:100]
    week_variants(store, queries["week_100"][0],
                  lambda: sum(len(b["t"]) for b in store.buckets(spread, week, end - 1, week_step).values()),
                  {**tag, "step_s": week_step / 1000})
    store.close()
    backfill(path, tag)


def week_variants(store: Store, query, spread, tag: dict) -> None:
    """``week_100`` without the 5 min level, and cold (``spread``: of probes spread over all), in
    the same run; the answers equal."""
    want = query()
    rollup_query.BUCKET_LEVELS = ("1m", "1h", "1d")
    try:
        tn, got = best(query, runs=3)
    finally:
        rollup_query.BUCKET_LEVELS = tuple(ru.LEVELS)
    assert got == want, (got, want)
    emit("store_queries.week_100", tn * 1000, "ms", "embedded+rollups, no 5 min level", **tag)
    R = store._rollups

    def cold(q):
        def run():
            with R._lock:  # as after a start (and the keys' numbers of the partitions forgotten)
                R._parts = OrderedDict((k, c) for k, c in R._parts.items() if k in R._dirty)
                getattr(R, "_luts", {}).clear()
            return q()
        return run
    tc, got = best(cold(query), runs=3)
    assert got == want, (got, want)
    emit("store_queries.week_100", tc * 1000, "ms", "embedded+rollups, cold cache", **tag)
    want = spread()
    ts, got = best(cold(spread), runs=3)
    assert got == want, (got, want)
    emit("store_queries.week_100", ts * 1000, "ms", "embedded+rollups, cold cache, spread probes", **tag)


def backfill(path: Path, tag: dict) -> None:
    """Time ``rollup_sync.backfill`` of the 5 min level on a copy of the store's rollups without it."""
    with tempfile.TemporaryDirectory(prefix="ws-bench-backfill-", dir=path.parent) as tmp:
        copy = Path(tmp) / "rollups"
        shutil.copytree(path / "rollups", copy, ignore=shutil.ignore_patterns("5m"))
        R = Rollups(copy)
        R.levels = list(OLD_LEVELS)
        a = time.perf_counter()
        rollup_sync.backfill(R)
        dt = time.perf_counter() - a
        emit("store_queries.backfill_5m", dt, "s", "embedded", partitions=len(R.files["5m"]), **tag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 probes x 2 days")
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--store", type=Path, help="keep the store here; a store already there is queried as is "
                    "(built with the same --probes/--days), without generating the trace again")
    ap.add_argument("--no-raw", action="store_true", help="only the rollup queries (no raw comparison)")
    args = parse_with_format(ap)
    probes, days = (50, 2) if args.quick else (args.probes, args.days)
    if args.store:
        run(probes, days, args.store, not args.no_raw)
        return
    with tempfile.TemporaryDirectory(prefix="ws-bench-queries-") as tmp:
        run(probes, days, Path(tmp) / "store", not args.no_raw)


if __name__ == "__main__":
    main()
