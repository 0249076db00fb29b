"""Sorting a segment's rows by (series rank, t), the last written of equal (rank, t) kept."""

from __future__ import annotations

import numpy as np


def starts_of(count: np.ndarray) -> np.ndarray:
    """Where each group of rows starts (int64), for groups of ``count`` consecutive rows."""
    return np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)


def sort_rows(rank: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Row indices sorted by (rank, t), keeping only the last written row of equal (rank, t)."""
    return sort_ranked(rank, t)[0]


def sort_ranked(rank: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sort_rows`, how many rows each rank keeps (``bincount`` of the kept ranks) and ``t``
    of the kept rows."""
    n = len(t)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    nrank = int(rank.max()) + 1
    if nrank <= 1 << 16:  # the usual case, rows in time order: a radix sort by rank is enough
        r16 = rank.astype(np.uint16)
        order = np.argsort(r16, kind="stable")
        rs = r16[order]
        ts = t[order]
        bounds = np.zeros(nrank + 1, np.int64)  # where each rank's rows start in rs
        np.cumsum(np.bincount(r16, minlength=nrank), out=bounds[1:])
        same = np.ones(n - 1, bool)
        same[bounds[1:-1][(bounds[1:-1] > 0) & (bounds[1:-1] < n)] - 1] = False  # rank changes
        step = ts[1:] - ts[:-1]
        if not np.any(same & (step < 0)):
            dup = same & (step == 0)
            if not dup.any():  # no duplicate: every row kept, counts from the bounds
                return order, np.diff(bounds).astype(np.int64), ts
            last = np.ones(n, bool)
            last[:-1] = ~dup
            keep = order[last]
            return keep, np.bincount(rs[last], minlength=nrank).astype(np.int64), ts[last]
    tmin = int(t.min())
    tbits = max(int(t.max()) - tmin, 1).bit_length()
    if tbits + max(int(rank.max()), 1).bit_length() <= 62:
        key = (rank.astype(np.int64) << tbits) | (t - tmin)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        last = np.empty(n, bool)
        last[-1] = True
        np.not_equal(ks[1:], ks[:-1], out=last[:-1])
    else:  # times too far apart to share one int64 key with the rank
        order = np.lexsort((t, rank))
        rs, ts = rank[order], t[order]
        last = np.empty(n, bool)
        last[-1] = True
        last[:-1] = (rs[1:] != rs[:-1]) | (ts[1:] != ts[:-1])
    keep = order[last]
    return keep, np.bincount(rank[keep], minlength=nrank).astype(np.int64), t[keep]
