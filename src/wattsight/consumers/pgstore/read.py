"""Reading the PostgreSQL store: raw samples, buckets (from rollups when they fit), series summaries.

Large answers come back as binary ``COPY (SELECT ...) TO STDOUT`` streams decoded by numpy in
one step (fixed-width rows: no Python object per sample), so values keep every bit.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from ...sample import Series
from ..store.tail import SeriesInfo
from .ingest import copy_dtype
from .schema import EPOCH_MS, MAX_MS, MIN_MS, ROLLUPS, Layout

Key = tuple[str, str]
_HEADER = 19  # signature (11), flags (4), header extension length (4, always 0 from PostgreSQL)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def when(ms: int) -> dt.datetime:
    """A time in ms as an exact timestamptz parameter, clamped to what the store can hold."""
    return _EPOCH + dt.timedelta(milliseconds=min(max(int(ms), MIN_MS), MAX_MS))


def copy_out(conn, query: str, params, types: list[str]) -> list[np.ndarray]:
    """Run ``query`` as a binary COPY and return its columns (timestamptz as ms since 1970)."""
    buf = bytearray()
    with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy:
        for block in copy:
            buf += block
    dtype = copy_dtype(types)
    rows = np.frombuffer(buf, dtype, count=max(len(buf) - _HEADER - 2, 0) // dtype.itemsize, offset=_HEADER)
    cols = []
    for i, typ in enumerate(types):
        col = rows[f"c{i}"]
        col = col // 1000 + EPOCH_MS if typ == "timestamptz" else col
        cols.append(col.astype(col.dtype.newbyteorder("=")))
    return cols


def key_ids(conn, lay: Layout, keys: list[Key]) -> tuple[list[int], list[int]]:
    """The database ids of the series of ``keys`` and, for each, the index of its key."""
    rows = conn.execute(
        f"SELECT se.id, k.j FROM {lay.q('series')} se JOIN unnest(%s::text[], %s::text[]) "
        "WITH ORDINALITY AS k(probe, metric, j) ON se.probe = k.probe AND se.metric = k.metric "
        "ORDER BY se.id",
        ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
    return [r[0] for r in rows], [int(r[1]) - 1 for r in rows]


def read_raw(conn, lay: Layout, keys: list[Key], start_ms: int, end_ms: int) -> dict[Key, list]:
    """Per key, the stored (t, v) in [start, end], as a list of parts (one per series of the key)."""
    ids, owner = key_ids(conn, lay, keys)
    parts: dict[Key, list] = {k: [] for k in keys}
    if not ids:
        return parts
    query = (f"SELECT series_id, t, v FROM {lay.q('samples')} WHERE series_id = ANY(%s::int4[]) "
             "AND t >= %s AND t <= %s ORDER BY series_id, t")
    sid, t, v = copy_out(conn, query, (ids, when(start_ms), when(end_ms)), ["int4", "timestamptz", "float8"])
    bounds = np.searchsorted(sid, ids, side="left"), np.searchsorted(sid, ids, side="right")
    for i, j in enumerate(owner):
        lo, hi = int(bounds[0][i]), int(bounds[1][i])
        if hi > lo:
            parts[keys[j]].append((t[lo:hi], v[lo:hi]))
    return parts


def rollup_level(start_ms: int, end_ms: int, step_ms: int) -> str | None:
    """The coarsest rollup whose buckets tile [start, end] into steps exactly, or None (raw)."""
    for name in reversed(ROLLUPS):
        size = ROLLUPS[name][0]
        if step_ms % size == 0 and (start_ms - EPOCH_MS) % size == 0 and (end_ms + 1 - EPOCH_MS) % size == 0:
            return name
    return None


def buckets(conn, lay: Layout, keys: list[Key], start_ms: int, end_ms: int, step_ms: int) -> dict[Key, dict]:
    """Per key: buckets of ``step_ms`` from ``start_ms``: t (bucket start), n, min, avg, max, last.

    Read from the coarsest rollup table that fits exactly (the step a multiple of its bucket,
    start and end + 1 ms on its bucket edges); otherwise aggregated from the raw samples.
    """
    ids, owner = key_ids(conn, lay, keys)
    empty = {k: {"t": np.zeros(0, np.int64), "n": np.zeros(0, np.int64), "min": np.zeros(0),
                 "avg": np.zeros(0), "max": np.zeros(0), "last": np.zeros(0)} for k in keys}
    if not ids:
        return empty
    level = rollup_level(start_ms, end_ms, step_ms) if lay.rollups else None
    if level is None:
        src, tcol = lay.q("samples"), "t"
        agg = "count(*), min(x.v), max(x.v), sum(x.v), (array_agg(x.v ORDER BY x.t DESC))[1]"
    else:
        src, tcol = lay.q("rollup_" + level), "bucket"
        agg = ("sum(x.n)::int8, min(x.vmin), max(x.vmax), sum(x.vsum), "
               "(array_agg(x.last_v ORDER BY x.last_t DESC))[1]")
    query = (f"SELECT k.j::int4, date_bin(%s::interval, x.{tcol}, %s) AS b, {agg} FROM {src} x "
             "JOIN unnest(%s::int4[], %s::int4[]) AS k(id, j) ON k.id = x.series_id "
             f"WHERE x.series_id = ANY(%s::int4[]) AND x.{tcol} >= %s AND x.{tcol} <= %s "
             "GROUP BY k.j, b ORDER BY k.j, b")
    first = when(start_ms)
    params = (dt.timedelta(milliseconds=step_ms), first, ids, owner, ids, first, when(end_ms))
    j, b, n, vmin, vmax, vsum, last = copy_out(
        conn, query, params, ["int4", "timestamptz", "int8", "float8", "float8", "float8", "float8"])
    out = dict(empty)
    for i, key in enumerate(keys):
        lo, hi = np.searchsorted(j, i), np.searchsorted(j, i, side="right")
        if hi > lo:
            with np.errstate(invalid="ignore", divide="ignore"):
                avg = vsum[lo:hi] / n[lo:hi]
            out[key] = {"t": b[lo:hi], "n": n[lo:hi], "min": vmin[lo:hi], "avg": avg, "max": vmax[lo:hi],
                        "last": last[lo:hi]}
    return out


def summaries(conn, lay: Layout) -> list[SeriesInfo]:
    """Every series with samples, from the summary kept with each transaction."""
    rows = conn.execute(f"SELECT probe, metric, unit, kind, provenance, n, first_ms, last_ms, last_v "
                        f"FROM {lay.q('series')} WHERE n > 0 ORDER BY id").fetchall()
    return [SeriesInfo(Series(*r[:5]), int(r[5]), int(r[6]), int(r[7]), float(r[8])) for r in rows]


def disk_bytes(conn, lay: Layout) -> int:
    """Bytes of the schema's tables, with their indexes and TOAST (TimescaleDB: its chunks too)."""
    if lay.timescale:
        got = conn.execute("SELECT hypertable_size(%s::regclass)", (lay.q("samples"),)).fetchone()[0]
        return int(got or 0)
    return int(conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
        (lay.schema,)).fetchone()[0])

