"""Immutable Parquet *segments*: sorted, deduplicated samples with values as scaled integers.

A segment holds the samples of a contiguous range of write-ahead-log files (``lo``..``hi``,
its file name ``<lo>-<hi>.parquet``), each series' rows sorted by t, with exact duplicates
(same series, same t) collapsed to the last written.  Format 1 sorts the series by (probe,
metric, unit, kind, provenance); formats 2 and 3 by what a row costs within groups of probes
(:func:`.segment_write.by_cost`; format 2 written before this order: by name; readers take the
order from the summary).  Each series' values are *scaled integers* (value = v / 10**scale,
``scale`` the smallest 0..6 exact for all its values here; -1: the float64 bit patterns, for NaN, ...).

**Format 3** (written now; format 2 is the same with first/last values in the summary).  Columns:

=========== ================ =========================================================
t           fixed_size_binary ms since the epoch as offsets from each series' usual step
            (wt bytes)       (:func:`.residual.encode_t`), in byte planes per row group
v           fixed_size_binary the series' residuals (:mod:`.residual`: differences, ranks in a
            (w bytes)        dictionary, or differences predicted from a partner series),
                             split in byte planes per row group: not readable row by row
aux         int64            per series: its dictionary or the partner prediction's factors
=========== ================ =========================================================

Each series' integer and time every 8,192 rows (*restart points*, :mod:`.restarts`) are in the
summary: reads decode from the last one before the asked start.  Merges write format ``FORMAT``
at zstd level ``COLD_LEVEL``; flushes write ``HOT_FORMAT`` (1) at ``COMPRESSION_LEVEL``, except
those no merge takes (``FORMAT`` without dictionaries or partners, until their day's tier: the
store's ``_flush_format``).  Row groups hold ``row_group_size`` rows, except the last of each slice of a
merge larger than memory (:class:`.compaction.Sliced`).  Read segments with
:meth:`Segment.read_all` (or ``wattsight export`` for pandas, polars and DuckDB).

**Format 1** (still read; :func:`.segment_write.write_prepared` writes it with ``fmt=1``):
dictionary columns probe, metric, unit, kind, provenance, scale per row, and ``v`` the scaled
integers themselves (DELTA_BINARY_PACKED).

The key-value metadata ``wattsight.summary`` keeps, per series in row order: count, first/last
t and scale, first/last v (formats 1 and 2), and from format 2 on the residual mode, partner,
dictionary size, first/last integer and usual step, plus each row group's first time (zstd'd
msgpack of packed arrays).  The store keeps that summary and the row-group boundaries in memory,
so a read opens only the segments and row groups that hold the asked series (from their first
row) and times.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import StoreError
from ...sample import Series
from . import residual, restarts
from .scaling import MAX_SCALE, MUL, choose_scales, decode, from_scaled, scale_values, to_scaled  # noqa: F401
from .sorting import sort_ranked, sort_rows, starts_of  # noqa: F401 - part of this module's interface
from .summary import unpack as unpack_summary

COMPRESSION_LEVEL = 9
#: Merged segments: written by the background thread, read for years.
COLD_LEVEL = 16
#: The format of merged (cold) segments, and of segments written by write_segment.
FORMAT = 3
#: The format a flush writes (hot segments, merged soon): format 1 keeps flushes cheap and reads
#: of recent samples fast (format 2 decodes in numpy: see docs/consumers/store.md, Costs).
HOT_FORMAT = 1
SUMMARY_KEY = b"wattsight.summary"
NAME = re.compile(r"^(\d{12})-(\d{12})\.parquet$")
_DICT_COLUMNS = ["probe", "metric", "unit", "kind", "provenance", "scale"]
_SCHEMA = pa.schema(
    [pa.field(c, pa.dictionary(pa.int32(), pa.string()), nullable=False) for c in _DICT_COLUMNS[:5]]
    + [pa.field("t", pa.int64(), nullable=False), pa.field("v", pa.int64(), nullable=False),
       pa.field("scale", pa.int8(), nullable=False)]
)


def schema(wt: int, w: int) -> pa.Schema:
    """The columns of a format-2 segment whose time and value residuals take ``wt`` and ``w`` bytes."""
    return pa.schema([pa.field("t", pa.binary(wt), nullable=False), pa.field("v", pa.binary(w), nullable=False),
                      pa.field("aux", pa.int64(), nullable=False)])


def segment_name(lo: int, hi: int) -> str:
    return f"{lo:012d}-{hi:012d}.parquet"


# -- the segment --------------------------------------------------------------------------
@dataclass(eq=False)  # by identity: the store finds, swaps and removes segments by identity
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
    fmt: int = 1
    mode: np.ndarray | None = None  # format 2, per series: residual mode, partner, dictionary size,
    partner: np.ndarray | None = None  # first integer (see residual.py)
    dict_n: np.ndarray | None = None
    first_x: np.ndarray | None = None
    last_x: np.ndarray | None = None
    rg_t: np.ndarray | None = None  # format 2, per row group: the time of its first row
    step: np.ndarray | None = None  # format 2, per series: its usual step in ms (times are offsets from it)
    width: int = 8
    t_width: int = 8
    restart: int = 0  # rows between restart points (restarts.py), 0: none (written before them)
    _points: tuple | None = None  # their (integers, times), read from the summary when a read needs them
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
            summary = unpack_summary(blob)
            if summary["fmt"] >= 3:  # exact: the scale of a series is lossless for all its values
                summary["first_v"] = decode(summary["first_x"], summary["scale"])
                summary["last_v"] = decode(summary["last_x"], summary["scale"])
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise StoreError(f"{path}: cannot read segment: {exc}. Move the file away to start "
                             "without it (its samples are then missing)") from exc
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return cls(path, int(m[1]), int(m[2]), _meta=meta, _source=source,
                   rg_bounds=bounds, size=path.stat().st_size, **summary)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """The restart points' integers and times (restarts.py), unpacked from the summary once."""
        if self._points is None:
            summary = unpack_summary(self._meta.metadata[SUMMARY_KEY], points=True)
            self._points = (summary["rs_x"], summary["rs_t"])
        return self._points

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return self.tmin <= end_ms and self.tmax >= start_ms

    def read(self, indices: list[int], start_ms: int, end_ms: int
             ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(series index, t, v) of the asked series in [start, end], reading only their row groups."""
        idx = [i for i in indices if self.first_t[i] <= end_ms and self.last_t[i] >= start_ms]
        if not idx:
            return []
        if self.restart:
            return [(i, t, from_scaled(x, int(self.scale[i]))) for i, t, x in restarts.read(self, idx, start_ms, end_ms)]
        need = self._with_partners(sorted(set(idx)))
        lo_rg, hi_rg = self._row_groups(need)
        rows = self.count[need].copy()
        if self.fmt >= 2:  # differences run from each series' start: only the groups after end_ms are left out
            hi_rg, rows = self._upto(need, lo_rg, hi_rg, end_ms)
        t_col, ints, at = self._load(need, lo_rg, hi_rg)
        if self.fmt >= 2:
            ints, at = self._decode(need, at, t_col, *ints, rows=rows)
        n_of = dict(zip(need, rows.tolist()))
        out = []
        for i in idx:
            a = at[i]
            t = t_col[a:a + n_of[i]] if self.fmt < 2 else ints[1][a:a + n_of[i]]
            lo, hi = np.searchsorted(t, [start_ms, end_ms + 1])
            v = (ints if self.fmt < 2 else ints[0])[a + lo:a + hi]
            out.append((i, t[lo:hi], from_scaled(v, int(self.scale[i]))))
        return out

    def series_ints(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """t and integers of whole series, in the order of ``indices`` (``count[indices]`` rows each),
        reading only the row groups that hold them (and their partners): a merge's slice of probes."""
        need = self._with_partners(sorted(set(indices)))
        lo_rg, hi_rg = self._row_groups(need)
        t_col, ints, at = self._load(need, lo_rg, hi_rg)
        if self.fmt >= 2:
            (ints, t_col), at = self._decode(need, at, t_col, *ints)
        count = self.count[indices]
        first = np.asarray([at[i] for i in indices], np.int64)
        rows = np.repeat(first - starts_of(count), count) + np.arange(int(count.sum()))
        return t_col[rows], ints[rows]

    def _with_partners(self, need: list[int]) -> list[int]:
        if self.fmt >= 2 and np.any(self.mode[need] == residual.PARTNER):  # decoded with their partners
            need = sorted(set(need) | {int(self.partner[i]) for i in need if self.mode[i] == residual.PARTNER})
        return need

    def _row_groups(self, need: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per series, the row groups of its first and last rows."""
        lo_rg = np.searchsorted(self.rg_bounds, self.row_start[need], "right") - 1
        hi_rg = np.searchsorted(self.rg_bounds, self.row_start[need] + self.count[need] - 1, "right") - 1
        return lo_rg, hi_rg

    def _load(self, need: list[int], lo_rg: np.ndarray, hi_rg: np.ndarray):
        """The columns of the row groups ``lo_rg[k]..hi_rg[k]`` of each series, and where each series
        starts in them: (t, ints or (residuals, aux), {series: row})."""
        groups = sorted({g for a, b in zip(lo_rg.tolist(), hi_rg.tolist()) for g in range(a, b + 1)})
        aux = self.fmt >= 2 and bool(np.any((self.mode[need] >= residual.DICT) | (self.dict_n[need] > 0)))
        t_col, ints = self._columns(groups, aux)
        sizes = np.diff(self.rg_bounds)[groups]
        offset = dict(zip(groups, (np.cumsum(sizes) - sizes).tolist()))  # where each group starts in table
        at = {i: offset[g] + int(self.row_start[i] - self.rg_bounds[g]) for i, g in zip(need, lo_rg.tolist())}
        return t_col, ints, at

    def _columns(self, groups: list[int] | None, aux: bool = True) -> tuple[np.ndarray, object]:
        """t, and the v column's integers (format 1) or (residuals, aux) (format 2: aux None unless
        ``aux``, asked when a series read is DICT or PARTNER: only they use it) of row groups."""
        f = pq.ParquetFile(self._source, metadata=self._meta)
        cols = ["t", "v"] if self.fmt < 2 or not aux else ["t", "v", "aux"]
        table = f.read(columns=cols) if groups is None else f.read_row_groups(groups, columns=cols)
        if self.fmt < 2:
            return table.column("t").to_numpy(), table.column("v").to_numpy()
        sizes = np.diff(self.rg_bounds)
        sizes = sizes.tolist() if groups is None else sizes[groups].tolist()
        planes = []
        for name, w in (("t", self.t_width), ("v", self.width)):
            planes.append(residual.unpack(residual.column_bytes(table.column(name), w), sizes, w))
        return planes[0], (planes[1], table.column("aux").to_numpy() if aux else None)

    def _upto(self, need: list[int], lo_rg: np.ndarray, hi_rg: np.ndarray, end_ms: int):
        """Per series, the last row group holding its rows up to ``end_ms`` (and its dictionary), and
        how many of its rows those groups hold.  A group after a series' first starts with that
        series' row: its first time (``rg_t``) is the series' time there."""
        hi = hi_rg.copy()
        for k, i in enumerate(need):
            a, b = int(lo_rg[k]), int(hi_rg[k])
            if b > a:
                g = a + int(np.searchsorted(self.rg_t[a + 1:b + 1], end_ms, "right"))
                dict_end = int(self.row_start[i]) + max(int(self.dict_n[i]), 1) - 1
                hi[k] = max(g, int(np.searchsorted(self.rg_bounds, dict_end, "right")) - 1)
        rows = np.minimum(self.count[need], self.rg_bounds[hi + 1] - self.row_start[need])
        return hi, rows

    def _decode(self, need: list[int], at: dict[int, int], t_col, r, aux, rows: np.ndarray | None = None):
        """Values (int64) of the series ``need`` (rows from ``at``; all, or ``rows`` of each), laid end
        to end: ((x, t), at)."""
        count = self.count[need] if rows is None else rows
        whole = bool(np.array_equal(count, self.count[need]))
        first = np.asarray([at[i] for i in need], np.int64)
        ends = first + count
        if not len(need) or np.array_equal(first[1:], ends[:-1]):  # end to end already: a view
            sel = slice(int(first[0]) if len(need) else 0, int(ends[-1]) if len(need) else 0)
        else:
            sel = np.repeat(first - starts_of(count), count) + np.arange(int(count.sum()))
        pos = {i: k for k, i in enumerate(need)}
        partner = np.asarray([pos.get(int(j), -1) for j in self.partner[need]], np.int32)
        t = residual.decode_t(t_col[sel], count, self.step[need], self.first_t[need],
                              self.last_t[need] if whole else None)
        x = residual.decode(r[sel], None if aux is None else aux[sel], t, count, self.mode[need], partner, self.dict_n[need],
                            self.first_x[need], self.last_x[need] if whole else None)
        starts = starts_of(count)
        return (x, t), dict(zip(need, starts.tolist()))

    def ints_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row's t and integer (the scaled values, row order): what merges pass through."""
        t, cols = self._columns(None)
        if self.fmt < 2:
            return t, cols
        need = list(range(len(self.series)))
        (x, t), _ = self._decode(need, dict(zip(need, self.row_start[:-1].tolist())), t, *cols)
        return t, x

    def to_arrow(self) -> pa.Table:
        """Every row decoded: probe, metric, unit, kind, provenance, t (int64 ms), value (float64)
        -- for pandas (``.to_pandas()``), polars (``polars.from_arrow``) or DuckDB."""
        sid, t, v = self.read_all()
        cols = {}
        for pos, name in enumerate(("probe", "metric", "unit", "kind", "provenance")):
            cols[name] = pa.array([s.as_tuple()[pos] for s in self.series], pa.string()).take(pa.array(sid))
        return pa.table(dict(cols, t=pa.array(t, pa.int64()), value=pa.array(v, pa.float64())))

    def read_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row as (series index, t, v float64), for merging segments."""
        t, ints = self.ints_all()
        sid = np.repeat(np.arange(len(self.series), dtype=np.int64), self.count)
        return sid, t, decode(ints, np.repeat(self.scale, self.count))


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
from .segment_write import Prepared, prepare, write_prepared, write_segment  # noqa: F401

