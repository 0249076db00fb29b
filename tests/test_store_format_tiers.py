"""Segment format 2 at scale: a merge larger than memory is read and encoded a slice of probes at a
time and comes back bit for bit as the in-memory merge does; full segments are merged into tiers
of a day (compaction.pick_tier); series are ordered by cost within probe groups."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from store_contract import bits
from store_contract import open_embedded as open_store
from test_store_residual import T0, columns

from wattsight.consumers.store import compaction, residual
from wattsight.consumers.store.compaction import Sliced, merge_segments, pick_run, pick_tier
from wattsight.consumers.store.segment import Segment, write_prepared, write_segment
from wattsight.consumers.store.segment_write import by_cost, prepare
from wattsight.sample import Batch, Series

DAY = 86_400_000


def rack(n: int, seed: int, probes: int = 3, shift: int = 0) -> dict[Series, tuple[np.ndarray, np.ndarray]]:
    """The hostile series of test_store_residual for several probes (each its own partners)."""
    out = {}
    for p in range(probes):
        for s, (t, v) in columns(n, seed + p).items():
            out[Series(f"adv.node-{p}", s.metric, s.unit, s.kind, s.provenance)] = (t + shift, v)
    return out


def write(tmp_path, cols, lo: int, fmt: int | None = None, rg: int = 333) -> Segment:
    series = list(cols)
    sid = np.concatenate([np.full(len(t), i, np.int64) for i, (t, _) in enumerate(cols.values())])
    t = np.concatenate([t for t, _ in cols.values()])
    v = np.concatenate([v for _, v in cols.values()])
    return write_segment(tmp_path, lo, lo, series, sid, t, v, row_group_size=rg, fmt=fmt)


def everything(seg: Segment) -> dict[Series, tuple[np.ndarray, np.ndarray]]:
    sid, t, v = seg.read_all()
    return {s: (t[sid == i], v[sid == i]) for i, s in enumerate(seg.series)}


def same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for s in a:
        assert np.array_equal(a[s][0], b[s][0]) and np.array_equal(bits(a[s][1]), bits(b[s][1])), s


def test_a_merge_larger_than_memory_comes_back_as_the_in_memory_merge(tmp_path):
    """Format 1 and 2 inputs, overlapping times (later rows win), a series at two scales, a probe in
    one input only: slice by slice (row groups cut at each slice's end) as in memory, bit for bit."""
    a = write(tmp_path, rack(900, 1), 1, fmt=1)
    later = rack(700, 11, shift=450 * 1000)  # half of it over a's times: these rows win
    later[Series("adv.node-1", "power", "W")] = (T0 + np.arange(50) * 1000, np.arange(50) * 0.1)  # scale 1 over 1
    b = write(tmp_path, later, 2)
    c = write(tmp_path, {Series("adv.node-9", "power", "W"): (T0 + np.arange(80) * 997, np.arange(80) / 3)}, 3)
    run = [a, b, c]
    whole = merge_segments(run)
    sliced = merge_segments(run, slice_rows=9000)
    assert isinstance(sliced, Sliced) and sliced.slices >= 3
    ref = write_prepared(tmp_path / "..", 100, 100, whole, row_group_size=500)
    seg = write_prepared(tmp_path, 1, 3, sliced, row_group_size=500)
    assert seg.fmt == 3 and len(set(np.diff(seg.rg_bounds).tolist())) > 1  # each slice ends a row group
    want = everything(ref)
    same(everything(seg), want)
    expect = {s: (t, v) for s, (t, v) in rack(900, 1).items()}
    for s, (t, v) in later.items():  # the reference: later rows win equal times
        t0, v0 = expect.get(s, (t[:0], v[:0]))
        keep = ~np.isin(t0, t)
        order = np.argsort(np.concatenate([t0[keep], t]), kind="stable")
        expect[s] = (np.concatenate([t0[keep], t])[order], np.concatenate([v0[keep], v])[order])
    expect[Series("adv.node-9", "power", "W")] = (T0 + np.arange(80) * 997, np.arange(80) / 3)
    same(want, expect)
    index = {s: i for i, s in enumerate(seg.series)}
    for start, end in ((T0 + 123_456, T0 + 654_321), (T0 + 880_000, 2**62)):
        for s in list(expect)[::5]:  # one series at a time: partners and dictionaries read along
            t, v = expect[s]
            sel = (t >= start) & (t <= end)
            got = seg.read([index[s]], start, end)
            if sel.any():
                [(_, gt, gv)] = got
                assert np.array_equal(gt, t[sel]) and np.array_equal(bits(gv), bits(v[sel])), s


def test_series_are_ordered_by_cost_within_probe_groups_and_partners_stay_by_name(tmp_path):
    cols = rack(600, 4, probes=4)
    seg = write(tmp_path, cols, 1)
    order = [s.probe for s in seg.series]
    assert order != sorted(order)  # by cost: the probes' series interleave
    per_probe = sum(len(t) for s, (t, _) in cols.items() if s.probe == "adv.node-0")
    small = by_cost(prepare(list(cols), *_rows(cols)), group_rows=2 * per_probe)  # two probes a group
    first_two = {s.probe for s in small.series[:24]}
    assert first_two == {"adv.node-0", "adv.node-1"}
    for i in np.flatnonzero(seg.mode == residual.PARTNER):
        mine, theirs = seg.series[i], seg.series[seg.partner[i]]
        assert (theirs.probe, theirs.unit) == (mine.probe, mine.unit) and theirs.metric == "a_in"
    same(everything(seg), cols)


def _rows(cols):
    sid = np.concatenate([np.full(len(t), i, np.int64) for i, (t, _) in enumerate(cols.values())])
    return sid, np.concatenate([t for t, _ in cols.values()]), np.concatenate([v for _, v in cols.values()])


def fake(rows: int, day0: float, days: float, k: int) -> SimpleNamespace:
    """A segment as the policy sees it: rows, data span, WAL range."""
    return SimpleNamespace(rows=rows, tmin=int(day0 * DAY), tmax=int((day0 + days) * DAY) - 1, lo=k, hi=k)


def test_full_segments_are_merged_once_their_day_is_over():
    full = 3_000_000  # 8 of them do not fit in 16 M rows
    segs = [fake(full, 0, 0.3, 1), fake(full, 0.3, 0.3, 2), fake(100, 0.6, 0.01, 3), fake(100, 0.61, 0.01, 4)]
    assert pick_tier(segs, 8, 16_000_000) == []  # the day goes on: they may get a third
    segs.append(fake(100, 1.2, 0.01, 5))
    assert pick_tier(segs, 8, 16_000_000) == segs[:2]
    assert pick_run(segs, 8, 16_000_000) == segs[:2]  # what compact() asks
    big = [fake(full, 0, 0.3, 1), fake(full, 0.3, 0.3, 2), fake(full, 0.6, 0.3, 3), fake(full, 0.9, 0.3, 4)]
    assert pick_tier(big, 8, 16_000_000) == big[:3]  # the fourth would pass the day; not the newest anyway


def test_a_long_day_is_merged_by_size_classes_and_within_the_row_limit(monkeypatch):
    segs = [fake(3_000_000, k * 0.01, 0.01, k) for k in range(6)]
    assert pick_tier(segs, 8, 16_000_000) == segs[:4]  # TIER_FANOUT of one size before the day is over
    segs = [fake(12_000_000, 0, 0.05, 0)] + [fake(3_000_000, 0.05 + k * 0.01, 0.01, k + 1) for k in range(5)]
    assert pick_tier(segs, 8, 16_000_000) == segs[1:5]  # the larger one waits for its day
    monkeypatch.setattr(compaction, "TIER_MAX_ROWS", 7_000_000)
    segs = [fake(3_000_000, k * 0.1, 0.1, k) for k in range(4)] + [fake(10, 2, 0.1, 9)]
    assert pick_tier(segs, 8, 16_000_000) == segs[:2]  # two fit; the third does not: complete


@pytest.mark.parametrize("slice_rows", [2_000, 10**9])
def test_a_store_merges_its_full_segments_into_a_tier_and_reads_the_same(tmp_path, monkeypatch, slice_rows):
    monkeypatch.setattr(compaction, "SLICE_ROWS", slice_rows)
    days = [rack(300, 20 + k, probes=2, shift=k * DAY // 3) for k in range(4)]
    with open_store(tmp_path / "s") as store:
        for cols in days:
            for s, (t, v) in cols.items():
                store.handle(Batch.of_series(s, t, v))
            store.flush()
        store.MERGE_MAX_ROWS = 10  # every segment full from here on (set after the flushes: see test_store_residual)
        keys = sorted({s.key for s in days[0]})
        want = store.read(keys, 0, 2**62)
        store.compact()
        assert len(store._segments) == 2 and store._segments[0].rows > store._segments[1].rows
        assert store._segments[0].fmt == 3
        got = store.read(keys, 0, 2**62)
        part = store.read(keys, T0 + DAY // 3 - 5000, T0 + DAY // 3 + 90_000)
    with open_store(tmp_path / "s") as again:
        after = again.read(keys, 0, 2**62)
    for k in keys:
        for g in (got, after):
            assert np.array_equal(g[k][0], want[k][0]) and np.array_equal(bits(g[k][1]), bits(want[k][1])), k
        sel = (want[k][0] >= T0 + DAY // 3 - 5000) & (want[k][0] <= T0 + DAY // 3 + 90_000)
        assert np.array_equal(part[k][0], want[k][0][sel]) and np.array_equal(bits(part[k][1]), bits(want[k][1][sel]))


def test_segments_of_formats_1_2_and_3_read_and_merge_together(tmp_path):
    """Format 3 drops the first/last values from the summary (decoded from first/last_x instead):
    segments of every format read the same, open with the same summary, and merge into format 3."""
    parts = [rack(500, 30 + k, probes=2, shift=k * 400_000) for k in range(3)]
    segs = [write(tmp_path, cols, k + 1, fmt=k + 1) for k, cols in enumerate(parts)]
    assert [s.fmt for s in segs] == [1, 2, 3]
    for seg, cols in zip(segs, parts):
        again = Segment.open(seg.path)
        same(everything(again), cols)
        by = {s: i for i, s in enumerate(again.series)}
        for s, (_, v) in cols.items():
            assert bits(again.first_v[by[s]]) == bits(v[0]) and bits(again.last_v[by[s]]) == bits(v[-1]), s
    merged = write_prepared(tmp_path, 1, 3, merge_segments(segs), row_group_size=777)
    assert merged.fmt == 3
    want = {}
    for cols in parts:  # times overlap: the later segment wins
        for s, (t, v) in cols.items():
            t0, v0 = want.get(s, (t[:0], v[:0]))
            keep = ~np.isin(t0, t)
            tt, vv = np.concatenate([t0[keep], t]), np.concatenate([v0[keep], v])
            order = np.argsort(tt, kind="stable")
            want[s] = (tt[order], vv[order])
    same(everything(merged), want)


@pytest.mark.parametrize("slice_rows", [1_500, 10**9])
def test_retention_keeps_the_newer_rows_of_a_large_segment_a_slice_at_a_time(tmp_path, slice_rows):
    from wattsight.consumers.store.compaction import keep_newer

    cols = rack(700, 40, probes=3)
    seg = write(tmp_path, cols, 1)
    cut = np.full(len(seg.series), np.iinfo(np.int64).min, np.int64)
    for i, s in enumerate(seg.series):
        if s.metric == "power":
            cut[i] = T0 + 300_000  # cut inside
        elif s.metric == "f_one":
            cut[i] = 2**62  # every row goes: the series is left out
    rows = keep_newer(seg, cut, slice_rows=slice_rows)
    assert isinstance(rows, Sliced) == (slice_rows < seg.rows)
    new = write_prepared(tmp_path, 5, 5, rows, row_group_size=400)
    want = {}
    for i, s in enumerate(seg.series):
        t, v = cols[s]
        if (t >= cut[i]).any():
            want[s] = (t[t >= cut[i]], v[t >= cut[i]])
    assert any(s.metric == "power" for s in want) and not any(s.metric == "f_one" for s in want)
    same(everything(new), want)
