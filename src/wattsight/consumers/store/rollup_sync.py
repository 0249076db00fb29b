"""Glue between the Store and its rollups: fold each flush into the cells, catch up at start.

:func:`roll` runs after a flush made a segment durable; :func:`catch_up` at start recomputes
the cells of the segments that ``rollups/STATE.json`` does not cover (rollup_files.py).
"""

from __future__ import annotations

import logging

import numpy as np

from ...errors import StoreError
from .rollup_files import Reader, Rollups

log = logging.getLogger("wattsight.store")


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
    R.backfill(progress)
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
