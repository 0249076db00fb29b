"""Retention per metric: the ``[store.retention]`` rules and the pass that applies them.

::

    [store.retention]
    raw = {power = "30d", "*" = "forever"}   # raw samples, per metric ("*": every other metric)
    rollups = {"1m" = "90d", "1h" = "2y"}    # cells per level (missing: kept forever)
    interval = 3600.0                        # seconds between two passes

A pass runs in the store's background thread, after a flush and merges.  Each segment holding
raw samples older than their metric's rule is rewritten without them (same name, written under
a temporary name, fsynced, renamed: a crash leaves the old file or the new one, both whole),
one segment at a time; ``handle()`` and reads go on meanwhile (reads that started before keep
the old file mapped).  Rollup partitions that end before their level's rule are deleted.
Rollups are not recomputed when raw samples go: they outlive them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...durations import duration_ms as _ms
from . import rollup as ru
from .compaction import keep_newer
from .segment import COLD_LEVEL, Segment, fsync_dir, write_prepared


def duration_ms(text: str) -> int | None:
    """``"7d"`` -> ms (:mod:`wattsight.durations`, as the API reads them, plus ``min`` and ``y``);
    ``"forever"`` -> None; ValueError otherwise."""
    if text.strip().lower() in ("forever", "inf", "never"):
        return None
    ms = _ms(text)
    if ms is None:
        raise ValueError(f"{text!r} is not a duration such as '7d', '12h', '90d', '2y' or 'forever' "
                         "(units: ms, s, m or min, h, d, w, y)")
    if ms <= 0:
        raise ValueError(f"{text!r}: a retention must be positive (or 'forever')")
    return ms


SAMPLE = """\
[store.retention]
raw = {power = "30d", "*" = "forever"}   # raw samples per metric ("*": the others); "forever" keeps them
rollups = {"1m" = "90d"}                 # 1 min / 5 min / 1 h / 1 d cells per level (missing: forever)
interval = 3600.0                        # seconds between two retention passes
"""


class RetentionConfig(BaseModel):
    """[store.retention]: how long raw samples (per metric) and rollup cells (per level) are kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    raw: dict[str, str] = Field(default_factory=dict, description=(
        "per metric, how long raw samples are kept ('7d', '12h', '2y', 'forever'); '*' for every "
        "metric not named; missing: forever"))
    rollups: dict[Literal["1m", "5m", "1h", "1d"], str] = Field(default_factory=dict, description=(
        "per rollup level, how long its cells are kept; missing: forever"))
    interval: float = Field(3600.0, gt=0, description="seconds between two retention passes")

    @field_validator("raw", "rollups")
    @classmethod
    def _durations(cls, v: dict) -> dict:
        for text in v.values():
            duration_ms(text)
        return v

    def raw_ms(self, metric: str) -> int | None:
        """How long raw samples of ``metric`` are kept (ms), None for ever."""
        text = self.raw.get(metric, self.raw.get("*"))
        return None if text is None else duration_ms(text)

    def rollup_ms(self, level: str) -> int | None:
        text = self.rollups.get(level)
        return None if text is None else duration_ms(text)

    @property
    def active(self) -> bool:
        return any(duration_ms(t) is not None for t in [*self.raw.values(), *self.rollups.values()])


def cutoffs(segment: Segment, rules: RetentionConfig, now_ms: int) -> np.ndarray | None:
    """Per series of ``segment``, the time before which its samples go (int64 min: none go), or
    None when nothing in the segment is old enough."""
    cut = np.full(len(segment.series), np.iinfo(np.int64).min, np.int64)
    for i, s in enumerate(segment.series):
        keep = rules.raw_ms(s.metric)
        if keep is not None:
            cut[i] = now_ms - keep
    return cut if bool(np.any(segment.first_t < cut)) else None


def rewrite(segment: Segment, cut: np.ndarray, *, row_group_size: int) -> tuple[Segment | None, int]:
    """``segment`` without the rows older than their series' cutoff: (new segment or None when no row
    is left, rows dropped).  The file is replaced atomically under the same name."""
    if bool(np.all(segment.last_t < cut)):  # every row goes: nothing to read
        return None, segment.rows
    new = write_prepared(segment.path.parent, segment.lo, segment.hi, keep_newer(segment, cut),
                         row_group_size=row_group_size, compression_level=COLD_LEVEL)  # a slice at a time
    return new, segment.rows - new.rows


