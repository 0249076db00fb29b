"""Rollup maths: per (key, bucket) *cells* from raw samples, coarser cells from finer ones, and
energy or min/avg/max buckets put together from cells and raw samples.  numpy only.

A cell summarises the **finite** samples of one series key inside one bucket ``[b, b + size)``
(non-finite values are missing readings, as in :mod:`wattsight.energy` and
:mod:`wattsight.timeseries`):

========== =====================================================================================
n, sum     how many samples, their sum (avg = sum / n)
min, max   extremes
first_t/v  the first sample; last_t/v the last one
acc        the amount over the *inner* intervals (both samples inside the bucket): for a gauge
           the trapezoid integral in value x ms (power: mJ); for a counter its increase, a
           lower reading being a wrap (``wrap`` > 0) or a reset (``wrap`` NaN), as
           :func:`wattsight.energy.wrap_deltas`
acc_ms     the summed length of the inner intervals
max_dt     the longest inner interval: the cell's ``acc`` is usable for a query whose gap
           limit is at least ``max_dt``
gap_acc,   the part of ``acc`` and ``acc_ms`` over the inner intervals longer than
gap_ms     ``GAP_FLOOR_MS`` (5 s: the API's default gap limit) -- the cell's *gaps*
gap_dt_min the shortest of those intervals (``NO_GAP`` when there is none)
short_max  the longest inner interval of at most ``GAP_FLOOR_MS`` (0 when there is none)
========== =====================================================================================

So a query with gap limit ``G`` uses a cell whole when ``max_dt <= G`` (every inner interval
bridged: ``acc``, ``acc_ms``) or when ``short_max <= G < gap_dt_min`` (exactly the gaps left out:
``acc - gap_acc``, ``acc_ms - gap_ms``); only otherwise does it descend to finer cells or raw
samples (:func:`usable`).  A 1 Hz series with a few gaps of minutes is thus answered from its
day cells at any gap limit from 5 s up to its shortest gap.  Cells written before these columns
existed read with ``gap_acc = gap_ms = 0``, ``gap_dt_min = NO_GAP``, ``short_max = max_dt``:
usable exactly when they were before.

Intervals between two cells are not in either: a query joins consecutive cells (and raw samples
at its edges) with :func:`combine`, which applies the gap rule and the range clipping exactly as
:func:`wattsight.energy.integrate` and :func:`~wattsight.energy.counter_increase` do, so that a
query answered from cells equals the raw answer up to float rounding.
"""

from __future__ import annotations

import numpy as np

LEVELS: dict[str, int] = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}
COLUMNS = {"kid": np.int64, "b": np.int64, "n": np.int64, "sum": np.float64, "min": np.float64,
           "max": np.float64, "first_t": np.int64, "first_v": np.float64, "last_t": np.int64,
           "last_v": np.float64, "acc": np.float64, "acc_ms": np.int64, "max_dt": np.int64,
           "gap_acc": np.float64, "gap_ms": np.int64, "gap_dt_min": np.int64, "short_max": np.int64}
#: Inner intervals longer than this are a cell's gaps (gap_acc, gap_ms, gap_dt_min); see the module doc.
GAP_FLOOR_MS = 5_000
NO_GAP = np.iinfo(np.int64).max
#: The gap columns of cells written before they existed (see the module doc); short_max = max_dt.
OLD_GAP_COLUMNS = {"gap_acc": 0.0, "gap_ms": 0, "gap_dt_min": NO_GAP}

Cells = dict[str, np.ndarray]
#: The columns min/avg/max/last buckets are made of (:func:`to_buckets`), besides kid and b.
STATS = ("n", "sum", "min", "max", "first_t", "first_v", "last_t", "last_v")


def empty() -> Cells:
    return {c: np.zeros(0, dt) for c, dt in COLUMNS.items()}


def concat(parts: list[Cells]) -> Cells:
    parts = [p for p in parts if len(p["kid"])]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}  # all columns, or those read


def take(cells: Cells, pick) -> Cells:
    return {c: a[pick] for c, a in cells.items()}


def sort(cells: Cells) -> Cells:
    if len(cells["kid"]) < 2:
        return cells
    return take(cells, np.lexsort((cells["b"], cells["kid"])))


def step_amount(t0, v0, t1, v1, counter: np.ndarray, wrap: np.ndarray) -> np.ndarray:
    """Per interval: the trapezoid (value x ms) for gauges, the increase for counters."""
    dt = (t1 - t0).astype(np.float64)
    gauge = dt * (v0 + (v1 - v0) * 0.5)
    delta = v1 - v0
    down = delta < 0
    if down.any():
        wrapped = np.where(np.isnan(wrap), v1, (wrap - v0) + v1)
        delta = np.where(down, wrapped, delta)
    return np.where(counter, delta, gauge)


