"""Writing segments: sort, deduplicate and scale rows (:func:`prepare`), order series for zstd
(:func:`by_cost`), and write the Parquet file with its summary (:func:`write_prepared`, also a slice
at a time for merges too large for memory) -- the format is described in :mod:`.segment`; merges
(:func:`.compaction.merge_segments`) join segments without decoding them to floats."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import StoreError
from ...sample import Series
from . import residual, restarts
from . import segment as _segment
from .scaling import scale_values
from .segment import (
    _DICT_COLUMNS,
    _SCHEMA,
    COMPRESSION_LEVEL,
    SUMMARY_KEY,
    Segment,
    fsync_dir,
    schema,
    segment_name,
)
from .sorting import sort_ranked, starts_of
from .summary import pack as pack_summary

#: Rows per probe group that :func:`by_cost` orders (see there).
GROUP_ROWS = 1 << 22


@dataclass
class Prepared:
    """Rows sorted and encoded for a segment: what :func:`write_prepared` writes."""

    series: list[Series]  # the segment's series, in row order
    index: np.ndarray  # per segment series, its index in the caller's series list
    count: np.ndarray  # rows per segment series
    t: np.ndarray
    ints: np.ndarray  # the v column (scaled integers)
    scale: np.ndarray  # int8 per segment series
    first_v: np.ndarray
    last_v: np.ndarray
    v: np.ndarray | None = None  # float64 values in row order, when the caller had them

    @property
    def starts(self) -> np.ndarray:
        return starts_of(self.count)


def prepare(series: list[Series], sid: np.ndarray, t: np.ndarray, v: np.ndarray) -> Prepared:
    """Sort by (series name, t), deduplicate (last written wins) and scale rows (``sid`` indexes ``series``)."""
    used = np.flatnonzero(np.bincount(sid, minlength=len(series)))
    by_name, keep, count, t = _sort_by_name(series, used.tolist(), sid, t)
    v = v[keep]
    starts = starts_of(count)
    scale, ints = scale_values(v, starts)
    return Prepared([series[i] for i in by_name], np.asarray(by_name, np.int64), count, t, ints, scale,
                    v[starts], v[starts + count - 1], v)


def _sort_by_name(series: list[Series], used: list[int], sid: np.ndarray, t: np.ndarray):
    """Rows (``sid`` indexes ``series``, all in ``used``) sorted by (series name, t), the last written
    of equal (series, t) kept: (``used`` by name, kept rows, rows per series by name, their t)."""
    by_name = sorted(used, key=lambda i: series[i].as_tuple())
    rank = np.zeros(len(series), np.uint16 if len(by_name) <= 1 << 16 else np.int64)  # uint16: a radix sort
    rank[by_name] = np.arange(len(by_name))
    return (by_name, *sort_ranked(rank[sid], t, max(len(by_name), 1)))


def by_cost(p: Prepared, group_rows: int = GROUP_ROWS) -> Prepared:
    """The same rows with the series of each *probe group* (consecutive probes in name order, about
    ``group_rows`` rows) ordered by what a row of theirs costs (mean log2 of the differences).

    zstd codes the byte planes of a row group with one Huffman table per 128 kB block: short series
    of all kinds interleaved (power, energy, counters of each probe) share tables that fit none of
    them (on the bench trace, 4,000 rows per series: -3 % of bytes sorted so; a day per series:
    -0.3 %; groups of 1 M rows instead of 4 M lose 0.3 % of that day).  Groups keep a range of probes
    within a range of rows, so that a merge larger than memory reads a slice of probes from each input
    in a few row groups (:class:`.compaction.Sliced`); ``p`` comes sorted by name."""
    ns = len(p.count)
    if ns < 2 or not p.count.all():
        return p
    st = p.starts
    d = np.zeros(len(p.ints), np.int64)
    np.subtract(p.ints[1:], p.ints[:-1], out=d[1:])
    d[st] = 0
    cost = np.add.reduceat(residual.cost_bits(residual.zigzag(d)), st, dtype=np.float64) / p.count
    probe_new = np.ones(ns, bool)
    probe_new[1:] = [a.probe != b.probe for a, b in zip(p.series[1:], p.series[:-1])]
    group = np.maximum.accumulate(np.where(probe_new, st // group_rows, 0))
    perm = np.lexsort((np.arange(ns), cost, group))
    if np.array_equal(perm, np.arange(ns)):
        return p
    count = p.count[perm]
    rows = np.repeat(st[perm] - starts_of(count), count) + np.arange(len(p.t))
    return Prepared([p.series[i] for i in perm], p.index[perm], count, p.t[rows], p.ints[rows], p.scale[perm],
                    p.first_v[perm], p.last_v[perm], None if p.v is None else p.v[rows])


def write_segment(directory: Path, lo: int, hi: int, series: list[Series], sid: np.ndarray,
                  t: np.ndarray, v: np.ndarray, *, row_group_size: int = 1 << 20,
                  compression_level: int = COMPRESSION_LEVEL, fmt: int | None = None) -> Segment:
    """Sort, deduplicate, encode and durably write rows (``sid`` indexes ``series``) as a segment.

    The file is written under a temporary name, fsynced, renamed and the folder fsynced, so a
    crash leaves either no segment or a whole one (temporary files are deleted at start).
    """
    return write_prepared(directory, lo, hi, prepare(series, sid, t, v), row_group_size=row_group_size,
                          compression_level=compression_level, fmt=fmt)


def write_prepared(directory: Path, lo: int, hi: int, p: Prepared | Iterable[Prepared], *,
                   row_group_size: int = 1 << 20, compression_level: int = COMPRESSION_LEVEL,
                   fmt: int | None = None, quick: bool = False) -> Segment:
    """Durably write prepared rows as the segment ``<lo>-<hi>`` (see :func:`write_segment`) in
    format ``fmt`` (default ``segment.FORMAT``, 3; 1 is the format before residuals, still read);
    ``quick``: residuals without dictionaries or partners (a flush that its day's tier rewrites).

    ``p`` may also be slices of the rows (a merge too large for memory, :class:`.compaction.Sliced`:
    disjoint series, in order): formats 2 and 3 encode them one at a time and keep each one's byte planes
    zstd'd in memory (~1.5 B a row) until the widths of the whole segment are known."""
    fmt = _segment.FORMAT if fmt is None else fmt
    if fmt < 2:
        if not isinstance(p, Prepared):
            p = _concat(list(p))
        table = _table(p.series, p.count, p.t, p.ints, p.scale)
        options = {"use_dictionary": _DICT_COLUMNS, "write_statistics": ["probe", "metric", "t"],
                   "column_encoding": {"t": "DELTA_BINARY_PACKED", "v": "DELTA_BINARY_PACKED"}}
        starts, ends = p.starts, p.starts + p.count - 1
        summary = {"series": p.series, "count": p.count, "first_t": p.t[starts], "last_t": p.t[ends],
                   "first_v": p.first_v, "last_v": p.last_v, "scale": p.scale, "fmt": fmt}
        return _commit(directory, lo, hi, table.schema, [table], summary, options, row_group_size,
                       compression_level, None)
    if isinstance(p, Prepared):
        parts = [_Part.of(by_cost(p), row_group_size, quick)]
    else:
        parts = [_Part.of(by_cost(piece), row_group_size, quick).squeeze() for piece in p]
    wt, w = max(x.wt for x in parts), max(x.w for x in parts)
    summary = _joined([x.summary for x in parts], fmt)
    summary.update(width=w, t_width=wt, restart=restarts.RESTART_ROWS)
    options = {"use_dictionary": ["aux"], "write_statistics": False,
               "column_encoding": {"t": "PLAIN", "v": "PLAIN"}}
    bounds = np.concatenate([[0], np.cumsum(np.concatenate([x.sizes for x in parts]))]).astype(np.int64)
    return _commit(directory, lo, hi, schema(wt, w), (x.table(wt, w) for x in parts), summary, options,
                   row_group_size, compression_level, bounds)


@dataclass
class _Part:
    """Rows of a format-2 segment (all, or a slice of its series), encoded: summary arrays, time and
    value residuals, aux, rows per row group."""

    summary: dict
    sizes: np.ndarray
    wt: int
    w: int
    rt: np.ndarray | bytes  # bytes once squeezed: the byte planes packed at this part's width, zstd'd
    r: np.ndarray | bytes
    aux: np.ndarray | tuple[np.ndarray, np.ndarray]  # squeezed: (rows, values) of the nonzero ones

    @classmethod
    def of(cls, p: Prepared, row_group_size: int, quick: bool = False) -> _Part:
        starts = p.starts
        coded = residual.encode(p.ints, p.t, p.count, p.series, p.scale, dictionaries=not quick,
                                partners_too=not quick)
        rt, step = residual.encode_t(p.t, p.count)
        n = len(p.t)
        sizes = np.diff(np.append(np.arange(0, n, row_group_size), n))
        summary = {"series": p.series, "count": p.count, "first_t": p.t[starts], "last_t": p.t[starts + p.count - 1],
                   "first_v": p.first_v, "last_v": p.last_v, "scale": p.scale, "mode": coded.mode,
                   "partner": coded.partner, "dict_n": coded.dict_n, "first_x": coded.first, "last_x": coded.last,
                   "step": step, "rg_t": p.t[np.cumsum(sizes) - sizes]}
        summary["rs_x"], summary["rs_t"] = restarts.points(p.ints, p.t, p.count)
        return cls(summary, sizes, residual.width(rt), residual.width(coded.r), rt, coded.r, coded.aux)

    @property
    def rows(self) -> int:
        return int(self.sizes.sum())

    def squeeze(self) -> _Part:
        bounds = np.append(0, np.cumsum(self.sizes))
        self.rt, self.r = (pa.compress(residual.pack(x, bounds, w), codec="zstd", asbytes=True)
                           for x, w in ((self.rt, self.wt), (self.r, self.w)))
        nz = np.flatnonzero(self.aux)
        self.aux = (nz, self.aux[nz])
        return self

    def table(self, wt: int, w: int) -> pa.Table:
        """The part's rows as columns of a segment whose widths are ``wt`` and ``w``."""
        n, bounds = self.rows, np.append(0, np.cumsum(self.sizes))
        cols = []
        for x, own, width in ((self.rt, self.wt, wt), (self.r, self.w, w)):
            if isinstance(x, bytes):
                x = residual.unpack(pa.decompress(x, n * own, codec="zstd", asbytes=True), self.sizes.tolist(), own)
            planes = pa.py_buffer(residual.pack(x, bounds, width))
            cols.append(pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, planes]))
        aux = self.aux
        if isinstance(aux, tuple):
            aux = np.zeros(n, np.int64)
            aux[self.aux[0]] = self.aux[1]
        return pa.table([*cols, pa.array(aux, pa.int64())], schema=schema(wt, w))


