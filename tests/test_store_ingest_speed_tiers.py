"""Tiers of full segments while ingest outruns the merges: they wait for their day's tier (each
sample rewritten once), and ``Store.compact(whole_days=True)`` merges the day's run at once; closing
the store gives a tier under way up."""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from store_contract import bits
from store_contract import open_embedded as open_store
from test_store_format_tiers import rack

from wattsight.consumers.store import background, compaction
from wattsight.consumers.store.compaction import merge_parts, pick_run, pick_tier
from wattsight.sample import Batch

DAY = 86_400_000
FULL = 3_000_000  # 8 of them do not fit in 16 M rows


def fake(rows: int, day0: float, days: float, k: int) -> SimpleNamespace:
    return SimpleNamespace(rows=rows, tmin=int(day0 * DAY), tmax=int((day0 + days) * DAY) - 1, lo=k, hi=k)


def test_busy_ingest_merges_full_segments_only_into_a_complete_day():
    segs = [fake(FULL, k * 0.01, 0.01, k) for k in range(6)]
    assert pick_tier(segs, 8, 16_000_000) == segs[:4]  # size classes
    assert pick_tier(segs, 8, 16_000_000, "complete") == []  # the day goes on
    assert pick_run(segs, 8, 16_000_000, "complete") == []
    assert pick_tier(segs, 8, 16_000_000, "whole") == segs  # at once, the newest too
    segs.append(fake(100, 1.5, 0.01, 9))  # the next day: the first one's run is complete
    for tiers in ("classes", "complete", "whole"):
        assert pick_tier(segs, 8, 16_000_000, tiers) == segs[:6], tiers


def test_whole_keeps_the_day_and_row_limits():
    segs = [fake(FULL, 0, 0.3, 1), fake(FULL, 0.3, 0.3, 2), fake(FULL, 0.6, 0.3, 3), fake(FULL, 0.9, 0.3, 4)]
    assert pick_tier(segs, 8, 16_000_000, "whole") == segs[:3]
    assert pick_tier(segs[:1] + [fake(10, 0.4, 0.01, 5)], 8, 16_000_000, "whole") == []  # one full segment


def test_an_unknown_choice_is_an_error():
    with pytest.raises(ValueError, match="classes, complete, whole"):
        pick_tier([], 8, 16_000_000, "all")


def test_the_merge_thread_defers_size_classes_while_the_tail_holds_a_full_segment():
    store = SimpleNamespace(_tail=SimpleNamespace(rows=0), MERGE_FANOUT=8, MERGE_MAX_ROWS=16_000_000)
    assert background.tiers_now(store, "classes") == "classes"
    store._tail.rows = 2_000_001
    assert background.tiers_now(store, "classes") == "complete"
    assert background.tiers_now(store, "whole") == "whole"  # compact(whole_days=True) is not deferred


def test_compact_merges_a_day_of_full_segments_at_once_and_reads_the_same(tmp_path):
    days = [rack(300, 40 + k, probes=2, shift=k * 3_600_000) for k in range(6)]  # 6 h of one day
    with open_store(tmp_path / "s") as store:
        for cols in days:
            for s, (t, v) in cols.items():
                store.handle(Batch.of_series(s, t, v))
            store.flush()
        store.MERGE_MAX_ROWS = 10  # every segment full from here on
        keys = sorted({s.key for s in days[0]})
        want = store.read(keys, 0, 2**62)
        assert store.compact(whole_days=True) == 1  # one merge of six, not size classes of four first
        assert [s.hi - s.lo + 1 for s in store._segments] == [6]
        got = store.read(keys, 0, 2**62)
    with open_store(tmp_path / "s") as again:
        after = again.read(keys, 0, 2**62)
    for k in keys:
        for g in (got, after):
            assert np.array_equal(g[k][0], want[k][0]) and np.array_equal(bits(g[k][1]), bits(want[k][1])), k



def test_closing_gives_up_a_tier_under_way_and_keeps_its_segments(tmp_path, monkeypatch):
    days = [rack(300, 40 + k, probes=2, shift=k * 3_600_000) for k in range(6)]
    store = open_store(tmp_path / "s")
    for cols in days:
        for s, (t, v) in cols.items():
            store.handle(Batch.of_series(s, t, v))
        store.flush()
    store.MERGE_MAX_ROWS = 10  # every segment full: one tier of the day, read a probe at a time
    keys = sorted({s.key for s in days[0]})
    want = store.read(keys, 0, 2**62)
    before = [s.path.name for s in store._segments]
    monkeypatch.setattr(background, "merge_segments", lambda run: compaction.Sliced(run, 1))
    slices = []

    def first_slice_then_close(parts):  # the store is told to close while the tier's first slice is encoded
        slices.append(len(parts))
        store._stop.set()
        return merge_parts(parts)

    monkeypatch.setattr(compaction, "merge_parts", first_slice_then_close)
    assert store.compact(whole_days=True) == 0
    assert len(slices) == 1 and [s.path.name for s in store._segments] == before
    assert sorted(p.name for p in store._segdir.iterdir()) == sorted(before)  # no temporary file left
    store.close()
    monkeypatch.undo()
    with open_store(tmp_path / "s") as again:
        again.MERGE_MAX_ROWS = 10
        assert again.compact(whole_days=True) == 1  # picked again after the next start
        got = again.read(keys, 0, 2**62)
    for k in keys:
        assert np.array_equal(got[k][0], want[k][0]) and np.array_equal(bits(got[k][1]), bits(want[k][1])), k


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_merge_thread_runs_at_a_lower_priority_than_the_rest_of_the_store(tmp_path):
    with open_store(tmp_path / "s") as store:
        assert store.MERGE_NICE > 0
        own = os.getpriority(os.PRIO_PROCESS, 0)
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, store._merger.native_id) == own and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread lowers its own priority as it starts
        assert os.getpriority(os.PRIO_PROCESS, store._merger.native_id) == min(own + store.MERGE_NICE, 19)
        assert os.getpriority(os.PRIO_PROCESS, store._thread.native_id) == own  # flushes keep up with ingest
