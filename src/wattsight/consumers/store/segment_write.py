"""Writing segments: sort, deduplicate and scale rows (:func:`prepare`), join segments without
decoding them (:func:`merge_segments`), and write the Parquet file with its summary
(:func:`write_prepared`) -- the format is described in :mod:`.segment`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import StoreError
from ...sample import Series
from . import residual
from . import segment as _segment
from .segment import (
    _DICT_COLUMNS,
    _SCHEMA,
    COMPRESSION_LEVEL,
    SUMMARY_KEY,
    Segment,
    _pack_summary,
    decode,
    fsync_dir,
    scale_values,
    schema,
    segment_name,
    sort_ranked,
    to_scaled,
)
from .sorting import starts_of


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
    rank = np.zeros(len(series), np.int64)
    rank[by_name] = np.arange(len(by_name))
    return (by_name, *sort_ranked(rank[sid], t))


def merge_segments(run: list[Segment]) -> Prepared:
    """The rows of segments (oldest first) as one segment's, later rows winning equal (series, t),
    with the stored integers passed through: no decoding to floats and choosing scales again.

    A series stored at different scales gets the largest one (its integers multiplied, which
    decodes to the same floats: checked) or, failing that, its float64 bit patterns (scale -1)."""
    ids: dict[Series, int] = {}
    sids, ts, vs, scales = [], [], [], []
    for seg in run:
        local = np.asarray([ids.setdefault(x, len(ids)) for x in seg.series], np.int64)
        t, ints = seg.ints_all()
        sids.append(np.repeat(local, seg.count))
        ts.append(t)
        vs.append(ints)
        scales.append((local, seg.scale))
    series = list(ids)
    scale = np.full(len(series), -2, np.int64)  # -2: not seen yet
    mixed = np.zeros(len(series), bool)
    for local, sc in scales:
        sc = sc.astype(np.int64)
        seen = scale[local] != -2
        mixed[local[seen & (scale[local] != sc)]] = True
        scale[local] = np.where(seen, np.where((scale[local] < 0) | (sc < 0), -1, np.maximum(scale[local], sc)), sc)
    if mixed.any():  # bring every part of those series to their common scale, checked
        for _attempt in range(2):
            bad = np.zeros(len(series), bool)
            new_vs = []
            for (local, sc), v, seg in zip(scales, vs, run):
                row_sid = np.repeat(local, seg.count)
                rows = np.flatnonzero(mixed[row_sid])
                if len(rows):
                    f = decode(v[rows], np.repeat(sc.astype(np.int64), seg.count)[rows])
                    want = scale[row_sid[rows]]
                    enc = to_scaled(f, want)
                    ok = decode(enc, want).view(np.int64) == f.view(np.int64)
                    bad[row_sid[rows][~ok]] = True
                    v = v.copy()
                    v[rows] = enc
                new_vs.append(v)
            if not bad.any():
                break
            scale[bad] = -1  # bit patterns: always exact
        vs = new_vs
    sid, t, ints = np.concatenate(sids), np.concatenate(ts), np.concatenate(vs)
    by_name, keep, count, t = _sort_by_name(series, list(range(len(series))), sid, t)
    ints = ints[keep]
    starts = starts_of(count)
    seg_scale = scale[by_name].astype(np.int8)
    first = decode(ints[starts], seg_scale)
    last = decode(ints[starts + count - 1], seg_scale)
    return Prepared([series[i] for i in by_name], np.asarray(by_name, np.int64), count, t, ints, seg_scale,
                    first, last)


def write_segment(directory: Path, lo: int, hi: int, series: list[Series], sid: np.ndarray,
                  t: np.ndarray, v: np.ndarray, *, row_group_size: int = 1 << 20,
                  compression_level: int = COMPRESSION_LEVEL, fmt: int | None = None) -> Segment:
    """Sort, deduplicate, encode and durably write rows (``sid`` indexes ``series``) as a segment.

    The file is written under a temporary name, fsynced, renamed and the folder fsynced, so a
    crash leaves either no segment or a whole one (temporary files are deleted at start).
    """
    return write_prepared(directory, lo, hi, prepare(series, sid, t, v), row_group_size=row_group_size,
                          compression_level=compression_level, fmt=fmt)


def write_prepared(directory: Path, lo: int, hi: int, p: Prepared, *, row_group_size: int = 1 << 20,
                   compression_level: int = COMPRESSION_LEVEL, fmt: int | None = None) -> Segment:
    """Durably write prepared rows as the segment ``<lo>-<hi>`` (see :func:`write_segment`) in
    format ``fmt`` (default ``segment.FORMAT``, 2; 1 is the format before residuals, still read)."""
    fmt = _segment.FORMAT if fmt is None else fmt
    starts = p.starts
    ends = starts + p.count - 1
    summary = {"series": p.series, "count": p.count, "first_t": p.t[starts], "last_t": p.t[ends],
               "first_v": p.first_v, "last_v": p.last_v, "scale": p.scale, "fmt": fmt}
    if fmt >= 2:
        coded = residual.encode(p.ints, p.t, p.count, p.series, p.scale)
        w = residual.width(coded.r)
        rt, step = residual.encode_t(p.t, p.count)
        wt = residual.width(rt)
        summary.update(mode=coded.mode, partner=coded.partner, dict_n=coded.dict_n, first_x=coded.first,
                       last_x=coded.last, width=w, step=step, t_width=wt)
        n = len(p.t)
        bounds = np.append(np.arange(0, n, row_group_size), n)
        summary["rg_t"] = p.t[bounds[:-1]]
        cols = [pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n,
                                                     [None, pa.py_buffer(residual.pack(r, bounds, width))])
                for r, width in ((rt, wt), (coded.r, w))]
        table = pa.table([*cols, pa.array(coded.aux, pa.int64())], schema=schema(wt, w))
        options = {"use_dictionary": ["aux"], "write_statistics": False,
                   "column_encoding": {"t": "PLAIN", "v": "PLAIN"}}
    else:
        table = _table(p.series, p.count, p.t, p.ints, p.scale)
        options = {"use_dictionary": _DICT_COLUMNS, "write_statistics": ["probe", "metric", "t"],
                   "column_encoding": {"t": "DELTA_BINARY_PACKED", "v": "DELTA_BINARY_PACKED"}}
    final = directory / segment_name(lo, hi)
    tmp = directory / f".tmp-{final.name}"
    try:
        with open(tmp, "wb") as f:
            with pq.ParquetWriter(
                f, table.schema, compression="zstd", compression_level=compression_level,
                store_schema=False,  # the schema blob would cost ~0.5 kB per segment
                **options,
            ) as writer:
                writer.write_table(table, row_group_size=row_group_size)
                writer.add_key_value_metadata({SUMMARY_KEY: _pack_summary(summary)})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(directory)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{final}: cannot write segment: {exc}. Check free space and permissions "
                         "(the samples stay in the write-ahead log)") from exc
    seg = Segment.open(final)
    if fmt >= 2 and not np.array_equal(seg.rg_bounds, bounds):  # the byte planes are cut by row group
        final.unlink()
        raise StoreError(f"{final}: Parquet cut the row groups at {seg.rg_bounds[:4].tolist()}..., not every "
                         f"{row_group_size} rows; the segment was not written (a bug: please report it)")
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
