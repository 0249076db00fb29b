"""Queries answered from rollup cells where they fit, raw samples elsewhere.

* :func:`buckets` (min/avg/max/last per step, the PostgreSQL backend's ``buckets``): whole buckets
  of a step that is a multiple of a rollup level come from that level's cells; the last partial
  bucket and the buckets holding samples not yet flushed come from raw samples.
* :func:`energy`: the range is cut into whole days, hours and minutes (cells of those levels) and
  raw samples at both edges (an edge on a minute, or 1 ms before it, needs only the sample just
  outside: it comes from the 1 min cells); a cell whose longest inner interval is above the
  probe's gap limit is replaced by its finer cells, read only for the keys and partitions that
  need them, down to raw samples (one read per hour holding such minutes).  A cell whose gaps are
  all above the limit and whose other intervals are all within it is used without its gaps
  (:func:`rollup.usable`), so gaps of a few minutes cost no finer read.  :func:`rollup.combine`
  joins them.

Reads of many partitions take those already in memory first (Rollups.read, and here the finer
cells of a level's bad cells), so that a query needing a little more than the rollups' memory
budget misses only the excess instead of every partition (a scan in time order through a
least-recently-used cache misses all).

Both skip the cells of any time at or after the oldest sample still in memory (the tail): those
are read raw, so a late sample is seen before its cells are recomputed.
"""

from __future__ import annotations

import numpy as np

from ...energy import Energy
from . import rollup as ru
from .rollup_sync import raw_columns

Key = tuple[str, str]
M = ru.LEVELS["1m"]
_FINER = {"1d": "1h", "1h": "1m"}
#: False: cells with a gap above the limit are never used whole (the way before the gap columns;
#: bench/store_queries.py measures both in one run).
USE_GAP_COLUMNS = True
#: The levels buckets() may read (bench/store_queries.py measures a week without the 5 min level).
BUCKET_LEVELS = tuple(ru.LEVELS)


