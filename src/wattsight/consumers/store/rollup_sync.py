"""Glue between the Store and its rollups: fold each flush into the cells, catch up at start.

:func:`roll` runs after a flush made a segment durable; :func:`catch_up` at start builds the
levels a store written before them lacks (:func:`backfill`), rewrites the recent 5 min partitions
of a store written before row groups in them (:func:`regroup`) and recomputes the cells of the
segments that ``rollups/STATE.json`` does not cover (rollup_files.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ...errors import StoreError
from . import rollup as ru
from . import rollup_parquet as rp
from .rollup_files import PART, Reader, Rollups

log = logging.getLogger("wattsight.store")
#: The last days of 5 min cells that a store written before row groups rewrites in them, once
REGROUP_DAYS = 35


def _kids_of(store, R: Rollups, sid: np.ndarray) -> np.ndarray:
    """Rollup key ids of store series ids (a key takes the kind of its first series)."""
    with store._lock:
        series = list(store._registry.series)
    lut = R.sid_lut
    for s in series[len(lut):]:
        lut.append(R.kid(s.key, s.kind))
    return np.asarray(lut, np.int64)[sid]


def raw_columns(store, keys: list, kids: np.ndarray, lo: int, hi: int, *, memory: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``store.read(keys, lo, hi)`` as flat (kid, t, v), key by key (``kids[i]`` is ``keys[i]``'s id)."""
    got = store.read(keys, lo, hi, memory=memory)
    parts = [(np.full(len(got[key][0]), k, np.int64), *got[key]) for k, key in zip(kids.tolist(), keys)]
    return tuple(np.concatenate(c) for c in zip(*parts)) if parts else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def _reader(store, R: Rollups) -> Reader:
    def read(kids: np.ndarray, lo: int, hi: int):  # the rollups hold what segments hold: no memory
        return raw_columns(store, [R.keys[k] for k in kids.tolist()], kids, lo, hi, memory=False)
    return read


def roll(store, R: Rollups, rows, hi: int) -> None:
    """After a flush made ``rows`` (segment.Prepared) durable as the segment ending at WAL file ``hi``."""
    if R.broken:
        return
    try:
        lut = _kids_of(store, R, rows.index)  # segment series -> key ids
        if rows.v is None or not R.append(lut, rows.count, rows.t, rows.v):
            kid = np.repeat(lut, rows.count)
            R.update(kid, rows.t, _reader(store, R))
            R.note(lut, rows.t[rows.starts + rows.count - 1])
    except Exception:  # queries fall back to raw samples; the next start rebuilds from STATE
        R.broken = True
        store._n["rollup_errors"] += 1
        log.exception("%s: rollup update failed; queries read raw samples until the next start", R.path)
        return
    try:
        R.save(hi)
    except StoreError as exc:
        store._n["rollup_errors"] += 1
        log.error("%s", exc)


def catch_up(store, R: Rollups) -> None:
    """At start: the levels STATE does not list (built from finer cells), then the cells of the
    segments that STATE does not cover (a crash, an older store)."""
    def progress(level: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            log.info("%s: %s rollups built from finer cells: %d of %d partitions", R.path, level, done, total)
    backfill(R, progress)
    if not R.grouped:
        regroup(R)
    for seg in store._segments:  # what the rollups hold, per key (see Rollups.append)
        if len(seg.series):
            R.note(_kids_of(store, R, store._registry.id_map(seg.series)), seg.last_t)
    todo = [s for s in store._segments if s.hi > R.covered_hi]
    for seg in todo:
        local, t, _ = seg.read_all()
        ids = store._registry.id_map(seg.series)
        R.update(_kids_of(store, R, ids[local]), t, _reader(store, R))
        log.info("%s: rollups rebuilt for %d samples of segment %s", R.path, len(t), seg.path.name)
    if todo:
        R.save(max(s.hi for s in store._segments))


def backfill(R: Rollups, progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Build the levels STATE does not list from the next finer level's cells, partition by
    partition (``progress(level, done, total)`` after each), then save STATE; returns the levels
    built.  Coarsening cells is exact (:func:`rollup.coarsen`), so the new level equals one
    maintained since the start.  Killed half-way, it starts again at the next start."""
    names = list(ru.LEVELS)
    todo = [lv for lv in names if lv not in R.levels]
    for level in todo:
        finer, size, part = names[names.index(level) - 1], ru.LEVELS[level], PART[level]
        starts = sorted({q // part * part for q in R.files[finer]})
        for i, p in enumerate(starts):
            fine = ru.concat([R._part(finer, q) or ru.empty() for q in R._partitions(finer, p, p + part)])
            R.set(level, p, ru.sort(ru.coarsen(ru.sort(fine), size, R.counter, R.wrap)))
            R.save(R.covered_hi)  # STATE still without this level: only the partition
            if progress:
                progress(level, i + 1, len(starts))
        R.levels.append(level)
    if todo:
        R.levels = [lv for lv in names if lv in R.levels]
        R.save(R.covered_hi)
    return todo


def regroup(R: Rollups) -> int:
    """Rewrite in row groups (rollup_parquet.write) the last :data:`REGROUP_DAYS` partitions of 5 min
    cells of a store written before them (one group each): the days that screens of a week or a
    month read, then decoding only the probes shown (older partitions read whole, as before).
    Once: STATE notes it (killed half-way, the next start goes on).  Returns how many were."""
    todo = [p for p in sorted(R.files["5m"])[-REGROUP_DAYS:] if not rp.grouped(R._file("5m", p))]
    for i, p in enumerate(todo):
        R.set("5m", p, R._part("5m", p))
        R.save(R.covered_hi)
        if (i + 1) % 10 == 0 or i + 1 == len(todo):
            log.info("%s: 5m rollups rewritten in row groups: %d of %d partitions", R.path, i + 1, len(todo))
    R.grouped = True
    R.save(R.covered_hi)
    return len(todo)
