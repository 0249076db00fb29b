"""Immutable Parquet *segments*: sorted, deduplicated samples with values as scaled integers.

A segment holds the samples of a contiguous range of write-ahead-log files (``lo``..``hi``,
its file name ``<lo>-<hi>.parquet``), rows sorted by (probe, metric, unit, kind, provenance, t)
-- for the usual one series per (probe, metric), that is (probe, metric, t) -- with exact
duplicates (same series, same t) collapsed to the last written.  Columns:

=========== ============ =============================================================
probe       dictionary   RLE'd dictionary indices: a few bytes per segment
metric      dictionary   idem
unit, kind, dictionary   idem
provenance
t           int64 ms     DELTA_BINARY_PACKED, no dictionary: a 1 Hz grid costs ~0 bits
v           int64        DELTA_BINARY_PACKED *scaled integer*: value = v / 10**scale
scale       int8         per series, the smallest 0..6 that is exactly lossless for all its
                         values here; -1 means v holds the float64 bit pattern (NaN, ...)
=========== ============ =============================================================

All zstd-compressed at level 9 (``COMPRESSION_LEVEL``: 2 % smaller than level 1 on the bench
trace, at the same write rate -- sorting costs more than zstd here).  The key-value metadata ``wattsight.summary`` keeps, per series in row
order: count, first/last t, first/last v and scale (zstd'd msgpack of packed arrays).  The
store keeps that summary and the row-group boundaries in memory, so a read opens only the
segments and row groups that hold the asked series and times.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import StoreError
from ...sample import Series

MAX_SCALE = 6
COMPRESSION_LEVEL = 9
SUMMARY_KEY = b"wattsight.summary"
NAME = re.compile(r"^(\d{12})-(\d{12})\.parquet$")
_DICT_COLUMNS = ["probe", "metric", "unit", "kind", "provenance", "scale"]
_SCHEMA = pa.schema(
    [pa.field(c, pa.dictionary(pa.int32(), pa.string()), nullable=False) for c in _DICT_COLUMNS[:5]]
    + [pa.field("t", pa.int64(), nullable=False), pa.field("v", pa.int64(), nullable=False),
       pa.field("scale", pa.int8(), nullable=False)]
)
_POW10 = 10.0 ** np.arange(MAX_SCALE + 1)


def segment_name(lo: int, hi: int) -> str:
    return f"{lo:012d}-{hi:012d}.parquet"


# -- values <-> scaled integers -----------------------------------------------------------
def choose_scales(v: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per series (rows ``starts[i]:starts[i+1]``), the smallest exactly lossless scale, or -1.

    Each pass at a larger scale only looks at the rows of the series still without one.
    """
    scale = np.full(len(starts), -1, np.int8)
    counts = np.diff(np.append(starts, len(v)))
    pending = np.arange(len(starts))  # series without a scale yet
    vv, st = v, starts
    for s in range(MAX_SCALE + 1):
        with np.errstate(invalid="ignore", over="ignore"):  # NaN, inf: never ok, as wanted
            x = np.rint(vv * _POW10[s])
            back = x.astype(np.int64).astype(np.float64) / _POW10[s]  # exactly what decoding does
            ok = (np.abs(x) < 2.0**62) & (back.view(np.int64) == vv.view(np.int64))  # -0.0 is not 0.0
        good = np.logical_and.reduceat(ok, st)
        scale[pending[good]] = s
        if good.all():
            break
        if good.any():
            vv = vv[np.repeat(~good, counts[pending])]
            pending = pending[~good]
            st = np.concatenate([[0], np.cumsum(counts[pending])[:-1]]).astype(np.int64)
    return scale