def _starts(*cols: np.ndarray) -> np.ndarray:
    change = np.zeros(len(cols[0]), bool)
    change[0] = True
    for c in cols:
        change[1:] |= c[1:] != c[:-1]
    return np.flatnonzero(change)


def from_raw(kid: np.ndarray, t: np.ndarray, v: np.ndarray, size: int, counter: np.ndarray,
             wrap: np.ndarray) -> Cells:
    """Cells of ``size`` ms from samples sorted by (kid, t) with unique t per kid.

    ``counter`` and ``wrap`` are indexed by kid (bool, and the wrap range or NaN).  Every flush
    passes its millions of rows through here: each step is one pass over them at most, and what
    only some cells need (counters, gaps) is computed where it is needed."""
    ok = np.isfinite(v)
    if not ok.all():
        kid, t, v = kid[ok], t[ok], v[ok]
    n = len(t)
    if not n:
        return empty()
    q = t // size  # the bucket of each row, as a number (times size: its start)
    brk = np.empty(n, bool)  # row i starts a cell
    brk[0] = True
    np.not_equal(kid[1:], kid[:-1], out=brk[1:])
    brk[1:] |= q[1:] != q[:-1]
    starts = np.flatnonzero(brk)
    del brk
    ends = np.append(starts[1:], n) - 1
    dt = np.zeros(n, np.int64)  # per row, its inner interval to the next row (0: none)
    amount = np.zeros(n, np.float64)
    if n > 1:
        np.subtract(t[1:], t[:-1], out=dt[:-1])
        v0, v1 = v[:-1], v[1:]
        delta = v1 - v0
        a = amount[:-1]
        mid = np.multiply(delta, 0.5)  # gauges: the trapezoid dt * (v0 + delta * 0.5), value x ms
        np.add(v0, mid, out=mid)
        np.multiply(dt[:-1], mid, out=a)
        del mid
        cells_counter = counter[kid[starts]]
        if cells_counter.any():  # counters: the increase, a lower reading a wrap or a reset (step_amount)
            cnt = np.repeat(cells_counter, ends - starts + 1)[:-1]
            np.copyto(a, delta, where=cnt)
            down = np.flatnonzero(cnt & (delta < 0))
            if len(down):
                w = wrap[kid[down]]
                a[down] = np.where(np.isnan(w), v1[down], (w - v0[down]) + v1[down])
        cut = ends[:-1]  # row i and i + 1 in two cells: not an inner interval
        a[cut] = 0.0
        dt[cut] = 0
    max_dt = np.maximum.reduceat(dt, starts)
    first_t, last_t = t[starts], t[ends]
    return {
        "kid": kid[starts], "b": q[starts] * size, "n": ends - starts + 1,
        "sum": np.add.reduceat(v, starts), "min": np.minimum.reduceat(v, starts),
        "max": np.maximum.reduceat(v, starts), "first_t": first_t, "first_v": v[starts],
        "last_t": last_t, "last_v": v[ends], "acc": np.add.reduceat(amount, starts),
        "acc_ms": last_t - first_t,  # the inner intervals of a cell join its first and last sample
        "max_dt": max_dt, **_gap_columns(dt, amount, starts, ends, max_dt),
    }


def _gap_columns(dt: np.ndarray, amount: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 max_dt: np.ndarray) -> Cells:
    """gap_acc, gap_ms, gap_dt_min, short_max per cell (rows ``starts[i]..ends[i]``) from the
    length and amount of each row's inner interval (0 where the row has none).  Only the few
    cells with a gap are summed again (their rows in the same order: the same sums)."""
    m = len(starts)
    out = {"gap_acc": np.zeros(m), "gap_ms": np.zeros(m, np.int64), "gap_dt_min": np.full(m, NO_GAP),
           "short_max": max_dt.copy()}
    rows = np.flatnonzero(dt > GAP_FLOOR_MS)
    if not len(rows):  # the usual minute: no gap
        return out
    cells = np.unique(np.searchsorted(starts, rows, "right") - 1)
    lo, length = starts[cells], ends[cells] - starts[cells] + 1
    sub = np.zeros(len(cells), np.int64)  # where each of those cells starts among their rows
    np.cumsum(length[:-1], out=sub[1:])
    pick = np.repeat(lo - sub, length) + np.arange(int(length.sum()))
    d, a = dt[pick], amount[pick]
    gap = d > GAP_FLOOR_MS
    out["gap_acc"][cells] = np.add.reduceat(np.where(gap, a, 0.0), sub)
    out["gap_ms"][cells] = np.add.reduceat(np.where(gap, d, 0), sub)
    out["gap_dt_min"][cells] = np.minimum.reduceat(np.where(gap, d, NO_GAP), sub)
    out["short_max"][cells] = np.maximum.reduceat(np.where(gap, 0, d), sub)
    return out


