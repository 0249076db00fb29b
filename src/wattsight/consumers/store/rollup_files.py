"""Rollup storage: cells per level in Parquet partitions, kept up to date at each flush.

Layout under ``<store>/rollups``::

    STATE.json                       {"covered_hi": N, "levels": [...], "grouped": true}: the
                                     rollups hold every segment up to WAL file N, in each of
                                     those levels (grouped: see rollup_sync.regroup)
    1m/<partition start ms>.parquet  1 min cells of one hour   (60 per key)
    5m/<partition start ms>.parquet  5 min cells of one day    (288 per key)
    1h/<partition start ms>.parquet  1 h cells of one day      (24 per key)
    1d/<partition start ms>.parquet  1 day cells of 30 days    (30 per key)

Cells are keyed by (probe, metric), like ``Store.read``; a partition file names its keys and
their kinds in its metadata.  :meth:`Rollups.update` recomputes the 1 min cells of the minutes
a flush touched *from the raw samples* (so late samples and samples sent again give exactly the
cells a full rebuild would), then the touched 5 min cells from the 1 min cells, the hours from
the 5 min cells (as :meth:`Rollups.append` does) and the touched days from the hours.  The 5 min
level serves buckets of 5, 10, 15 and 30 min (a week or a month on a screen) from partitions of
a day: a week of 1,000 probes is 7 of them, where the 1 min cells of that week are 168
partitions, more than the memory budget holds.

Files (rollup_parquet.py) are written whole under a temporary name, fsynced and renamed; STATE
last.  A start whose STATE is behind the segments (a crash in between, or a store written
before rollups existed) recomputes the cells of the segments it does not cover (the calls from
the Store, at each flush and at start, are in rollup_sync.py).  A level missing from STATE's
``levels`` (a store written before the level existed) is built from the next finer level's
cells at start (rollup_sync.backfill), never from the raw samples.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import StoreError
from ...sample import counter_range, is_counter
from . import rollup as ru
from . import rollup_parquet as rp
from .files import atomic_write, file_size
from .segment import fsync_dir
from .sorting import starts_of

Key = tuple[str, str]
M, H, D = ru.LEVELS["1m"], ru.LEVELS["1h"], ru.LEVELS["1d"]
FIVE = ru.LEVELS["5m"]
PART = {"1m": H, "5m": D, "1h": D, "1d": 30 * D}
OLD_LEVELS = ("1m", "1h", "1d")  # the levels of a STATE.json without "levels"
#: read(kids, lo, hi) -> (kid, t, v) sorted by (kid, t): the raw samples of those keys in [lo, hi].
Reader = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


class Rollups:
    """The cells of every level: partitions loaded on demand (LRU within ``budget_rows``)."""

    def __init__(self, path: Path, budget_rows: int = 4_000_000) -> None:
        self.path = path
        self.budget_rows = budget_rows
        self.keys: list[Key] = []
        self.kinds: list[str] = []
        self._kid: dict[Key, int] = {}
        self.counter = np.zeros(0, bool)
        self.wrap = np.zeros(0)
        self.hi_t = np.zeros(0, np.int64)  # per kid, the latest time of its rows in segments (see append)
        self.sid_lut: list[int] = []  # per store series id, its kid (grown by rollup_sync)
        self._lock = threading.Lock()
        self._parts: OrderedDict[tuple[str, int], ru.Cells] = OrderedDict()
        self._partial: set[tuple[str, int]] = set()  # partitions in memory with some columns only
        #: partitions in memory with some keys only: by kid, the keys of the file not loaded
        self._missing: dict[tuple[str, int], np.ndarray] = {}
        self._luts: dict[bytes, np.ndarray] = {}  # see _lut
        self._dirty: set[tuple[str, int]] = set()
        self.broken = False  # an update failed half-way: queries use raw samples until a restart
        for level in ru.LEVELS:
            (path / level).mkdir(parents=True, exist_ok=True)
            for tmp in (path / level).glob(".tmp-*"):
                tmp.unlink()
        self.files: dict[str, set[int]] = {lv: {int(p.stem) for p in (path / lv).glob("*.parquet")}
                                           for lv in ru.LEVELS}
        try:
            state = json.loads((path / "STATE.json").read_text())
            self.covered_hi = int(state["covered_hi"])
        except (OSError, ValueError, KeyError, TypeError):
            state, self.covered_hi = {}, 0
        #: the levels whose cells cover every segment up to covered_hi (STATE before the 5 min
        #: level had none: 1m, 1h, 1d); the others are built by backfill()
        self.levels = list(state.get("levels", OLD_LEVELS) if self.covered_hi else ru.LEVELS)
        #: the recent 5 min partitions are in row groups (STATE before them: rollup_sync.regroup)
        self.grouped = bool(state.get("grouped", not self.covered_hi))

    # -- keys ------------------------------------------------------------------------------
    def kid(self, key: Key, kind: str | None = None) -> int:
        """The index of ``key`` (registered with ``kind`` when new; a known key keeps its kind)."""
        k = self._kid.get(key)
        if k is not None and (kind is None or self.kinds[k] is not None):
            return k
        with self._lock:
            k = self._kid.get(key)
            if k is None:
                k = len(self.keys)
                self.counter = np.append(self.counter, False)
                self.wrap = np.append(self.wrap, np.nan)
                self.hi_t = np.append(self.hi_t, np.iinfo(np.int64).min)
                self.keys.append(key)
                self.kinds.append(None)  # not known yet: a gauge until a kind is given
                self._kid[key] = k
            if kind is not None and self.kinds[k] is None:
                counter, wrap = self.counter.copy(), self.wrap.copy()
                counter[k], wrap[k] = is_counter(kind), counter_range(kind) or np.nan
                self.counter, self.wrap = counter, wrap
                self.kinds[k] = kind
        return k

    def known(self, key: Key) -> int | None:
        return self._kid.get(key)

    # -- partitions ------------------------------------------------------------------------
    def _file(self, level: str, p: int) -> Path:
        return self.path / level / f"{p}.parquet"

    def _part(self, level: str, p: int, columns: tuple[str, ...] | None = None,
              kids: np.ndarray | None = None) -> ru.Cells | None:
        """Partition ``p`` of ``level`` from memory, or loaded (then kept, least recently used out).

        With ``columns``, a partition not in memory is loaded with only those (and kid, b), and
        kept so until a call without them loads it whole: a week of buckets reads 10 of the 17
        columns of each day's 5 min cells.  With ``kids``, only the row groups holding those keys
        are loaded (rollup_parquet.load_keys); a later call for other keys loads the groups it
        lacks and adds them (a call without ``kids`` gets them all)."""
        key = (level, p)
        with self._lock:
            got = self._parts.get(key)
            if got is not None and self._holds(key, columns, kids):
                self._parts.move_to_end(key)
                return got
            if p not in self.files[level]:
                return got
            base = got if got is not None and key in self._missing and self._holds(key, columns, None, True) else None
            wanted = None if kids is None else _mask(kids, len(self.keys))
            if base is not None:  # the rows it lacks, with the columns it has
                lacks = self._missing[key]
                wanted = lacks.copy() if wanted is None else lacks & wanted[:len(lacks)]
                columns = tuple(base) if key in self._partial else None
        cells, missing = rp.load_keys(self._file(level, p), self._lut, wanted, columns)
        with self._lock:
            cur = self._parts.get(key)
            if cur is not None and cur is not base and key not in self._partial and key not in self._missing:
                return cur  # loaded whole, or changed, meanwhile
            if base is not None and cur is base and missing is not None:  # else: every group read now
                cells = ru.concat([base, cells])  # whole keys, none in both: still grouped by key
                n = min(len(lacks), len(missing))
                missing = lacks[:n] & missing[:n]  # lacking still: the keys neither load read
                missing = missing if missing.any() else None
            self._put(key, cells, partial=columns is not None, missing=missing)
            self._evict()  # may drop this partition too, if it alone exceeds the cache budget
            return cells

    def _holds(self, key: tuple[str, int], columns: tuple[str, ...] | None, kids: np.ndarray | None,
               any_rows: bool = False) -> bool:
        """Partition ``key`` is in memory with ``columns`` (None: all) of ``kids`` (None: all; with
        ``any_rows``, of any); with the lock held."""
        cells = self._parts.get(key)
        if cells is None or (key in self._partial and (columns is None or any(c not in cells for c in columns))):
            return False
        missing = self._missing.get(key)
        if missing is None or any_rows:
            return True
        return kids is not None and not missing[kids[(kids >= 0) & (kids < len(missing))]].any()

    def _lut(self, names: bytes) -> np.ndarray:
        """This process's kids of a partition's keys (its ``wattsight.rollup.keys``), registered if
        new; the last few lists are kept, as every partition of a level usually has the same."""
        got = self._luts.get(names)
        if got is None:
            got = np.asarray([self.kid((a, b), kind) for a, b, kind in json.loads(names)], np.int64)
            with self._lock:
                while len(self._luts) >= 8:
                    self._luts.pop(next(iter(self._luts)))
                self._luts[names] = got
        return got

    def _put(self, key: tuple[str, int], cells: ru.Cells, *, partial: bool = False,
             missing: np.ndarray | None = None) -> None:
        """Keep ``cells`` as partition ``key`` in memory (with the lock held); ``partial``: some
        columns only, ``missing``: by kid, the keys of the file whose rows are not in ``cells``."""
        self._parts[key] = cells
        self._parts.move_to_end(key)
        (self._partial.add if partial else self._partial.discard)(key)
        if missing is None:
            self._missing.pop(key, None)
        else:
            self._missing[key] = missing

    def _evict(self) -> None:
        rows = sum(len(c["kid"]) for c in self._parts.values())
        for key in list(self._parts):
            if rows <= self.budget_rows:
                break
            if key not in self._dirty:
                rows -= len(self._parts.pop(key)["kid"])
                self._partial.discard(key)
                self._missing.pop(key, None)

    def _partitions(self, level: str, lo: int, hi: int) -> list[int]:
        """Starts of the partitions of ``level`` (on disk or in memory) that overlap [lo, hi)."""
        first = lo // PART[level] * PART[level]
        with self._lock:
            known = self.files[level] | {p for lv, p in self._parts if lv == level}
        return sorted(p for p in known if first <= p < hi)

    def read(self, level: str, kids: np.ndarray, lo: int, hi: int, columns=None) -> ru.Cells:
        """Cells of ``level`` for ``kids`` with ``lo <= b < hi``, sorted by (kid, b); only
        ``columns`` (and kid, b) when given: a week of buckets needs 10 of the 17.

        Partitions in memory are taken first: a read of more than the memory budget then misses
        only the excess, where a scan in time order through a least-recently-used cache misses all."""
        kids = np.asarray(kids, np.int64)
        keep = None if columns is None else ("kid", "b", *(c for c in columns if c not in ("kid", "b")))
        starts = self._partitions(level, lo, hi)
        with self._lock:
            order = sorted(starts, key=lambda p: ((level, p) not in self._parts, p))
            todo = [p for p in order if not self._holds((level, p), keep, kids)]  # loaded a few ahead
        got = {}
        want = np.zeros(0, bool)  # by kid: asked for (np.isin would sort every row)
        for p, cells in rp.ahead(lambda p: self._part(level, p, keep, kids), order, todo):
            if cells is None or not len(cells["kid"]):
                continue
            if keep is not None:
                cells = {c: cells[c] for c in keep}
            if len(want) <= len(self.keys):  # first, or the load registered keys new to this process
                want = _mask(kids, len(self.keys) + 1)
            sel = want[cells["kid"]]
            if lo > p or hi < p + PART[level]:
                sel &= (cells["b"] >= lo) & (cells["b"] < hi)
            at = np.flatnonzero(sel)
            if len(at) and at[-1] - at[0] + 1 == len(at):  # one run (keys in a row): views
                got[p] = {c: a[at[0]:at[-1] + 1] for c, a in cells.items()}
            elif len(at):
                got[p] = ru.take(cells, at)
        if not got:
            return ru.empty() if keep is None else {c: ru.empty()[c] for c in keep}
        cells = ru.concat([got[p] for p in starts if p in got])  # in time order, each grouped by kid
        return ru.take(cells, np.argsort(cells["kid"], kind="stable"))

    def _replace(self, level: str, kids: np.ndarray, lo: int, hi: int, new: ru.Cells) -> None:
        """Cells of ``kids`` in [lo, hi) become ``new`` (copy on write: readers keep the old arrays)."""
        size = PART[level]
        for p in range(lo // size * size, hi, size):
            old = self._part(level, p) or ru.empty()
            keep = ~(np.isin(old["kid"], kids) & (old["b"] >= lo) & (old["b"] < hi))
            mine = (new["b"] >= p) & (new["b"] < p + size)
            self.set(level, p, ru.sort(ru.concat([ru.take(old, keep), ru.take(new, mine)])))

    def set(self, level: str, p: int, cells: ru.Cells) -> None:
        """Partition ``p`` of ``level`` becomes ``cells`` (written at the next save)."""
        with self._lock:
            self._put((level, p), cells)
            self._dirty.add((level, p))

    # -- updates ---------------------------------------------------------------------------
    def update(self, kid: np.ndarray, t: np.ndarray, read: Reader) -> None:
        """Recompute the cells touched by rows (kid, t) that are now in the raw store."""
        if not len(t):
            return
        hours: dict[int, set[int]] = {}  # day -> touched hours
        hour_kids: dict[int, np.ndarray] = {}
        h_of = t // H
        for h in np.unique(h_of).tolist():
            sel = h_of == h
            kids = np.unique(kid[sel])
            lo, hi = int(t[sel].min()) // M * M, int(t[sel].max()) // M * M + M
            k, tt, vv = read(kids, lo, hi - 1)
            self._replace("1m", kids, lo, hi, ru.from_raw(k, tt, vv, M, self.counter, self.wrap))
            hours.setdefault(h * H // D, set()).add(h)
            hour_kids[h] = kids
        for day, hs in sorted(hours.items()):
            kids = np.unique(np.concatenate([hour_kids[h] for h in hs]))
            lo, hi = min(hs) * H, max(hs) * H + H
            five = ru.coarsen(self.read("1m", kids, lo, hi), FIVE, self.counter, self.wrap)
            self._replace("5m", kids, lo, hi, five)  # hours from these, as append() does
            self._replace("1h", kids, lo, hi, ru.coarsen(five, H, self.counter, self.wrap))
            fine = self.read("1h", kids, day * D, day * D + D)
            self._replace("1d", kids, day * D, day * D + D, ru.coarsen(fine, D, self.counter, self.wrap))

    def append(self, kids: np.ndarray, count: np.ndarray, t: np.ndarray, v: np.ndarray) -> bool:
        """Fold new rows into the cells without reading raw samples back, when they all come after
        every row of their key already rolled up (the usual case); False (nothing changed) otherwise.

        Rows are grouped in runs of one key each (``kids[i]`` for ``count[i]`` rows), sorted by t,
        unique t per key.  The new rows' cells of each level are joined to the existing cells as
        :func:`rollup.coarsen` joins consecutive cells, which is what recomputing from raw gives.
        """
        if not len(t):
            return True
        if len(np.unique(kids)) != len(kids):  # two series of one key: their rows interleave
            return False
        starts = starts_of(count)
        if np.any(t[starts] <= self.hi_t[kids]):  # a late or repeated sample: recompute from raw
            return False
        counter, wrap = self.counter, self.wrap
        row_kid = np.repeat(kids, count)
        pieces = ru.from_raw(row_kid, t, v, M, counter, wrap)
        plan = []
        for level in ru.LEVELS:
            if level != "1m":
                pieces = ru.coarsen(pieces, ru.LEVELS[level], counter, wrap)
            size, part = ru.LEVELS[level], PART[level]
            pieces = ru.sort(pieces)
            pb = pieces["b"] // part * part
            for p in np.unique(pb).tolist():
                new = ru.take(pieces, pb == p)
                cells = ru.join(self._part(level, p) or ru.empty(), new, p, size, part, counter, wrap)
                if cells is None:
                    return False
                plan.append(((level, p), cells))
        with self._lock:
            for key, cells in plan:
                self._put(key, cells)
                self._dirty.add(key)
            self._evict()
        self.note(kids, t[starts + count - 1])
        return True

    def note(self, kids: np.ndarray, last_t: np.ndarray) -> None:
        """Rows of ``kids`` up to ``last_t`` are now rolled up (see :meth:`append`)."""
        with self._lock:  # kid() may grow the array meanwhile
            hi_t = self.hi_t.copy()
            np.maximum.at(hi_t, np.asarray(kids, np.int64), np.asarray(last_t, np.int64))
            self.hi_t = hi_t

    def save(self, covered_hi: int) -> None:
        """Write the changed partitions, then STATE (the WAL number the cells now cover)."""
        with self._lock:
            dirty = sorted(self._dirty)
            self._dirty.clear()
            snap = {k: self._parts[k] for k in dirty}
        try:
            for (level, p), cells in snap.items():
                self._write(level, p, cells)
            dirs = {self.path / level for level, _ in dirty}
            for d in dirs:
                fsync_dir(d)
            atomic_write(self.path / "STATE.json",
                         json.dumps({"covered_hi": covered_hi, "levels": self.levels,
                                     "grouped": self.grouped}).encode())
        except OSError as exc:
            with self._lock:
                self._dirty.update(dirty)
            raise StoreError(f"{self.path}: cannot write rollups: {exc}. Queries still use them from "
                             "memory; they are rebuilt from the raw samples at the next start") from exc
        self.covered_hi = covered_hi

    def _write(self, level: str, p: int, cells: ru.Cells) -> None:
        path = self._file(level, p)
        if not len(cells["kid"]):
            path.unlink(missing_ok=True)
            self.files[level].discard(p)
            return
        used, local = np.unique(cells["kid"], return_inverse=True)
        rp.write(path, cells, [[*self.keys[k], self.kinds[k] or "gauge"] for k in used.tolist()], local)
        self.files[level].add(p)

    # -- retention and usage ---------------------------------------------------------------
    def drop_before(self, level: str, cutoff_ms: int) -> int:
        """Delete the partitions of ``level`` that end at or before ``cutoff_ms``; returns how many."""
        gone = [p for p in sorted(self.files[level]) if p + PART[level] <= cutoff_ms]
        for p in gone:
            with self._lock:
                self._parts.pop((level, p), None)
                self._partial.discard((level, p))
                self._missing.pop((level, p), None)
                self._dirty.discard((level, p))
                self.files[level].discard(p)
            self._file(level, p).unlink(missing_ok=True)
        if gone:
            fsync_dir(self.path / level)
        return len(gone)

    def usage(self) -> dict[str, dict]:
        out = {}
        for level in ru.LEVELS:
            parts = sorted(self.files[level])
            size = sum(file_size(self._file(level, p)) for p in parts)
            out[level] = {"partitions": len(parts), "bytes": size,
                          "from_ms": parts[0] if parts else None,
                          "to_ms": parts[-1] + PART[level] if parts else None}
        return out



def _mask(kids: np.ndarray, n: int) -> np.ndarray:
    """``kids`` as bool by kid, of length ``n`` (those outside left out)."""
    out = np.zeros(n, bool)
    out[kids[(kids >= 0) & (kids < n)]] = True
    return out