def scale_values(v: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`choose_scales` and the int64 column (:func:`to_scaled`) in one go: each pass keeps
    the integers of the series it settles."""
    n = len(v)
    scale = np.full(len(starts), -1, np.int8)
    counts = np.diff(np.append(starts, n))
    pending = np.arange(len(starts))  # series without a scale yet
    rows = None  # where the rows of vv are in v (None: all of them)
    ints = None
    vv, st = v, starts
    for s in range(MAX_SCALE + 1):
        with np.errstate(invalid="ignore", over="ignore"):  # NaN, inf: never ok, as wanted
            x = np.rint(vv * _POW10[s]) if s else np.rint(vv)
            xi = x.astype(np.int64)
            back = xi.astype(np.float64) / _POW10[s] if s else xi.astype(np.float64)
            ok = (np.abs(x) < 2.0**62) & (back.view(np.int64) == vv.view(np.int64))  # -0.0 is not 0.0
        good = np.logical_and.reduceat(ok, st)
        scale[pending[good]] = s
        if rows is None and good.all():
            return scale, xi
        if ints is None:
            ints = v.view(np.int64).copy()  # the rows that find no scale keep their bit pattern
        keep = np.repeat(good, counts[pending])
        if good.all():
            ints[rows] = xi
            break
        if good.any():
            ints[keep if rows is None else rows[keep]] = xi[keep]
            rows = np.flatnonzero(~keep) if rows is None else rows[~keep]
            vv = vv[~keep]
            pending = pending[~good]
            st = np.concatenate([[0], np.cumsum(counts[pending])[:-1]]).astype(np.int64)
    return scale, ints


def to_scaled(v: np.ndarray, row_scale: np.ndarray) -> np.ndarray:
    """The int64 column for values ``v`` with the per-row ``row_scale``."""
    with np.errstate(invalid="ignore", over="ignore"):
        ints = np.rint(v * _POW10[np.maximum(row_scale, 0)]).astype(np.int64)
    raw = row_scale < 0
    ints[raw] = v.view(np.int64)[raw]
    return ints


def from_scaled(ints: np.ndarray, scale: int) -> np.ndarray:
    """float64 values of one series' int64 column (``scale`` -1: bit patterns)."""
    if scale < 0:
        return ints.view(np.float64).copy()
    return ints.astype(np.float64) / _POW10[scale]


def decode(v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float64 values of a segment's ``v`` and ``scale`` columns (for reading segments directly)."""
    v, scale = np.asarray(v, np.int64), np.asarray(scale, np.int64)
    out = v.astype(np.float64) / _POW10[np.clip(scale, 0, MAX_SCALE)]
    raw = scale < 0
    out[raw] = v[raw].view(np.float64)
    return out


# -- sorting ------------------------------------------------------------------------------
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


# -- the segment --------------------------------------------------------------------------
@dataclass
class Segment:
    """One segment file, its per-series summary and row-group bounds (kept in memory)."""

    path: Path
    lo: int
    hi: int
    series: list[Series]
    count: np.ndarray  # int64 per series, row order
    first_t: np.ndarray
    last_t: np.ndarray
    first_v: np.ndarray
    last_v: np.ndarray
    scale: np.ndarray  # int8
    rg_bounds: np.ndarray  # row index where each row group starts, plus the row count
    size: int
    _source: object = None  # an open pa.memory_map: reads still work once a merge unlinked it
    _meta: object = None

    def __post_init__(self) -> None:
        self.row_start = np.concatenate([[0], np.cumsum(self.count)]).astype(np.int64)
        self.tmin = int(self.first_t.min()) if len(self.count) else 0
        self.tmax = int(self.last_t.max()) if len(self.count) else -1
        self.keys: dict[tuple[str, str], list[int]] = {}
        for i, s in enumerate(self.series):
            self.keys.setdefault(s.key, []).append(i)

    @property
    def rows(self) -> int:
        return int(self.row_start[-1])

    @classmethod
    def open(cls, path: Path) -> Segment:
        m = NAME.match(path.name)
        if not m:
            raise StoreError(f"{path}: not a segment name (<lo>-<hi>.parquet)")
        try:
            source = pa.memory_map(str(path))
            meta = pq.ParquetFile(source).metadata
            blob = (meta.metadata or {}).get(SUMMARY_KEY)
            if blob is None:
                raise StoreError(f"{path}: no {SUMMARY_KEY.decode()} metadata; not a wattsight segment")
            summary = _unpack_summary(blob)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise StoreError(f"{path}: cannot read segment: {exc}. Move the file away to start "
                             "without it (its samples are then missing)") from exc
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return cls(path, int(m[1]), int(m[2]), _meta=meta, _source=source,
                   rg_bounds=bounds, size=path.stat().st_size, **summary)

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return self.tmin <= end_ms and self.tmax >= start_ms

    def read(self, indices: list[int], start_ms: int, end_ms: int
             ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(series index, t, v) of the asked series in [start, end], reading only their row groups."""
        idx = [i for i in indices if self.first_t[i] <= end_ms and self.last_t[i] >= start_ms]
        if not idx:
            return []
        lo_rg = np.searchsorted(self.rg_bounds, self.row_start[idx], "right") - 1
        hi_rg = np.searchsorted(self.rg_bounds, self.row_start[idx] + self.count[idx] - 1, "right") - 1
        groups = sorted({g for a, b in zip(lo_rg.tolist(), hi_rg.tolist()) for g in range(a, b + 1)})
        table = pq.ParquetFile(self._source, metadata=self._meta).read_row_groups(groups, columns=["t", "v"])
        t_col, v_col = (table.column(c).to_numpy() for c in ("t", "v"))
        sizes = np.diff(self.rg_bounds)[groups]
        offset = dict(zip(groups, (np.cumsum(sizes) - sizes).tolist()))  # where each group starts in table
        out = []
        for i, g in zip(idx, lo_rg.tolist()):
            a = offset[g] + int(self.row_start[i] - self.rg_bounds[g])
            t = t_col[a:a + int(self.count[i])]
            lo, hi = np.searchsorted(t, [start_ms, end_ms + 1])
            out.append((i, t[lo:hi], from_scaled(v_col[a + lo:a + hi], int(self.scale[i]))))
        return out

    def read_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row as (series index, t, v float64), for merging segments."""
        table = pq.ParquetFile(self._source, metadata=self._meta).read(columns=["t", "v"])
        t, ints = (table.column(c).to_numpy() for c in ("t", "v"))
        sid = np.repeat(np.arange(len(self.series), dtype=np.int64), self.count)
        return sid, t, decode(ints, np.repeat(self.scale, self.count))



_NUMERIC = {"count": "<i8", "first_t": "<i8", "last_t": "<i8", "first_v": "<f8", "last_v": "<f8",
            "scale": "i1"}


def _pack_summary(summary: dict) -> bytes:
    body = {k: np.ascontiguousarray(summary[k], dtype=dt).tobytes() for k, dt in _NUMERIC.items()}
    body["series"] = [s.as_tuple() for s in summary["series"]]
    body["f"] = 1
    raw = msgpack.packb(body, use_bin_type=True)
    return struct.pack("<Q", len(raw)) + pa.compress(raw, codec="zstd", asbytes=True)


def _unpack_summary(blob: bytes) -> dict:
    (size,) = struct.unpack_from("<Q", blob)
    body = msgpack.unpackb(pa.decompress(blob[8:], decompressed_size=size, codec="zstd", asbytes=True),
                           raw=False)
    if body.get("f") != 1:
        raise ValueError(f"unknown summary format {body.get('f')!r}")
    out = {k: np.frombuffer(body[k], dtype=dt).astype(np.dtype(dt).newbyteorder("="))
           for k, dt in _NUMERIC.items()}
    out["series"] = [Series(*row) for row in body["series"]]
    return out


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    if os.name == "nt":  # Windows cannot open a folder; its renames are durable on their own
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The writing half lives in its own module; it is part of this module's interface.
from .segment_write import Prepared, merge_segments, prepare, write_prepared, write_segment  # noqa: F401
