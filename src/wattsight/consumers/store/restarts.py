"""*Restart points* of format-3 segments: each series' integer and time every ``RESTART_ROWS`` rows.

A format-2/3 series is a running sum of residuals from its first row (:mod:`.residual`), so
without them a read of its last hour decodes its whole day.  With them a read starts at the
last restart point at or before the asked start and stops at the first one after the asked
end: an hour of every series of a day's segment decodes ~1/10 of its rows.

The points are redundant (a reader may ignore them: segments written before them, and readers
from before them, decode from each series' first row), kept in the summary (``rs`` the
spacing, ``rs_x``/``rs_t`` the values as differences from the series' previous point, its
first at its first row: a regular series' times cost nothing, a gauge's values little).
Series ``i`` has ``(count[i] - 1) // rs`` points, at its rows ``rs, 2 rs, ...``.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from . import residual
from .residual import BLOCK
from .sorting import starts_of

#: Rows between restart points (a multiple of residual.BLOCK: prediction blocks stay aligned).
#: 8,192: 16 B per 8,192 rows before compression (~0.0002 B a sample), reads decode at most
#: that many rows before the asked start.
RESTART_ROWS = 8192
assert RESTART_ROWS % BLOCK == 0


def per_series(count: np.ndarray, every: int) -> np.ndarray:
    """Restart points per series."""
    return np.maximum(np.asarray(count, np.int64) - 1, 0) // every


def points(x: np.ndarray, t: np.ndarray, count: np.ndarray, every: int | None = None):
    """The integers and times at each series' restart rows (rows sorted by series then t; ``every``:
    RESTART_ROWS)."""
    every = every or RESTART_ROWS
    n = per_series(count, every)
    k = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(starts_of(n), n)  # 0.. per series
    rows = np.repeat(starts_of(count), n) + (k + 1) * every
    return x[rows], t[rows]


def deltas(values: np.ndarray, first: np.ndarray, count: np.ndarray, every: int) -> np.ndarray:
    """``values`` (restart points, series by series) as differences from the series' previous
    point, the first from ``first`` (the series' first row), modulo 2**64."""
    n = per_series(count, every)
    values = np.asarray(values, np.int64)
    prev = np.empty_like(values)
    prev[1:] = values[:-1]
    has = n > 0
    prev[starts_of(n)[has]] = np.asarray(first, np.int64)[has]
    with np.errstate(over="ignore"):
        return values - prev


def undeltas(d: np.ndarray, first: np.ndarray, count: np.ndarray, every: int) -> np.ndarray:
    """The inverse of :func:`deltas`."""
    n = per_series(count, every)
    has = n > 0
    st = starts_of(n)[has]
    with np.errstate(over="ignore"):
        c = np.cumsum(np.asarray(d, np.int64))
        before = np.where(st > 0, c[np.maximum(st - 1, 0)], 0) if len(c) else np.zeros(0, np.int64)
        return c + np.repeat(np.asarray(first, np.int64)[has] - before, n[has])


class Ranges:
    """Per series, the rows a read of ``[start_ms, end_ms]`` decodes: from a restart point (or its
    first row) to the next point after ``end_ms`` (or its end), with the integer and time there."""

    def __init__(self, seg) -> None:
        self.seg = seg
        self.rs_x, self.rs_t = seg.points()
        self.every = int(seg.restart)
        self.n = per_series(seg.count, self.every)
        self.at = starts_of(self.n)
        self.span: dict[int, tuple[int, int]] = {}

    def _times(self, i: int) -> np.ndarray:
        a = int(self.at[i])
        return self.rs_t[a:a + int(self.n[i])]

    def add(self, i: int, start_ms: int, end_ms: int) -> None:
        """Rows of series ``i`` holding ``[start_ms, end_ms]`` (and more: from a point, to one)."""
        times = self._times(i)
        k0 = int(np.searchsorted(times, start_ms, "right"))
        k1 = int(np.searchsorted(times, end_ms, "right"))
        a, b = k0 * self.every, min(int(self.seg.count[i]), (k1 + 1) * self.every)
        if i in self.span:
            a0, b0 = self.span[i]
            a, b = min(a, a0), max(b, b0)
        self.span[i] = (a, b)

    def end_time(self, i: int) -> float:
        """A time after every row of series ``i``'s range (its next restart point's)."""
        b = self.span[i][1]
        k = b // self.every  # the point at row b, if b is one
        return float(self._times(i)[k - 1]) if b < int(self.seg.count[i]) else float("inf")

    def start(self, i: int) -> tuple[int, int]:
        """The integer and time at the first row of series ``i``'s range."""
        a = self.span[i][0]
        if a == 0:
            return int(self.seg.first_x[i]), int(self.seg.first_t[i])
        k = int(self.at[i]) + a // self.every - 1
        return int(self.rs_x[k]), int(self.rs_t[k])


def unpack_ranges(buf, sizes: list[int], w: int, starts: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The residuals of the row ranges ``starts[k]:starts[k] + count[k]`` (indexes into the row groups
    of ``sizes`` rows laid end to end), end to end, from :func:`.residual.pack`'s bytes: plane slices
    of each range's part in each group, the other rows untouched."""
    raw = np.frombuffer(buf, np.uint8)
    group_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out = np.zeros((int(np.sum(count)), 8), np.uint8)
    pos = 0
    for a, m in zip(np.asarray(starts).tolist(), np.asarray(count).tolist()):
        g = int(np.searchsorted(group_start, a, "right")) - 1
        while m > 0:
            g0, n = int(group_start[g]), int(sizes[g])
            take = min(m, g0 + n - a)
            for k in range(w):
                at = g0 * w + k * n + a - g0
                out[pos:pos + take, k] = raw[at:at + take]
            pos, a, m, g = pos + take, a + take, m - take, g + 1
    return out.view(np.int64).ravel()


def read(seg, idx: list[int], start_ms: int, end_ms: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """:meth:`.segment.Segment.read` of a segment with restart points: (series index, t, ints) of
    the series ``idx`` in ``[start_ms, end_ms]``, decoding only the rows of their ranges."""
    ranges = Ranges(seg)
    for i in idx:
        ranges.add(i, start_ms, end_ms)
    for i in idx:  # a partner's differences after the series' first time (that one is not used)
        if seg.mode[i] == residual.PARTNER:
            ranges.add(int(seg.partner[i]), ranges.start(i)[1], ranges.end_time(i))
    need = sorted(ranges.span)
    span = np.asarray([ranges.span[i] for i in need], np.int64).reshape(-1, 2)
    count = span[:, 1] - span[:, 0]
    first = seg.row_start[need] + span[:, 0]
    dict_n = seg.dict_n[need].astype(np.int64)
    lo = np.searchsorted(seg.rg_bounds, np.concatenate([first, seg.row_start[need]]), "right") - 1
    hi = np.searchsorted(seg.rg_bounds, first + count - 1, "right") - 1
    hi = np.concatenate([hi, np.searchsorted(seg.rg_bounds, seg.row_start[need] + np.maximum(dict_n, 1) - 1, "right") - 1])
    groups = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(lo.tolist(), hi.tolist())]))
    aux = bool(np.any((seg.mode[need] >= residual.DICT) | (dict_n > 0)))
    f = pq.ParquetFile(seg._source, metadata=seg._meta)
    table = f.read_row_groups(groups.tolist(), columns=["t", "v", "aux"] if aux else ["t", "v"])
    sizes = np.diff(seg.rg_bounds)[groups]
    at = starts_of(sizes)  # where each loaded group starts in the table
    pos = np.full(len(seg.rg_bounds), -1, np.int64)
    pos[groups] = at - seg.rg_bounds[groups]

    def local(r: np.ndarray) -> np.ndarray:  # rows of the segment -> rows of the table
        return r + pos[np.searchsorted(seg.rg_bounds, r, "right") - 1]

    begin = local(first)  # a range's groups are all loaded: contiguous in the table
    cols = []
    for name, w in (("t", seg.t_width), ("v", seg.width)):
        cols.append(unpack_ranges(residual.column_bytes(table.column(name), w), sizes.tolist(), w, begin, count))
    a = None
    if aux:
        a = table.column("aux").to_numpy()
        here = np.repeat(begin - starts_of(count), count) + np.arange(int(count.sum()))
        dict_rows = np.repeat(local(seg.row_start[need]) - starts_of(dict_n), dict_n) + np.arange(int(dict_n.sum()))
    firsts = np.asarray([ranges.start(i) for i in need], np.int64).reshape(-1, 2)
    t = residual.decode_t(cols[0], count, seg.step[need], firsts[:, 1], None)
    where = {i: k for k, i in enumerate(need)}
    partner = np.asarray([where.get(int(j), -1) for j in seg.partner[need]], np.int32)
    x = residual.decode(cols[1], None if a is None else a[here], t, count, seg.mode[need], partner, seg.dict_n[need],
                        firsts[:, 0], None, entries=None if a is None else a[dict_rows] & 0xFFFFFFFF)
    st = starts_of(count)
    out = []
    for i in idx:
        k = where[i]
        ti = t[st[k]:st[k] + count[k]]
        lo, hi = np.searchsorted(ti, [start_ms, end_ms + 1])
        out.append((i, ti[lo:hi], x[st[k] + lo:st[k] + hi]))
    return out
