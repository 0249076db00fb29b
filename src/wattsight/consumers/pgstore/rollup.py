"""Per-bucket and per-series aggregates of a group of samples, in numpy (no loop per sample).

The same rules as PostgreSQL's aggregates, so that rollups merged from these and rollups
recomputed by SQL agree: ``min`` ignores NaN unless every value is NaN, ``max`` is NaN when
any value is (PostgreSQL sorts NaN above every number), ``last`` is the value at the latest
time (the last written of equal times).
"""

from __future__ import annotations

import numpy as np

_I64_MIN = np.iinfo(np.int64).min


def _group(sid: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells of distinct (sid, b): (cell of each row, sid of each cell, b of each cell).

    Dense codes and a bincount when the (sid, b) rectangle is small (the usual group: a few
    thousand series over a few minutes); a stable sort otherwise.
    """
    sid = sid.astype(np.int64)
    s0, b0 = int(sid.min()), int(b.min())
    width = int(b.max()) - b0 + 1
    size = (int(sid.max()) - s0 + 1) * width
    if size <= 4 * len(sid) + 4096:
        code = (sid - s0) * width + (b - b0)
        cells = np.flatnonzero(np.bincount(code, minlength=size))
        lut = np.empty(size, np.int64)
        lut[cells] = np.arange(len(cells))
        return lut[code], cells // width + s0, cells % width + b0
    order = np.lexsort((b, sid))
    s, bb = sid[order], b[order]
    new = np.ones(len(s), bool)
    new[1:] = (s[1:] != s[:-1]) | (bb[1:] != bb[:-1])
    inv = np.empty(len(s), np.int64)
    inv[order] = np.cumsum(new) - 1
    return inv, s[new], bb[new]


def _last(inv: np.ndarray, t: np.ndarray, v: np.ndarray, ncell: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: the latest time and the value written last at that time."""
    last_t = np.full(ncell, _I64_MIN, np.int64)
    np.maximum.at(last_t, inv, t)
    rows = np.flatnonzero(t == last_t[inv])[::-1]  # at their cell's latest time, last written first
    cells, first = np.unique(inv[rows], return_index=True)
    last_v = np.empty(ncell, np.float64)
    last_v[cells] = v[rows[first]]
    return last_t, last_v


def _reduce(inv, ncell, n, vsum, vmin, vmax) -> dict:
    out_min = np.full(ncell, np.nan)
    out_max = np.full(ncell, -np.inf)
    with np.errstate(invalid="ignore"):  # NaN and infinities are values like any other here
        np.fmin.at(out_min, inv, vmin)  # NaN only where every value is NaN
        np.maximum.at(out_max, inv, vmax)  # NaN as soon as one is
        vsum = np.bincount(inv, weights=vsum, minlength=ncell)  # inf - inf: NaN, as in SQL
    count = np.bincount(inv, weights=n, minlength=ncell).astype(np.int64)
    return {"n": count, "vsum": vsum, "vmin": out_min, "vmax": out_max}


def aggregate(sid: np.ndarray, t: np.ndarray, v: np.ndarray, bucket_ms: int) -> dict[str, np.ndarray]:
    """Buckets of ``bucket_ms`` (aligned on the epoch) per series: sid, bucket (ms), n, vmin,
    vmax, vsum, last_t, last_v."""
    inv, cell_sid, cell_b = _group(sid, t // bucket_ms)
    ncell = len(cell_sid)
    out = _reduce(inv, ncell, np.ones(len(t)), v, v, v)
    out["last_t"], out["last_v"] = _last(inv, t, v, ncell)
    return dict(sid=cell_sid.astype(np.int32), bucket=cell_b * bucket_ms, **out)


def coarsen(cells: dict[str, np.ndarray], bucket_ms: int) -> dict[str, np.ndarray]:
    """The same aggregates over coarser buckets, from finer cells (their times do not overlap)."""
    inv, cell_sid, cell_b = _group(cells["sid"], cells["bucket"] // bucket_ms)
    ncell = len(cell_sid)
    out = _reduce(inv, ncell, cells["n"], cells["vsum"], cells["vmin"], cells["vmax"])
    out["last_t"], out["last_v"] = _last(inv, cells["last_t"], cells["last_v"], ncell)
    return dict(sid=cell_sid.astype(np.int32), bucket=cell_b * bucket_ms, **out)


def per_series(sid: np.ndarray, t: np.ndarray, v: np.ndarray, added: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, samples added, first t, last t, value at the last t) per series of a group."""
    inv, ids, _ = _group(sid, np.zeros(len(sid), np.int64))
    ncell = len(ids)
    first = np.full(ncell, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, inv, t)
    last_t, last_v = _last(inv, t, v, ncell)
    return ids, np.bincount(inv, weights=added, minlength=ncell).astype(np.int64), first, last_t, last_v
