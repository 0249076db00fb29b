"""The store's two background threads: flushes, and merges with retention.

A merge of a day's segments at 1,000 probes (a tier: compaction.py) takes minutes; in the flush
thread it held every flush back that long, so the tail grew until ``handle()`` had to wait and
the bus kept the backlog.  So merges, cold rewrites and retention passes run in a thread of
their own, one at a time (``Store._merging``), and flushes go on meanwhile: a flush only adds a
segment newer than every one a merge or retention pass works on, and each of them swaps its
result into the segment list under ``Store._lock``, by identity.

While ingest outruns the merges (the tail holds a full segment's rows when a merge is picked: the
flushes are back to back), full segments wait for their day's tier instead of being merged by size
classes first (compaction.pick_tier): the merges would take the CPU the flushes need, for bytes
rewritten again into the day's tier anyway.  ``Store.compact(whole_days=True)`` merges the day's
run at once.

Closing the store gives up a merge under way between two of its slices (a tier of a day takes
minutes: a service stop must not wait for it); its segments stay as they were, and the merge is
picked again after the next start.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator

from ...errors import StoreError
from . import segment
from .compaction import Sliced, merge_segments, pick_cold, pick_run
from .segment import COLD_LEVEL, Segment, fsync_dir, write_prepared

log = logging.getLogger("wattsight.store")


def compact(store, tiers: str = "classes") -> int:
    """Merge runs of small segments (``MERGE_FANOUT`` at a time; full segments into day tiers, as
    ``tiers`` says before their day is complete: compaction.pick_tier; the merge thread asks
    :func:`tiers_now`), then rewrite in the cold format the older segments no merge will take; returns
    how many merges ran (``stats()["recompressions"]`` counts the rewrites).  Flushes go on meanwhile."""
    merges = 0
    with store._merging:
        try:
            for _ in _merges(store, tiers):
                merges += 1
        except Stopped:
            log.info("%s: closing: a merge under way was given up (picked again at the next start)", store.path)
    return merges


class Stopped(Exception):
    """A merge given up between two of its slices because the store is closing."""


def _merges(store, tiers: str) -> Iterator[None]:
    """:func:`compact`'s merges, one yield after each."""
    while not store._stop.is_set():  # closing: the merge under way is given up (_until_stop), the rest waits
        with store._lock:
            segments = store._segments
        run = pick_run(segments, store.MERGE_FANOUT, store.MERGE_MAX_ROWS, tiers_now(store, tiers))
        if not run:
            cold = pick_cold(segments, store.MERGE_FANOUT, store.MERGE_MAX_ROWS, segment.FORMAT)
            if cold is None:
                return
            again = _merge(store, [cold])  # the same name: the file is replaced whole
            with store._lock:
                store._segments = [again if s is cold else s for s in store._segments]
                store._n["recompressions"] += 1
            continue
        merged = _merge(store, run)
        with store._lock:  # flushes only added newer segments meanwhile
            at = store._segments.index(run[0])
            rest = [s for s in store._segments if s not in run]
            store._segments = rest[:at] + [merged] + rest[at:]
            store._n["merges"] += 1
        for s in run:  # readers holding the old list still read them: their maps stay open
            s.path.unlink(missing_ok=True)
        fsync_dir(store._segdir)
        yield


def tiers_now(store, tiers: str) -> str:
    """``"complete"`` instead of ``"classes"`` while ingest outruns the merges (the tail already holds a
    full segment's rows: too many for ``MERGE_FANOUT`` of them to fit in ``MERGE_MAX_ROWS``)."""
    busy = store._tail.rows * store.MERGE_FANOUT > store.MERGE_MAX_ROWS
    return "complete" if tiers == "classes" and busy else tiers


def _merge(store, run: list[Segment]) -> Segment:
    """One segment of ``run``'s rows, their stored integers passed through (compaction.merge_parts);
    :class:`Stopped` if the store closes before its last slice."""
    rows = merge_segments(run)
    if isinstance(rows, Sliced):
        rows = _until_stop(store, rows)
    return write_prepared(store._segdir, run[0].lo, run[-1].hi, rows,
                          row_group_size=store.ROW_GROUP_SIZE, compression_level=COLD_LEVEL)


def _until_stop(store, slices: Sliced) -> Iterator:
    """``slices``, one at a time, until the store closes (then :class:`Stopped`)."""
    for piece in slices:
        if store._stop.is_set():
            raise Stopped
        yield piece


def flush_loop(store) -> None:
    """Every ``flush_interval`` s (or at ``FLUSH_ROWS``): a segment, then the merge thread is woken."""
    while True:
        store._wake.wait(store.config.flush_interval)
        store._wake.clear()
        if store._stop.is_set():
            return
        try:
            store.flush()
        except StoreError as exc:  # the samples stay in the log and memory; retried next time
            log.error("%s (retrying in %g s)", exc, store.config.flush_interval)
        except Exception:  # this thread's boundary: a bug must not stop every later flush
            store._n["flush_errors"] += 1
            log.exception("%s: flush failed; the samples stay in the log and memory, retrying in %g s",
                          store.path, store.config.flush_interval)
        store._merge_wake.set()


def merge_loop(store) -> None:
    """After each flush: merges, then a retention pass when one is due; at a lower priority
    (``Store.MERGE_NICE``): the bus, the flushes and queries get the CPU first."""
    lower_priority(store.MERGE_NICE)
    while True:
        store._merge_wake.wait()
        store._merge_wake.clear()
        if store._stop.is_set():
            return
        try:
            compact(store, "classes")
            if store._stop.is_set():
                return
            now = store.clock()
            last = store._last_retention_ms
            if store.retention.active and (last is None or now - last >= store.retention.interval * 1e3):
                store.apply_retention(now)
        except StoreError as exc:  # the segments are as they were; tried again after the next flush
            log.error("%s (merges are tried again after the next flush)", exc)
        except Exception:  # this thread's boundary
            store._n["flush_errors"] += 1
            log.exception("%s: merge or retention failed; tried again after the next flush", store.path)


def lower_priority(nice: int) -> None:
    """Add ``nice`` to this thread's nice value (Linux, where each thread has its own; elsewhere
    setpriority would take the whole process down: nothing is done)."""
    if not nice or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + nice, 19))
    except OSError as exc:
        log.warning("cannot lower the merge thread's priority (%s): merges compete with ingest for the CPU", exc)


def start(store) -> None:
    store._stop = threading.Event()
    store._wake = threading.Event()  # set by handle() when the tail reaches FLUSH_ROWS
    store._merge_wake = threading.Event()  # set after each flush of the flush thread
    store._thread = threading.Thread(target=flush_loop, args=(store,), name="store-flush", daemon=True)
    store._merger = threading.Thread(target=merge_loop, args=(store,), name="store-merge", daemon=True)
    store._thread.start()
    store._merger.start()


def stop(store) -> None:
    """Stop both threads (a merge under way is finished first, the others wait for the next start)."""
    store._stop.set()
    store._wake.set()
    store._merge_wake.set()
    store._thread.join()
    store._merger.join()
