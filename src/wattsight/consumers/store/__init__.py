"""The embedded store, wattsight's default: a write-ahead log, a memory tail, Parquet segments.

::

    handle(batch, raw) --> WAL record (write; fsync if asked) --> tail (column arrays in memory)
                                                                    |  every flush_interval s,
                                                                    v  flush() or close()
    read(keys, start, end) <-- merge: segments + tail  <--  segment <lo>-<hi>.parquet (sorted,
                                                            scaled ints, zstd); WAL lo..hi deleted
                                                            small segments are merged 8 by 8

Layout of ``config.path``::

    LOCK                        held while a process has the store open
    wal/000000000042.wal        write-ahead log files (see wal.py)
    segments/<lo>-<hi>.parquet  immutable segments covering WAL files lo..hi (see segment.py)
    rollups/<level>/<ms>.parquet  1 min / 5 min / 1 h / 1 day cells, updated at each flush (rollup_files.py,
                                  rollup_sync.py)

Queries whose resolution allows use the rollups (``buckets()``, ``energy()``: rollup_query.py);
the background threads (background.py: flushes; merges and ``[store.retention]``, retention.py)
run beside ingest and reads.

``handle()`` returns once the batch is in the log, so it survives ``kill -9`` (and power loss
with ``fsync = true``).  A new Store on the same path deletes half-written segment files,
opens the segments and replays the log, skipping (and reporting, counting) a torn last record
or a corrupt one.  docs/consumers/store.md tells the whole story and the measured figures.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from ...codec import encode_batch
from ...energy import Energy
from ...errors import StoreError
from ...sample import Batch, now_ms
from ...timeseries import merge_parts
from . import background, rollup_query, segment
from . import retention as rt
from .compaction import drop_covered
from .files import file_size, lock_store
from .rollup_files import Rollups
from .rollup_sync import catch_up, roll
from .segment import Segment, prepare, write_prepared
from .tail import Registry, SeriesInfo, Tail, batch_columns, select
from .wal import Problem, Wal, replay, wal_files

if TYPE_CHECKING:  # not at run time: wattsight.config imports RetentionConfig from this package
    from ...config import StoreConfig

__all__ = ["SeriesInfo", "Store"]

log = logging.getLogger("wattsight.store")

Key = tuple[str, str]


class Store:
    """The embedded store: ``handle()`` batches durably, ``read()`` and ``series()`` them back."""

    #: Segments are merged ``MERGE_FANOUT`` at a time, up to ``MERGE_MAX_ROWS`` rows (~1 GB of RAM).
    MERGE_FANOUT = 8
    MERGE_MAX_ROWS = 16_000_000
    #: 128 k rows: a short read of one series decodes 1/8 of what 1 M-row groups cost
    #: (1.1 ms vs 8.1 ms per key-minute), for +0.5-0.8 % of bytes.
    ROW_GROUP_SIZE = 1 << 17
    #: A tail this large is flushed at once, before ``flush_interval`` is up: at millions of
    #: samples per second, a minute of samples would otherwise fill the memory.  16 M rows (~0.4 GB,
    #: ~1.5 GB while written): on the bench trace, 8 M-row segments cost 1.10 B/sample, 16 M 1.07.
    FLUSH_ROWS = 16_000_000
    #: ``handle()`` waits while the tail holds this many ``FLUSH_ROWS``, until a flush takes it: a
    #: store that receives faster than it writes segments must slow the bus down (which holds the
    #: batches; publishers wait, nothing is lost), not fill the memory.
    TAIL_FLUSHES = 2
    #: Large flushes (written in the cold format, rewritten by their day's tier) skip the residual
    #: dictionaries and partners: half of the encoding's CPU, for segments ~10 % larger meanwhile.
    QUICK_FLUSHES = True
    #: Added to the merge thread's nice value (Linux): a tier of a day takes minutes of CPU, which the
    #: bus thread, the flushes and queries need first (bench/store_scale.py --rate: freshness).
    MERGE_NICE = 10

    def __init__(self, config: StoreConfig, *, clock: Callable[[], int] = now_ms,
                 retention: rt.RetentionConfig | None = None) -> None:
        self.config = config
        self.retention = retention or getattr(config, "retention", None) or rt.RetentionConfig()
        self.path = Path(config.path)
        self.clock = clock
        self._lock = threading.Lock()  # the tail, registry, WAL and segment list
        self._room = threading.Condition(self._lock)  # notified when a flush takes the tail
        self._maintenance = threading.Lock()  # one flush at a time
        self._merging = threading.Lock()  # one merge or retention pass at a time (background.py)
        self._registry = Registry()
        self._tail = Tail()
        self._frozen: list[Tail] = []  # tails being written as segments, still read from memory
        self._segments: list[Segment] = []  # by WAL range; replaced, never changed in place
        self._problems: list[Problem] = []
        self._n = {"batches_total": 0, "flushes": 0, "merges": 0, "flush_errors": 0, "replayed_batches": 0,
                   "replayed_samples": 0, "wal_torn": 0, "wal_corrupt": 0, "temp_files_removed": 0,
                   "rollup_errors": 0, "retention_passes": 0, "retention_dropped": 0, "retention_rewrites": 0,
                   "recompressions": 0, "ingest_waits": 0, "ingest_wait_s": 0.0}
        self._last_flush_ms: int | None = None
        self._last_retention_ms: int | None = None
        self._closed = False
        self._lockfile = lock_store(self.path)
        try:
            self._wal = self._recover()
            self._rollups = Rollups(self.path / "rollups")
            catch_up(self, self._rollups)
        except BaseException:
            os.close(self._lockfile)
            raise
        background.start(self)  # the flush thread and the merge thread

    # -- writing -------------------------------------------------------------------------
    def handle(self, batch: Batch, raw: bytes | None = None) -> None:
        """Store ``batch``; returns once it is in the write-ahead log (survives kill -9).

        ``raw``, when given, must be ``codec.encode_batch(batch)`` (the bus message): the log
        keeps it as is.
        """
        if not len(batch):
            return
        payload = raw if raw is not None else encode_batch(batch)
        with self._lock:
            if self._unwritten() >= self.TAIL_FLUSHES * self.FLUSH_ROWS:
                self._wait_for_room()
            if self._closed:
                raise StoreError(f"{self.path}: the store is closed; a batch of {len(batch)} samples "
                                 "was not stored (open a new Store)")
            columns = batch_columns(batch, self._registry.id_map(batch.series, payload))  # checks it first
            self._wal.append(payload)
            self._append(*columns)

    def _wait_for_room(self) -> None:
        """Wait (holding ``_lock``) until a flush takes the full tail, the store closes or its thread stops."""
        self._wake.set()
        start = time.monotonic()
        while self._unwritten() >= self.TAIL_FLUSHES * self.FLUSH_ROWS and not self._closed and \
                self._thread.is_alive():
            self._room.wait(1.0)
        self._n["ingest_waits"] += 1
        self._n["ingest_wait_s"] += time.monotonic() - start

    def _unwritten(self) -> int:
        """Rows in memory not yet in a segment, less one flush's worth under way: a flush that fails
        puts its rows back in the tail (_thaw), which must not let the next ones in (memory would
        grow by a tail at each retry)."""
        return self._tail.rows + max(sum(f.rows for f in self._frozen) - self.TAIL_FLUSHES * self.FLUSH_ROWS, 0)

    def _append(self, sid: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
        self._tail.append(sid, t, v)
        self._registry.update(sid, t, v)
        self._n["batches_total"] += 1
        if self._tail.rows >= self.FLUSH_ROWS:
            self._wake.set()

    def flush(self) -> None:
        """Write the tail as a segment and delete the log files it covers (no-op if empty)."""
        with self._maintenance:
            with self._lock:
                if not self._tail.rows:
                    return
                lo, hi = self._wal_lo, self._wal.rotate()  # first: if it fails, nothing changed
                self._wal_lo = hi + 1
                frozen, self._tail = self._tail, Tail()
                self._frozen = [*self._frozen, frozen]  # reads still find its rows meanwhile
                self._room.notify_all()
                series = list(self._registry.series)
            try:
                rows = prepare(series, *frozen.columns())
                seg = write_prepared(self._segdir, lo, hi, rows, row_group_size=self.ROW_GROUP_SIZE,
                                     **self._flush_format(len(rows.t)))
            except BaseException:
                self._thaw(frozen, lo)
                raise
            with self._lock:
                self._segments = [*self._segments, seg]
            roll(self, self._rollups, rows, hi)  # before the rows leave memory (see buckets)
            del rows
            with self._lock:
                self._frozen = [f for f in self._frozen if f is not frozen]
                self._n["flushes"] += 1
                self._last_flush_ms = self.clock()
            self._wal.delete_upto(hi)

    def _flush_format(self, rows: int) -> dict:
        """How a flush of ``rows`` rows is written: the hot format, cheap to write and read, unless no
        merge will take the segment (too large for ``MERGE_FANOUT`` of its size to fit in
        ``MERGE_MAX_ROWS``: flushes at high rates), which :meth:`compact` would then read back and
        rewrite in the cold format at once; written in it here, at the flush's zstd level (9: a
        fifth of level 16's CPU, which made the flush thread the bottleneck at 1,000 probes), for
        the day's tier (compaction.pick_tier) to compress at ``COLD_LEVEL``."""
        if rows * self.MERGE_FANOUT > self.MERGE_MAX_ROWS:
            return {"fmt": segment.FORMAT, "compression_level": segment.COMPRESSION_LEVEL,
                    "quick": self.QUICK_FLUSHES}
        return {"fmt": min(segment.HOT_FORMAT, segment.FORMAT)}

    def _thaw(self, frozen: Tail, lo: int) -> None:
        """Put a tail whose segment could not be written back in front of the tail (and retry later)."""
        with self._lock:
            self._tail.chunks[:0] = frozen.chunks
            self._tail.rows += frozen.rows
            self._frozen = [f for f in self._frozen if f is not frozen]
            self._wal_lo = lo  # the log files lo.. are still there
            self._n["flush_errors"] += 1

    def compact(self, *, whole_days: bool = False) -> int:
        """Merge runs of small segments and full segments into day tiers, then rewrite in the cold
        format the older segments no merge will take; returns how many merges ran (background.py:
        the merge thread runs it after each flush).  A day's full segments are merged by size
        classes before the day is over; ``whole_days``: into one tier at once (one rewrite now, for a
        store whose ingest has stopped: an import, the end of a benchmark)."""
        return background.compact(self, "whole" if whole_days else "classes")

    def close(self) -> None:
        """Flush the tail to a segment, stop the flush thread and release the store."""
        if self._closed:
            return
        background.stop(self)
        try:
            self.flush()
        finally:  # if the flush failed, the samples are still in the log for the next start
            with self._lock:
                self._closed = True
                self._room.notify_all()
                self._wal.close()
                if self._wal.path.stat().st_size == 0:
                    self._wal.path.unlink()
            os.close(self._lockfile)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------
    def read(self, keys: list[Key], start_ms: int, end_ms: int, *, memory: bool = True
             ) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
        """Per (probe, metric): times (int64 ms, ascending, unique) and values in [start, end]
        (``memory=False``: only the samples already in segments)."""
        keys = list(dict.fromkeys(tuple(k) for k in keys))
        with self._lock:  # copy references only; the work happens outside
            segments, chunks = self._segments, [c for f in self._frozen for c in f.chunks]
            chunks += self._tail.chunks
            if not memory:
                chunks = []
            code = np.full(len(self._registry), -1, np.int64)  # store id -> index in keys
            for j, key in enumerate(keys):
                code[self._registry.by_key.get(key, [])] = j
        parts: dict[Key, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in keys}
        for seg in segments:  # oldest first, then the tail: later rows win duplicates
            if seg.overlaps(start_ms, end_ms):
                wanted = [i for k in keys for i in seg.keys.get(k, ())]
                for i, t, v in seg.read(wanted, start_ms, end_ms):
                    parts[seg.series[i].key].append((t, v))
        sid, t, v = select(chunks, code >= 0, start_ms, end_ms)
        if len(sid):
            rows = code[sid]
            order = np.argsort(rows, kind="stable")  # grouped by key, write order kept
            bounds = np.searchsorted(rows[order], np.arange(len(keys) + 1))
            for j, key in enumerate(keys):
                if bounds[j + 1] > bounds[j]:
                    pick = order[bounds[j]:bounds[j + 1]]
                    parts[key].append((t[pick], v[pick]))
        return {k: merge_parts(p) for k, p in parts.items()}

    def series(self) -> list[SeriesInfo]:
        """Every series stored, with its count, first/last time and latest value (from memory)."""
        with self._lock:
            return self._registry.infos()

    def stats(self) -> dict:
        """Counters and sizes (samples_total, batches_total, segments, bytes_on_disk, wal_bytes, ...)."""
        with self._lock:
            segments = self._segments
            tail_rows = self._tail.rows + sum(f.rows for f in self._frozen)
            out = dict(self._n, series=len(self._registry), tail_samples=tail_rows,
                       samples_total=int(self._registry.count.sum()), last_flush_ms=self._last_flush_ms)
        seg_bytes = sum(s.size for s in segments)
        seg_rows = sum(s.rows for s in segments)
        wal_bytes = self._wal_bytes()
        out.update(segments=len(segments), segment_rows=seg_rows, segment_bytes=seg_bytes,
                   wal_bytes=wal_bytes, bytes_on_disk=seg_bytes + wal_bytes,
                   bytes_per_sample=seg_bytes / seg_rows if seg_rows else None,
                   problems=[str(p) for p in self._problems], path=str(self.path))
        return out

    def unflushed_span(self) -> int | None:
        """The oldest time of the samples still in memory (not in the rollups yet), or None."""
        with self._lock:
            chunks = [c for f in self._frozen for c in f.chunks] + self._tail.chunks
        return min((c.tmin for c in chunks), default=None)

    def buckets(self, keys: list[Key], start_ms: int, end_ms: int, step_ms: int, *,
                use_rollups: bool = True) -> dict[Key, dict]:
        """Per key, buckets of ``step_ms`` from ``start_ms`` over [start, end]: t (bucket start), n,
        min, avg, max, last of the finite values; from rollups where the step and start allow."""
        keys = self._known(keys)
        return rollup_query.buckets(self, self._rollups, keys, int(start_ms), int(end_ms), int(step_ms),
                                    use_rollups)

    def energy(self, keys: list[Key], start_ms: int, end_ms: int, max_gap_ms, *,
               use_rollups: bool = True) -> dict[Key, Energy]:
        """Per key over [start, end]: energy integrated from a gauge (J from W), or a counter's
        increase (wraps per its kind); ``max_gap_ms`` one int or one per key.  Equals
        ``energy.integrate``/``counter_increase`` on ``read()`` up to float rounding."""
        keys = self._known(keys)
        gaps = [int(max_gap_ms)] * len(keys) if np.isscalar(max_gap_ms) else [int(g) for g in max_gap_ms]
        return rollup_query.energy(self, self._rollups, keys, int(start_ms), int(end_ms), gaps, use_rollups)

    def _known(self, keys: list[Key]) -> list[Key]:
        keys = list(dict.fromkeys(tuple(k) for k in keys))
        with self._lock:
            kinds = {k: self._registry.series[self._registry.by_key[k][0]].kind
                     for k in keys if k in self._registry.by_key}
        for k in keys:
            self._rollups.kid(k, kinds.get(k))
        return keys

    # -- retention ------------------------------------------------------------------------
    def apply_retention(self, now: int | None = None) -> dict:
        """Drop the raw samples and rollup cells older than ``[store.retention]`` (one segment
        rewritten at a time; ingest and reads go on).  Returns what was done (retention.py)."""
        now = self.clock() if now is None else int(now)
        with self._merging:  # a merge does not read a segment being rewritten, nor the reverse
            done = rt.apply(self, now)
        self._last_retention_ms = now
        return done

    def usage(self) -> dict:
        """Disk use (segments, log, rollups), and per metric: series, samples, bytes, oldest/newest."""
        with self._lock:
            segments, infos = self._segments, self._registry.infos()
        wal_bytes = self._wal_bytes()
        return rt.usage(self, segments, infos, wal_bytes, self._rollups.usage())

    # -- start ---------------------------------------------------------------------------
    @property
    def _segdir(self) -> Path:
        return self.path / "segments"

    @property
    def _waldir(self) -> Path:
        return self.path / "wal"

    def _wal_bytes(self) -> int:
        return sum(file_size(p) for _, p in wal_files(self._waldir))

    def _recover(self) -> Wal:
        """Open the segments, replay the log, and start a new log file."""
        self._segdir.mkdir(parents=True, exist_ok=True)
        self._waldir.mkdir(parents=True, exist_ok=True)
        for tmp in self._segdir.glob(".tmp-*"):  # a flush or merge killed half-way
            tmp.unlink()
            self._n["temp_files_removed"] += 1
        segments = drop_covered([Segment.open(p) for p in sorted(self._segdir.glob("*.parquet"))])
        for seg in segments:
            self._registry.fold(self._registry.id_map(seg.series), seg.count, seg.first_t, seg.last_t,
                                seg.last_v)
        self._segments = segments
        covered = max((s.hi for s in segments), default=0)
        files = wal_files(self._waldir)
        for number, path in files:
            if number <= covered:  # already in a segment: the flush was killed before deleting it
                path.unlink()
                continue
            self._replay(path)
        last = max([covered] + [n for n, _ in files])
        self._wal_lo = covered + 1
        return Wal(self._waldir, last + 1, fsync=self.config.fsync)

    def _replay(self, path: Path) -> None:
        for item in replay(path):
            if isinstance(item, Problem):
                log.warning("%s", item)
                self._problems.append(item)
                self._n["wal_torn" if item.kind == "torn" else "wal_corrupt"] += 1
            else:
                self._append(*batch_columns(item, self._registry.id_map(item.series)))
                self._n["replayed_batches"] += 1
                self._n["replayed_samples"] += len(item)