def _ceil(x: int, size: int) -> int:
    return -(-x // size) * size


def _raw(store, R, keys: list[Key], kids: np.ndarray, lo: int, hi: int) -> ru.Cells:
    """Raw samples of ``keys`` in [lo, hi] as one-sample pieces."""
    if hi < lo:
        return ru.empty()
    return ru.points(*raw_columns(store, keys, kids, lo, hi))


def _cached(R, level: str) -> set[int]:
    """Starts of the partitions of ``level`` in the rollups' memory now."""
    with R._lock:
        return {p for lv, p in R._parts if lv == level}


def _hot_first(R, level: str, starts: list[int]) -> list[int]:
    """Partition starts, those in memory first: a read of more partitions than the memory holds
    (least recently used out) then hits every one it can, where a scan in time order misses all."""
    hot = _cached(R, level)
    return sorted(starts, key=lambda p: (p not in hot, p))


def _usable(store, R) -> tuple[bool, int | None]:
    """(rollups usable, oldest time still in memory or None).  The span is taken before any cell
    is read: cells updated meanwhile only ever hold more of what is then read raw."""
    return (not R.broken), store.unflushed_span()


def buckets(store, R, keys: list[Key], start_ms: int, end_ms: int, step_ms: int,
            use_rollups: bool = True) -> dict[Key, dict]:
    """Per key: buckets of ``step_ms`` from ``start_ms`` over [start, end]: t, n, min, avg, max, last."""
    ok, dirty = _usable(store, R)
    kids = np.asarray([R.kid(k) for k in keys], np.int64)
    level = next((lv for lv in reversed(BUCKET_LEVELS) if step_ms % ru.LEVELS[lv] == 0
                  and start_ms % ru.LEVELS[lv] == 0), None)
    whole = start_ms
    if ok and use_rollups and level is not None:
        whole = start_ms + (end_ms + 1 - start_ms) // step_ms * step_ms
        if dirty is not None:
            whole = min(whole, start_ms + max(dirty - start_ms, 0) // step_ms * step_ms)
    parts = []
    if whole > start_ms:
        parts.append(ru.to_buckets(R.read(level, kids, start_ms, whole, ru.STATS), start_ms, step_ms))
    if end_ms >= whole:
        pts = ru.sort(_raw(store, R, keys, kids, whole, end_ms))
        parts.append(ru.to_buckets(pts, start_ms, step_ms))
    parts = [p for p in parts if len(p["kid"])]
    cells = parts[0] if len(parts) == 1 else ru.sort(ru.concat(parts))  # each sorted by (kid, b)
    out = {}
    for key, kid in zip(keys, kids.tolist()):
        lo, hi = np.searchsorted(cells["kid"], [kid, kid + 1])
        n = cells["n"][lo:hi]
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = cells["sum"][lo:hi] / n
        out[key] = {"t": cells["b"][lo:hi], "n": n, "min": cells["min"][lo:hi], "avg": avg,
                    "max": cells["max"][lo:hi], "last": cells["last_v"][lo:hi]}
    return out


def _plan(a: int, b: int) -> list[tuple[str, int, int]]:
    """[a, b) (on minute edges) as ranges of whole days, hours and minutes."""
    out = []
    ha, hb = _ceil(a, ru.LEVELS["1h"]), b // ru.LEVELS["1h"] * ru.LEVELS["1h"]
    if ha >= hb:
        return [("1m", a, b)]
    da, db = _ceil(ha, ru.LEVELS["1d"]), hb // ru.LEVELS["1d"] * ru.LEVELS["1d"]
    out.append(("1m", a, ha))
    if da < db:
        out += [("1h", ha, da), ("1d", da, db), ("1h", db, hb)]
    else:
        out.append(("1h", ha, hb))
    out.append(("1m", hb, b))
    return [r for r in out if r[1] < r[2]]


def energy(store, R, keys: list[Key], start_ms: int, end_ms: int, gap_ms: list[int],
           use_rollups: bool = True) -> dict[Key, Energy]:
    """Per key, the energy (gauges: integrated, in value x s) or increase (counters) over
    [start, end], equal to :func:`wattsight.energy.integrate` / ``counter_increase`` on the raw
    samples up to float rounding; coverage exactly equal."""
    ok, dirty = _usable(store, R)
    kids = np.asarray([R.kid(k) for k in keys], np.int64)
    n = len(R.keys) + 1
    gap = np.zeros(n, np.int64)
    gap[kids] = gap_ms
    counter = np.append(R.counter, False)[:n]  # keys registered meanwhile are not asked for
    wrap = np.append(R.wrap, np.nan)[:n]
    pad = max(gap_ms, default=0)
    a, b = _ceil(start_ms, M), (end_ms + 1) // M * M
    if dirty is not None:
        b = min(b, dirty // M * M)
    pieces = []
    if not (ok and use_rollups) or a >= b:
        pieces.append(_raw(store, R, keys, kids, start_ms - pad, end_ms + pad))
    else:
        # only the last sample before a (first at or after b) matters when no sample of [start, a)
        # (of (b, end]) can be inside the range: start on a minute edge or 1 ms before, same at b
        left = _edge(R, kids, start_ms - pad, a, last=True) if a - start_ms <= 1 else None
        right = _edge(R, kids, b, end_ms + pad + 1, last=False) if end_ms - b <= 0 and (
            dirty is None or dirty > end_ms + pad) else None
        pieces += [left or _raw(store, R, keys, kids, start_ms - pad, a - 1),
                   right or _raw(store, R, keys, kids, b, end_ms + pad)]
        for level, lo, hi in _plan(a, b):
            pieces += _cells(store, R, keys, kids, level, lo, hi, gap)
    amount, covered = ru.combine(ru.concat(pieces), n, start_ms, end_ms, gap, counter, wrap)
    rng = max(end_ms - start_ms, 0)
    return {key: Energy(float(amount[k]), int(covered[k]), rng) if rng else Energy.zero(0)
            for key, k in zip(keys, kids.tolist())}


def _edge(R, kids, lo: int, hi: int, *, last: bool) -> ru.Cells | None:
    """On a minute edge, the sample just outside the range from the 1 min cells of [lo, hi):
    each key's last (before the range) or first (after it) sample, without reading raw files."""
    cells = R.read("1m", kids, lo // M * M, _ceil(hi, M))
    if not len(cells["kid"]):
        return ru.empty()
    kid = cells["kid"]
    ends = np.flatnonzero(np.append(kid[1:] != kid[:-1], True))
    pick = ends if last else np.append(0, ends[:-1] + 1)
    c = "last" if last else "first"
    return ru.points(kid[pick], cells[f"{c}_t"][pick], cells[f"{c}_v"][pick])


def _cells(store, R, keys, kids, level, lo, hi, gap) -> list[ru.Cells]:
    """Cells of ``level`` in [lo, hi) usable with each key's gap limit, finer ones (or raw
    samples) in place of the others.  The finer cells of a bad cell are in one partition of the
    finer level (an hour of 1 min cells, a day of 1 h cells): only those, and only for the keys
    with a bad cell there, are read."""
    cells = R.read(level, kids, lo, hi)
    out = []
    while True:
        if USE_GAP_COLUMNS:
            ok, acc, acc_ms = ru.usable(cells, gap)
            cells = dict(cells, acc=acc, acc_ms=acc_ms)
        else:
            ok = cells["max_dt"] <= gap[cells["kid"]]
        bad = ~ok
        out.append(ru.take(cells, ok))
        if not bad.any():
            return out
        size = ru.LEVELS[level]
        bk, bb = cells["kid"][bad], cells["b"][bad]
        if level not in _FINER:  # minutes with a gap inside: their raw samples (rare)
            out += _raw_minutes(store, R, keys, kids, bk, bb)
            return out
        level = _FINER[level]
        cells = ru.concat([R.read(level, np.unique(bk[bb == b]), b, b + size)  # one partition each
                           for b in _hot_first(R, level, np.unique(bb).tolist())])


def _raw_minutes(store, R, keys, kids, bk: np.ndarray, bb: np.ndarray) -> list[ru.Cells]:
    """Raw samples of the (kid, minute) pairs ``bk``, ``bb``: one read per hour holding such
    minutes (a read decodes whole row groups, so minutes of one hour are read together)."""
    by_key = dict(zip(kids.tolist(), keys))
    want = bk * (1 << 32) + bb // M
    hour = bb // ru.LEVELS["1h"]
    out = []
    for h in np.unique(hour).tolist():
        sel = hour == h
        ks = np.unique(bk[sel])
        got = _raw(store, R, [by_key[k] for k in ks.tolist()], ks, int(bb[sel].min()), int(bb[sel].max()) + M - 1)
        if len(got["kid"]):
            out.append(ru.take(got, np.isin(got["kid"] * (1 << 32) + got["b"] // M, want)))
    return out