def apply(store, now: int) -> dict:
    """One retention pass over ``store`` (a Store); returns what was done."""
    done = {"rewritten": 0, "deleted": 0, "dropped": 0, "rollup_partitions": 0}
    for seg in list(store._segments):  # the caller holds Store._merging: no merge meanwhile; flushes
        with store._lock:               # only add newer segments
            segments = store._segments
        cut = cutoffs(seg, store.retention, now)
        newest = seg.hi == max(s.hi for s in segments)
        if cut is None or (newest and bool(np.all(seg.last_t < cut))):
            continue  # nothing old; or the newest would go whole: it names the next log file
        new, dropped = rewrite(seg, cut, row_group_size=store.ROW_GROUP_SIZE)
        with store._lock:
            store._segments = [new if s is seg else s for s in store._segments if new or s is not seg]
        if new is None:
            seg.path.unlink(missing_ok=True)
            fsync_dir(seg.path.parent)
        done["deleted" if new is None else "rewritten"] += 1
        done["dropped"] += dropped
    for level in ru.LEVELS:
        keep = store.retention.rollup_ms(level)
        if keep is not None:
            done["rollup_partitions"] += store._rollups.drop_before(level, now - keep)
    if done["dropped"]:
        rebuild_registry(store)
    with store._lock:
        store._n["retention_passes"] += 1
        store._n["retention_dropped"] += done["dropped"]
        store._n["retention_rewrites"] += done["rewritten"] + done["deleted"]
    return done


def rebuild_registry(store) -> None:
    """Counts and first/last times again from the segments and memory (after retention).  Not during
    a flush: its rows are in its new segment and still in memory (``_frozen``) until it ends."""
    with store._maintenance, store._lock:
        reg = store._registry
        n = len(reg)
        reg.count[:n] = 0
        reg.first_t[:n] = np.iinfo(np.int64).max
        reg.last_t[:n] = np.iinfo(np.int64).min
        reg.last_v[:n] = np.nan
        for seg in store._segments:
            reg.fold(reg.id_map(seg.series), seg.count, seg.first_t, seg.last_t, seg.last_v)
        for c in [c for f in store._frozen for c in f.chunks] + store._tail.chunks:
            reg.update(c.sid, c.t, c.v)


def usage(store, segments: list[Segment], infos, wal_bytes: int, rollups: dict) -> dict:
    """Disk use and oldest/newest sample per metric (segment bytes shared out by rows)."""
    per: dict[str, dict] = {}
    for info in infos:
        m = per.setdefault(info.series.metric, {"series": 0, "samples": 0, "bytes": 0.0,
                                                 "oldest_ms": info.first_t, "newest_ms": info.last_t})
        m["series"] += 1
        m["samples"] += info.count
        m["oldest_ms"] = min(m["oldest_ms"], info.first_t)
        m["newest_ms"] = max(m["newest_ms"], info.last_t)
    for seg in segments:
        if not seg.rows:
            continue
        for s, n in zip(seg.series, seg.count.tolist()):
            if s.metric in per:
                per[s.metric]["bytes"] += seg.size * n / seg.rows
    rules = store.retention
    for metric, m in per.items():
        m["bytes"] = round(m["bytes"])
        keep = rules.raw_ms(metric)
        m["raw_retention_ms"] = keep
    seg_bytes = sum(s.size for s in segments)
    roll_bytes = sum(r["bytes"] for r in rollups.values())
    return {"backend": "embedded", "path": str(store.path),
            "bytes_on_disk": seg_bytes + wal_bytes + roll_bytes, "segment_bytes": seg_bytes,
            "wal_bytes": wal_bytes, "rollup_bytes": roll_bytes, "segments": len(segments),
            "metrics": dict(sorted(per.items())),
            "rollups": {lv: {**r, "retention_ms": rules.rollup_ms(lv)} for lv, r in rollups.items()}}
