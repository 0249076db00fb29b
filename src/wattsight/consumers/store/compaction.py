"""Which segments to merge and how (in memory, or a slice of probes at a time), and which to drop
at start (by the WAL range a segment covers)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ...sample import Series
from . import segment as _segment
from .scaling import decode, to_scaled
from .segment import Segment
from .segment_write import Prepared, _sort_by_name
from .sorting import in_order, starts_of

#: A merge of more rows is read and encoded a slice of probes at a time (~64 B a row in memory).
SLICE_ROWS = 16_000_000
#: Full segments are merged into one per day at most (:func:`pick_tier`), at most this many rows
#: (a day of 1,000 nodes x 4 series at 1 Hz: 346 M rows; ~1.5 B a row held while merging).
TIER_SPAN_MS = 86_400_000
TIER_MAX_ROWS = 400_000_000
TIER_FANOUT = 4


def pick_run(segments: list[Segment], fanout: int, max_rows: int, tiers: str = "classes") -> list[Segment]:
    """The oldest consecutive run holding ``fanout`` segments of one level, within ``max_rows``.

    A segment's level is log_fanout of the flushes (log files) it covers, so levels do not
    depend on the ingest rate: 8 flushes make a level-1 segment, 64 a level-2 one.  Smaller
    segments inside a run are merged along; larger ones end it.  Each sample is rewritten
    about log_fanout(flushes per largest segment) times.  Failing such a run, a tier of full
    segments (:func:`pick_tier`, as ``tiers`` says; format 2 and later: a merge larger than memory).
    """
    level = [int(math.log(s.hi - s.lo + 1, fanout) + 1e-9) for s in segments]
    for k in sorted(set(level)):
        run: list[int] = []
        for i, lv in enumerate(level):
            if lv > k:
                run = []
                continue
            run.append(i)
            while sum(segments[j].rows for j in run) > max_rows:
                run.pop(0)
            if sum(level[j] == k for j in run) >= fanout:
                return [segments[j] for j in run]
    return pick_tier(segments, fanout, max_rows, tiers) if _segment.FORMAT >= 2 else []


#: :func:`pick_tier`'s choices before a day is complete.
TIERS = ("classes", "complete", "whole")


def pick_tier(segments: list[Segment], fanout: int, max_rows: int, tiers: str = "classes") -> list[Segment]:
    """The oldest run of consecutive *full* segments (too large for ``fanout`` of their size to fit
    in ``max_rows``: no run above takes them; the newest segment left out) to merge into one, at
    most a day of data (``TIER_SPAN_MS``) and ``TIER_MAX_ROWS`` rows: once the run is complete
    (the store holds data a day after its start, or the next full segment does not fit), or when
    ``TIER_FANOUT`` of its segments are of one size class (log_TIER_FANOUT of their rows: a day's
    first hours at high rates).  Each segment pays its series' starts, dictionaries and prediction
    blocks again: a day of 1,000 nodes in ~16 M-row segments costs ~10 % more than in one.
    Such merges are larger than memory: :class:`Sliced` reads and encodes them a slice at a time.

    ``tiers`` says what happens before a run is complete: ``"classes"`` as above; ``"complete"``
    nothing (while ingest outruns the merges: each sample is then rewritten once, into its day's
    tier, instead of once per size class, 3 times for a day of 1,000 nodes at 16 M-row flushes;
    background.py); ``"whole"`` the run at once, the newest segment too (an explicit
    ``Store.compact()`` once ingest has stopped: one rewrite now, nothing left in a flush's encoding).
    """
    if tiers not in TIERS:
        raise ValueError(f"pick_tier: tiers={tiers!r}; expected one of {', '.join(TIERS)}")
    n = len(segments)
    full = [(i < n - 1 or tiers == "whole") and s.rows * fanout > max_rows for i, s in enumerate(segments)]
    newest = max((s.tmax for s in segments), default=0)
    i = 0
    while i < n:
        if not full[i]:
            i += 1
            continue
        run, rows, tmin, tmax = [], 0, segments[i].tmin, segments[i].tmax
        j = i
        while j < n and full[j]:
            s = segments[j]
            lo, hi = min(tmin, s.tmin), max(tmax, s.tmax)
            if rows + s.rows > TIER_MAX_ROWS or hi - lo > TIER_SPAN_MS:
                break
            run.append(s)
            rows, tmin, tmax = rows + s.rows, lo, hi
            j += 1
        complete = (j < n and full[j]) or newest - tmin > TIER_SPAN_MS
        if len(run) >= 2 and (complete or tiers == "whole"):
            return run
        if tiers != "classes":
            i = max(j, i + 1)
            continue
        sizes = [int(math.log(s.rows * fanout / max_rows, TIER_FANOUT) + 1e-9) for s in run]
        for k in sorted(set(sizes)):
            part: list[Segment] = []
            for s, c in zip(run, sizes):
                part = [] if c > k else [*part, s]
                if sum(sizes[run.index(x)] == k for x in part) >= TIER_FANOUT:
                    return part
        i = max(j, i + 1)
    return []


def pick_cold(segments: list[Segment], fanout: int, max_rows: int, fmt: int) -> Segment | None:
    """The oldest segment written in a format before ``fmt`` (a flush's) that no merge will take:
    older than the newest ``fanout``, or too large for ``fanout`` of its size to fit in ``max_rows``
    (then all but the newest segment).  None if there is none."""
    n = len(segments)
    return next((s for i, s in enumerate(segments) if s.fmt < fmt and (
        i < n - fanout or (i < n - 1 and s.rows * fanout > max_rows))), None)


def drop_covered(segments: list[Segment]) -> list[Segment]:
    """Segments by WAL range, deleting those inside another's range (a merge killed before cleanup)."""
    keep = []
    for seg in segments:
        if any(o is not seg and o.lo <= seg.lo and seg.hi <= o.hi for o in segments):
            seg.path.unlink()
        else:
            keep.append(seg)
    return sorted(keep, key=lambda s: s.hi)



def merge_segments(run: list[Segment], slice_rows: int = SLICE_ROWS) -> Prepared | Sliced:
    """The rows of segments (oldest first) as one segment's, later rows winning equal (series, t),
    with the stored integers passed through: no decoding to floats and choosing scales again.

    A series stored at different scales gets the largest one (its integers multiplied, which
    decodes to the same floats: checked) or, failing that, its float64 bit patterns (scale -1).
    Runs of more than ``slice_rows`` rows come as :class:`Sliced`: their rows a slice of probes at
    a time, for :func:`.segment_write.write_prepared`."""
    if sum(s.rows for s in run) > slice_rows:
        return Sliced(run, slice_rows)
    return merge_parts([(seg.series, seg.count, seg.scale, *seg.ints_all()) for seg in run])


def keep_newer(segment: Segment, cut: np.ndarray, slice_rows: int = SLICE_ROWS) -> Prepared | Sliced:
    """The rows of ``segment`` at or after their series' ``cut`` (retention), as :func:`merge_segments`
    gives them: a slice at a time for a segment larger than ``slice_rows`` (a tier of a day).  Some
    row must stay: a segment whose rows all go is deleted, not rewritten."""
    if segment.rows > slice_rows:
        return Sliced([segment], slice_rows, [cut])
    return merge_parts([_newer(segment.series, segment.count, segment.scale, *segment.ints_all(), cut)])


def _newer(series: list[Series], count: np.ndarray, scale: np.ndarray, t: np.ndarray, ints: np.ndarray,
           cut: np.ndarray) -> tuple:
    """A part (series, count, scale, t, ints) without its rows before their series' ``cut``; series
    left without rows are left out."""
    keep = t >= np.repeat(cut, count)
    kept = np.add.reduceat(keep, starts_of(count)) if len(count) else count
    kept = np.where(count > 0, kept, 0)
    has = kept > 0
    return [s for s, h in zip(series, has.tolist()) if h], kept[has], scale[has], t[keep], ints[keep]


class Sliced:
    """A merge of more rows than fit in memory: iterating gives its rows as :class:`Prepared`
    slices, each the series of a range of probes (by name) with about ``slice_rows`` rows, read
    from each segment of the run by :meth:`.Segment.series_ints` (row groups of those series only;
    ``cuts``: per segment, per series, the time before which its rows go, see :func:`keep_newer`)."""

    def __init__(self, run: list[Segment], slice_rows: int, cuts: list[np.ndarray] | None = None) -> None:
        self.run, self.cuts = run, cuts
        rows: dict[str, int] = {}
        for seg in run:
            for s, c in zip(seg.series, seg.count.tolist()):
                rows[s.probe] = rows.get(s.probe, 0) + c
        self.cut: dict[str, int] = {}  # probe -> slice
        k = acc = 0
        for probe in sorted(rows):
            if acc and acc + rows[probe] > slice_rows:
                k, acc = k + 1, 0
            self.cut[probe] = k
            acc += rows[probe]
        self.slices = k + 1

    def __iter__(self) -> Iterator[Prepared]:
        which = [np.asarray([self.cut[s.probe] for s in seg.series], np.int64) for seg in self.run]
        for k in range(self.slices):
            parts = []
            for n, (seg, w) in enumerate(zip(self.run, which)):
                idx = np.flatnonzero(w == k).tolist()
                if idx:
                    part = ([seg.series[i] for i in idx], seg.count[idx], seg.scale[idx], *seg.series_ints(idx))
                    parts.append(part if self.cuts is None else _newer(*part, self.cuts[n][idx]))
            if any(len(part[0]) for part in parts):
                yield merge_parts(parts)


def merge_parts(parts: list[tuple]) -> Prepared:
    """:func:`merge_segments` of parts (series, count, scale, t, ints), oldest first."""
    ids: dict[Series, int] = {}
    ts, vs, scales, counts = [], [], [], []
    for names, count, sc, t, ints in parts:
        local = np.asarray([ids.setdefault(x, len(ids)) for x in names], np.int64)
        ts.append(t)
        vs.append(ints)
        scales.append((local, sc))
        counts.append(count)
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
            for (local, sc), v, count in zip(scales, vs, counts):
                row_sid = np.repeat(local, count)
                rows = np.flatnonzero(mixed[row_sid])
                if len(rows):
                    f = decode(v[rows], np.repeat(sc.astype(np.int64), count)[rows])
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
    t, ints = np.concatenate(ts), np.concatenate(vs)
    by_name, keep, count, t = _merge_order(series, [local for local, _ in scales], counts, t)
    ints = ints[keep]
    starts = starts_of(count)
    seg_scale = scale[by_name].astype(np.int8)
    first = decode(ints[starts], seg_scale)
    last = decode(ints[starts + count - 1], seg_scale)
    return Prepared([series[i] for i in by_name], np.asarray(by_name, np.int64), count, t, ints, seg_scale,
                    first, last)


def _merge_order(series: list[Series], local: list[np.ndarray], counts: list[np.ndarray], t: np.ndarray):
    """:func:`.segment_write._sort_by_name` of parts laid end to end (each a block of ``counts[k][j]``
    rows of its series ``local[k][j]``, in time order), by blocks: the rows of each series taken
    part after part, sorted again only if a part holds rows older than an earlier part's."""
    by_name = sorted(range(len(series)), key=lambda i: series[i].as_tuple())
    rank = np.empty(len(series), np.int64)
    rank[by_name] = np.arange(len(series))
    block_rank = np.concatenate([rank[x] for x in local])
    size = np.concatenate(counts).astype(np.int64)
    start = starts_of(size)
    pick = np.lexsort((np.repeat(np.arange(len(counts)), [len(c) for c in counts]), block_rank))
    size, start = size[pick], start[pick]
    order = np.repeat(start - starts_of(size), size) + np.arange(len(t))
    count = np.bincount(block_rank, weights=np.concatenate(counts), minlength=len(series)).astype(np.int64)
    got = in_order(order, t, count)
    if got is not None:
        return (by_name, *got)
    sid = np.concatenate([np.repeat(x, c) for x, c in zip(local, counts)])
    return _sort_by_name(series, list(range(len(series))), sid, t)
