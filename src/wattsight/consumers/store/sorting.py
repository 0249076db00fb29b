"""Sorting a segment's rows by (series rank, t), the last written of equal (rank, t) kept."""

from __future__ import annotations

import numpy as np


def starts_of(count: np.ndarray) -> np.ndarray:
    """Where each group of rows starts (int64), for groups of ``count`` consecutive rows."""
    return np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)


def sort_rows(rank: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Row indices sorted by (rank, t), keeping only the last written row of equal (rank, t)."""
    return sort_ranked(rank, t)[0]


def sort_ranked(rank: np.ndarray, t: np.ndarray, nrank: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sort_rows`, how many rows each rank keeps (``bincount`` of the kept ranks) and ``t``
    of the kept rows (``nrank``: more than the largest rank, when the caller knows it)."""
    n = len(t)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    nrank = int(rank.max()) + 1 if nrank is None else nrank
    if nrank <= 1 << 16:  # the usual case, rows in time order: a radix sort by rank is enough
        got = _sort_by_rank(rank if rank.dtype == np.uint16 else rank.astype(np.uint16), t, nrank)
        if got is not None:
            return got
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


def _sort_by_rank(r16: np.ndarray, t: np.ndarray, nrank: int):
    """:func:`sort_ranked` by a stable radix sort of the ranks alone, or None if the rows of some
    rank are not in time order then."""
    order = np.argsort(r16, kind="stable")
    return in_order(order, t, np.bincount(r16, minlength=nrank).astype(np.int64))


def in_order(order: np.ndarray, t: np.ndarray, count: np.ndarray):
    """:func:`sort_ranked` given ``order``, rows grouped by rank (``count`` rows each, in write order
    within a rank), or None if the rows of some rank are not in time order then."""
    n = len(order)
    ts = t[order]
    if n == 0:
        return order, count, ts
    bounds = np.cumsum(count)
    step = np.empty(n, np.int64)  # step[i]: ts[i + 1] - ts[i], 1 where the rank changes
    np.subtract(ts[1:], ts[:-1], out=step[:-1])
    inner = bounds[:-1]
    step[inner[(inner > 0) & (inner < n)] - 1] = 1
    step[-1] = 1
    low = int(step.min())
    if low > 0:  # no duplicate: every row kept
        return order, count, ts
    if low < 0:
        return None
    last = step != 0  # the last written of equal (rank, t)
    dropped = np.searchsorted(bounds, np.flatnonzero(~last), "right")  # their ranks
    return order[last], count - np.bincount(dropped, minlength=len(count)), ts[last]
