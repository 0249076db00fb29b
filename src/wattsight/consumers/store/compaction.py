"""Which segments to merge, and which to drop at start: both by the WAL range a segment covers."""

from __future__ import annotations

import math

from .segment import Segment


def pick_run(segments: list[Segment], fanout: int, max_rows: int) -> list[Segment]:
    """The oldest consecutive run holding ``fanout`` segments of one level, within ``max_rows``.

    A segment's level is log_fanout of the flushes (log files) it covers, so levels do not
    depend on the ingest rate: 8 flushes make a level-1 segment, 64 a level-2 one.  Smaller
    segments inside a run are merged along; larger ones end it.  Each sample is rewritten
    about log_fanout(flushes per largest segment) times.
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