def usable(cells: Cells, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(usable, amount, covered ms) per cell for the gap limit ``gap[kid]``: the whole cell when all
    its inner intervals are bridged, the cell without its gaps when exactly those are not."""
    g = gap[cells["kid"]]
    whole = cells["max_dt"] <= g
    trimmed = ~whole & (cells["short_max"] <= g) & (cells["gap_dt_min"] > g)
    if not trimmed.any():
        return whole, cells["acc"], cells["acc_ms"]
    return (whole | trimmed, np.where(trimmed, cells["acc"] - cells["gap_acc"], cells["acc"]),
            np.where(trimmed, cells["acc_ms"] - cells["gap_ms"], cells["acc_ms"]))


def coarsen(cells: Cells, size: int, counter: np.ndarray, wrap: np.ndarray) -> Cells:
    """Cells of ``size`` ms from finer cells sorted by (kid, b): the intervals joining two fine
    cells of one coarse bucket become inner ones."""
    if not len(cells["kid"]):
        return empty()
    kid, b = cells["kid"], cells["b"] // size * size
    starts = _starts(kid, b)
    ends = np.append(starts[1:], len(kid)) - 1
    n = len(kid)
    same = np.zeros(n, bool)
    same[:-1] = (kid[1:] == kid[:-1]) & (b[1:] == b[:-1])
    t0, v0, t1, v1 = cells["last_t"][:-1], cells["last_v"][:-1], cells["first_t"][1:], cells["first_v"][1:]
    dt = np.zeros(n, np.int64)
    dt[:-1] = np.where(same[:-1], t1 - t0, 0)
    amount = np.zeros(n, np.float64)
    if n > 1:
        k = kid[:-1]
        amount[:-1] = np.where(same[:-1], step_amount(t0, v0, t1, v1, counter[k], wrap[k]), 0.0)
    gap = dt > GAP_FLOOR_MS  # the joining intervals that are gaps
    return {
        "kid": kid[starts], "b": b[starts], "n": np.add.reduceat(cells["n"], starts),
        "sum": np.add.reduceat(cells["sum"], starts), "min": np.minimum.reduceat(cells["min"], starts),
        "max": np.maximum.reduceat(cells["max"], starts), "first_t": cells["first_t"][starts],
        "first_v": cells["first_v"][starts], "last_t": cells["last_t"][ends],
        "last_v": cells["last_v"][ends],
        "acc": np.add.reduceat(cells["acc"] + amount, starts),
        "acc_ms": np.add.reduceat(cells["acc_ms"] + dt, starts),
        "max_dt": np.maximum.reduceat(np.maximum(cells["max_dt"], dt), starts),
        "gap_acc": np.add.reduceat(cells["gap_acc"] + np.where(gap, amount, 0.0), starts),
        "gap_ms": np.add.reduceat(cells["gap_ms"] + np.where(gap, dt, 0), starts),
        "gap_dt_min": np.minimum.reduceat(np.minimum(cells["gap_dt_min"], np.where(gap, dt, NO_GAP)), starts),
        "short_max": np.maximum.reduceat(np.maximum(cells["short_max"], np.where(gap, 0, dt)), starts),
    }


def points(kid: np.ndarray, t: np.ndarray, v: np.ndarray) -> Cells:
    """Raw samples as one-sample cells (bucket = t), to be joined with cells by :func:`combine`."""
    ok = np.isfinite(v)
    kid, t, v = kid[ok], t[ok], v[ok]
    z = np.zeros(len(t))
    return {"kid": kid, "b": t, "n": np.ones(len(t), np.int64), "sum": v, "min": v, "max": v,
            "first_t": t, "first_v": v, "last_t": t, "last_v": v, "acc": z,
            "acc_ms": np.zeros(len(t), np.int64), "max_dt": np.zeros(len(t), np.int64), "gap_acc": z,
            "gap_ms": np.zeros(len(t), np.int64), "gap_dt_min": np.full(len(t), NO_GAP),
            "short_max": np.zeros(len(t), np.int64)}


def combine(pieces: Cells, nkeys: int, start_ms: int, end_ms: int, gap: np.ndarray, counter: np.ndarray,
            wrap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per kid: (amount, covered ms) over [start, end] from disjoint pieces (cells inside the range
    whose ``max_dt`` is within the gap limit, and raw samples anywhere near it).

    Gauges give joules (value x s), counters their increase.  The joining intervals are clipped
    and bridged as in :mod:`wattsight.energy`."""
    amount = np.zeros(nkeys)
    covered = np.zeros(nkeys, np.int64)
    if not len(pieces["kid"]):
        return amount, covered
    order = np.lexsort((pieces["first_t"], pieces["kid"]))
    p = take(pieces, order)
    kid = p["kid"]
    inner = np.bincount(kid, weights=p["acc"], minlength=nkeys)
    covered += np.bincount(kid, weights=p["acc_ms"], minlength=nkeys).astype(np.int64)
    if len(kid) > 1:
        same = kid[1:] == kid[:-1]
        k = kid[:-1][same]
        t0, v0 = p["last_t"][:-1][same], p["last_v"][:-1][same]
        t1, v1 = p["first_t"][1:][same], p["first_v"][1:][same]
        dt = t1 - t0
        a, b = np.clip(t0, start_ms, end_ms), np.clip(t1, start_ms, end_ms)
        overlap = np.where((dt > 0) & (dt <= gap[k]), b - a, 0)
        span = np.where(dt > 0, dt, 1).astype(np.float64)
        mid = ((a - t0) + (b - t0)).astype(np.float64) / (2.0 * span)
        gauge = overlap.astype(np.float64) * (v0 + (v1 - v0) * mid)
        delta = step_amount(t0, v0, t1, v1, np.ones(len(k), bool), wrap[k])
        share = np.where(overlap == dt, delta, delta * (overlap / span))
        share = np.where(overlap > 0, share, 0.0)
        inner += np.bincount(k, weights=np.where(counter[k], share, gauge), minlength=nkeys)
        covered += np.bincount(k, weights=overlap, minlength=nkeys).astype(np.int64)
    return np.where(counter, inner, inner / 1000.0), covered


def to_buckets(cells: Cells, start_ms: int, step_ms: int) -> Cells:
    """Cells sorted by (kid, b), grouped into buckets of ``step_ms`` from ``start_ms`` (b = bucket start)."""
    if not len(cells["kid"]):
        return {c: np.zeros(0, COLUMNS[c]) for c in ("kid", "b", *STATS)}
    shifted = dict(cells, b=start_ms + (cells["b"] - start_ms) // step_ms * step_ms)
    return coarsen_stats(shifted)


def coarsen_stats(cells: Cells) -> Cells:
    """n/sum/min/max/first/last per (kid, b) of cells sorted by (kid, b): kid, b and the
    :data:`STATS` columns only (no amounts)."""
    kid, b = cells["kid"], cells["b"]
    starts = _starts(kid, b)
    ends = np.append(starts[1:], len(kid)) - 1
    out = {c: cells[c][starts] for c in ("kid", "b", "first_t", "first_v")}
    out.update(last_t=cells["last_t"][ends], last_v=cells["last_v"][ends],
               n=np.add.reduceat(cells["n"], starts), sum=np.add.reduceat(cells["sum"], starts),
               min=np.minimum.reduceat(cells["min"], starts), max=np.maximum.reduceat(cells["max"], starts))
    return out


def join(old: Cells, new: Cells, p: int, size: int, part: int, counter: np.ndarray,
         wrap: np.ndarray) -> Cells | None:
    """Partition ``p``'s cells ``old`` with the cells ``new`` of later samples folded in; None if a
    new cell does not start after the old one of its bucket.  ``new`` is sorted by (kid, b); ``old``
    is grouped by kid, b ascending in each, and sorted here if its keys are in another order (loaded
    as another process numbered them, or some of its row groups loaded later: rollup_files)."""
    per = part // size
    okey = old["kid"] * per + (old["b"] - p) // size
    if len(okey) > 1 and not np.all(okey[1:] >= okey[:-1]):  # as loaded: keys in the writer's order
        old = sort(old)
        okey = old["kid"] * per + (old["b"] - p) // size
    nkey = new["kid"] * per + (new["b"] - p) // size
    pos = np.minimum(np.searchsorted(okey, nkey), max(len(okey) - 1, 0))
    hit = (okey[pos] == nkey) if len(okey) else np.zeros(len(nkey), bool)
    at = pos[hit]
    if np.any(old["last_t"][at] >= new["first_t"][hit]):
        return None
    out = {c: a.copy() for c, a in old.items()}  # copy on write: readers keep the old arrays
    if len(at):
        pairs = concat([take(old, at), take(new, hit)])
        m = len(at)
        order = np.empty(2 * m, np.int64)
        order[0::2], order[1::2] = np.arange(m), np.arange(m, 2 * m)
        joined = coarsen(take(pairs, order), size, counter, wrap)
        for c, col in out.items():
            col[at] = joined[c]
    if hit.all():
        return out
    out = concat([out, take(new, ~hit)])
    key = np.concatenate([okey, nkey[~hit]])
    return take(out, np.argsort(key, kind="stable"))