def _joined(summaries: list[dict], fmt: int) -> dict:
    """One summary of parts laid end to end (partners are indices: shifted by the series before)."""
    if len(summaries) == 1:
        return dict(summaries[0], fmt=fmt)
    out = {"fmt": fmt, "series": [s for x in summaries for s in x["series"]]}
    shift = np.cumsum([0] + [len(x["count"]) for x in summaries[:-1]])
    for key in summaries[0]:
        if key != "series":
            parts = [x[key] for x in summaries]
            if key == "partner":
                parts = [np.where(x >= 0, x + k, -1).astype(np.int32) for x, k in zip(parts, shift.tolist())]
            out[key] = np.concatenate(parts)
    return out


def _concat(parts: list[Prepared]) -> Prepared:
    rows = [np.concatenate([getattr(x, k) for x in parts]) for k in ("index", "count", "t", "ints", "scale",
                                                                      "first_v", "last_v")]
    return Prepared([s for x in parts for s in x.series], *rows)


def _commit(directory: Path, lo: int, hi: int, sch: pa.Schema, tables: Iterable[pa.Table], summary: dict,
            options: dict, row_group_size: int, compression_level: int, bounds: np.ndarray | None) -> Segment:
    """Write ``tables`` as the segment ``<lo>-<hi>`` under a temporary name, fsync, rename, fsync the
    folder, and open it (checking the row groups are cut at ``bounds``, where the byte planes are)."""
    final = directory / segment_name(lo, hi)
    tmp = directory / f".tmp-{final.name}"
    try:
        with open(tmp, "wb") as f:
            with pq.ParquetWriter(
                f, sch, compression="zstd", compression_level=compression_level,
                store_schema=False,  # the schema blob would cost ~0.5 kB per segment
                **options,
            ) as writer:
                for table in tables:
                    writer.write_table(table, row_group_size=row_group_size)
                writer.add_key_value_metadata({SUMMARY_KEY: pack_summary(summary)})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(directory)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{final}: cannot write segment: {exc}. Check free space and permissions "
                         "(the samples stay in the write-ahead log)") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seg = Segment.open(final)
    if bounds is not None and not np.array_equal(seg.rg_bounds, bounds):  # the byte planes are cut by row group
        final.unlink()
        raise StoreError(f"{final}: Parquet cut the row groups at {seg.rg_bounds[:4].tolist()}..., not at "
                         f"{bounds[:4].tolist()}...; the segment was not written (a bug: please report it)")
    return seg


def _table(series: list[Series], count: np.ndarray, t: np.ndarray, ints: np.ndarray,
           scale: np.ndarray) -> pa.Table:
    cols = []
    for pos in range(5):  # probe, metric, unit, kind, provenance: dictionary-coded per series
        names = [s.as_tuple()[pos] for s in series]
        values = sorted(set(names))
        code = {n: i for i, n in enumerate(values)}
        idx = np.repeat(np.asarray([code[n] for n in names], np.int32), count)
        cols.append(pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32()), pa.array(values, pa.string())))
    cols += [pa.array(t, pa.int64()), pa.array(ints, pa.int64()),
             pa.array(np.repeat(scale, count), pa.int8())]
    return pa.Table.from_arrays(cols, schema=_SCHEMA)
