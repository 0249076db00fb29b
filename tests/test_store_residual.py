"""Segment format 2 (residuals): adversarial values and times come back bit for bit through every
residual mode, reads of a subset decode partners and dictionaries across row groups, format-1
segments stay readable and merge with format-2 ones, and the bench trace gets smaller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_contract import bits, pdu_trace
from store_contract import open_embedded as open_store

from wattsight.consumers.store import residual
from wattsight.consumers.store.compaction import merge_segments
from wattsight.consumers.store.segment import Segment, write_prepared, write_segment
from wattsight.sample import Batch, Series

T0 = 1_767_225_600_000


def columns(n: int, seed: int) -> dict[Series, tuple[np.ndarray, np.ndarray]]:
    """Series of one probe (so that the counters pair up as partners) with hostile values and times."""
    rng = np.random.default_rng(seed)
    grid = T0 + np.arange(n) * 1000
    ragged = np.sort(rng.choice(np.arange(3 * n), n, replace=False)) * 997 + T0 + 13  # off any grid
    load = np.repeat(rng.lognormal(15, 2, n // 50 + 1), 50)[:n] * (rng.random(n) > 0.15)
    inn = np.cumsum(np.rint(load + 64 * rng.poisson(8, n)))
    out = np.cumsum(np.rint(load * 0.37 + 90 * rng.poisson(0.3, n)))
    huge = 2.0**62 - 2.0**20 * np.arange(n)[::-1]
    odd = np.resize([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, 1e300, -2.0**60, 1 / 3, -np.nan], n)
    p = "adv.node-1"
    return {
        Series(p, "a_in", "B", "counter"): (grid, inn),
        Series(p, "b_out", "B", "counter"): (grid, out),
        Series(p, "c_out_ragged", "B", "counter"): (ragged, np.cumsum(rng.integers(0, 10**6, n)) * 1.0),
        Series(p, "d_huge", "B", "counter"): (grid, huge),
        Series(p, "e_wrap", "B", "counter"): (grid, np.cumsum(rng.integers(0, 2**31, n)) % 2.0**32),
        Series(p, "f_one", "B", "counter"): (grid[:1], np.array([7.0])),
        Series(p, "g_steps", "B", "counter"): (grid, np.floor(np.cumsum(rng.normal(150, 2, n)) / 3600) * 3600),
        Series(p, "power", "W"): (grid + rng.integers(-40, 40, n), np.round(rng.normal(200, 1.5, n), 1)),
        Series(p, "odd", "W"): (grid, odd),
        Series(p, "nondecimal", "W"): (grid, rng.normal(0, 1, n) / 3),
        Series(p, "negzero", "W"): (grid, np.resize([1.0, -0.0, 2.5], n)),
        Series(p, "gone", "W"): (grid, np.where(rng.random(n) < 0.01, np.nan, np.round(rng.normal(5, 1, n)))),
    }


def write(tmp_path: Path, cols, n: int, rg: int = 1 << 17, fmt: int | None = None) -> Segment:
    series = list(cols)
    sid = np.concatenate([np.full(len(t), i, np.int64) for i, (t, _) in enumerate(cols.values())])
    t = np.concatenate([t for t, _ in cols.values()])
    v = np.concatenate([v for _, v in cols.values()])
    return write_segment(tmp_path, n, n, series, sid, t, v, row_group_size=rg, fmt=fmt)


def check(seg: Segment, cols) -> None:
    index = {s: i for i, s in enumerate(seg.series)}
    for s, (t, v) in cols.items():  # one series at a time: partners and dictionaries read along
        [(_, tt, vv)] = seg.read([index[s]], 0, 2**62)
        assert np.array_equal(tt, t) and np.array_equal(bits(vv), bits(v)), s
    sid, t_all, v_all = seg.read_all()
    for s, (t, v) in cols.items():
        pick = sid == index[s]
        assert np.array_equal(t_all[pick], t) and np.array_equal(bits(v_all[pick]), bits(v)), s


@pytest.mark.parametrize("rg", [64, 1000, 1 << 17])
def test_hostile_values_and_times_come_back_exactly_through_every_mode(tmp_path, rg):
    cols = columns(3000, 1)
    seg = write(tmp_path, cols, 1, rg)
    modes = {s.metric: int(m) for s, m in zip(seg.series, seg.mode)}
    assert modes["b_out"] == residual.PARTNER and seg.series[seg.partner[seg.series.index(
        next(s for s in cols if s.metric == "b_out"))]].metric == "a_in"  # the first by name, wherever its rows
    assert residual.DICT in modes.values() or (seg.dict_n > 0).any()
    assert modes["odd"] in (residual.RAW, residual.DELTA)
    check(seg, cols)
    for start, end in ((T0 + 1_234_567, T0 + 1_834_000), (T0 - 5, T0), (T0 + 2999 * 1000, 2**62)):
        index = {s: i for i, s in enumerate(seg.series)}
        got = {seg.series[i]: (t, v) for i, t, v in seg.read(list(index.values()), start, end)}
        for s, (t, v) in cols.items():
            sel = (t >= start) & (t <= end)
            if sel.any():
                assert np.array_equal(got[s][0], t[sel]) and np.array_equal(bits(got[s][1]), bits(v[sel])), s
            else:
                assert s not in got


def test_residual_modes_round_trip_on_random_integers():
    """encode/decode alone: random walks, constant runs, extreme integers, a partner with other times."""
    rng = np.random.default_rng(5)
    for trial in range(20):
        ns = int(rng.integers(1, 6))
        count = rng.integers(1, 2000, ns)
        t = np.concatenate([np.sort(rng.choice(10**6, c, replace=False)) for c in count]).astype(np.int64)
        kinds = rng.integers(0, 4, ns)
        parts = []
        for k, c in zip(kinds.tolist(), count.tolist()):
            if k == 0:
                parts.append(np.cumsum(rng.integers(-5, 6, c)))
            elif k == 1:
                parts.append(rng.integers(-(2**63), 2**63 - 1, c, dtype=np.int64))
            elif k == 2:
                parts.append(np.cumsum(rng.choice([0, 64, 128, 342, 10**6], c)))
            else:
                parts.append(np.full(c, 2**62 + trial, np.int64))
        x = np.concatenate(parts).astype(np.int64)
        series = [Series("r.p", f"m{i}", "B", "counter") for i in range(ns)]
        scale = np.zeros(ns, np.int8)
        c = residual.encode(x, t, count, series, scale)
        back = residual.decode(c.r, c.aux, t, count, c.mode, c.partner, c.dict_n, c.first, c.last)
        assert np.array_equal(back, x), trial
        w = residual.width(c.r)
        bounds = np.array([0, len(x) // 3, len(x)])
        assert np.array_equal(residual.unpack(residual.pack(c.r, bounds, w), np.diff(bounds).tolist(), w), c.r)


def test_times_round_trip_off_grid_and_at_the_int64_extremes():
    rng = np.random.default_rng(6)
    big = np.iinfo(np.int64)
    for trial in range(20):
        count = rng.integers(1, 500, int(rng.integers(1, 5)))
        parts = []
        for c in count.tolist():
            kind = trial % 4
            if kind == 0:  # 1 Hz with jitter and a few holes
                parts.append(T0 + np.arange(c) * 1000 + rng.integers(0, 30, c) + (np.arange(c) > c // 2) * 3_600_000)
            elif kind == 1:  # anywhere in int64, ascending
                parts.append(np.sort(rng.choice(rng.integers(big.min, big.max, 4 * c), c, replace=False)))
            elif kind == 2:  # negative times (before 1970)
                parts.append(-(10**12) + np.cumsum(rng.integers(1, 10**6, c)))
            else:  # the extremes themselves
                parts.append(np.sort(np.unique(np.concatenate([[big.min, big.max], rng.integers(-5, 5, c)])))[:c])
        count = np.asarray([len(x) for x in parts])
        t = np.concatenate(parts).astype(np.int64)
        r, step = residual.encode_t(t, count)
        first = t[np.concatenate([[0], np.cumsum(count)[:-1]])]
        assert np.array_equal(residual.decode_t(r, count, step, first, t[np.cumsum(count) - 1]), t), trial


def test_format_1_segments_still_read_and_merge_with_format_2(tmp_path):
    cols = columns(1500, 2)
    old = write(tmp_path, cols, 1, 500, fmt=1)
    assert old.fmt == 1 and old.mode is None
    check(Segment.open(old.path), cols)
    later = {s: (t + 10_000_000, v) for s, (t, v) in cols.items()}
    new = write(tmp_path, later, 2, 500)
    assert new.fmt == 3
    merged = write_prepared(tmp_path, 1, 2, merge_segments([Segment.open(old.path), new]), row_group_size=700)
    both = {s: (np.concatenate([t, later[s][0]]), np.concatenate([v, later[s][1]])) for s, (t, v) in cols.items()}
    check(merged, both)


def test_a_store_with_format_1_segments_reads_them_and_merges_into_format_2(tmp_path, monkeypatch):
    from wattsight.consumers.store import segment

    cols = columns(800, 3)
    monkeypatch.setattr(segment, "FORMAT", 1)
    with open_store(tmp_path / "s") as store:
        for s, (t, v) in cols.items():
            store.handle(Batch.of_series(s, t, v))
    monkeypatch.setattr(segment, "FORMAT", 2)
    with open_store(tmp_path / "s") as store:
        assert [s.fmt for s in store._segments] == [1]
        for s, (t, v) in cols.items():
            store.handle(Batch.of_series(s, t + 5_000_000, v))
        store.flush()
        assert [s.fmt for s in store._segments] == [1, segment.HOT_FORMAT]  # flushes: the hot format
        store.MERGE_FANOUT = 2
        assert store.compact() == 1 and [s.fmt for s in store._segments] == [segment.FORMAT]
        got = store.read([s.key for s in cols], 0, 2**62)
    for s, (t, v) in cols.items():
        gt, gv = got[s.key]
        assert np.array_equal(gt, np.concatenate([t, t + 5_000_000])), s
        assert np.array_equal(bits(gv), bits(np.concatenate([v, v]))), s


def test_the_bench_trace_is_smaller_in_format_2(tmp_path):
    """Sizes in one run, same rows: format 2 below format 1 overall, and for the byte counters."""
    trace = pdu_trace(8, 3 * 3600, seed=2)
    sizes = {}
    for fmt in (1, 2):
        counters = trace.select(np.asarray([s.metric.startswith("network") for s in trace.series])[trace.sidx])
        for name, b in (("all", trace), ("network", counters)):
            seg = write_segment(tmp_path, fmt * 10 + len(name), 1, list(b.series), b.sidx.astype(np.int64), b.t,
                                b.v, fmt=fmt)
            sizes[fmt, name] = seg.size
    assert sizes[2, "all"] < sizes[1, "all"] and sizes[2, "network"] < sizes[1, "network"], sizes


@pytest.mark.parametrize("fmt", [1, 2])
def test_values_computed_as_count_times_a_tenth_keep_integers_and_come_back_exactly(tmp_path, fmt):
    """``count * 0.1`` is not always the double nearest count / 10: such series get the scale
    code MUL + 1 (integers, decoded by the same multiplication) instead of bit patterns."""
    from wattsight.consumers.store.segment import MUL

    rng = np.random.default_rng(8)
    n = 2000
    grid = T0 + np.arange(n) * 1000
    counts = np.cumsum(rng.integers(-30, 31, n)) + 5000
    times_tenth = counts * 0.1
    assert np.any(times_tenth != counts / 10)  # the case at hand
    p = "mul.node"
    cols = {Series(p, "tenth_mul", "W"): (grid, times_tenth),
            Series(p, "milli_mul", "W"): (grid, counts * 0.001),
            Series(p, "tenth_div", "W"): (grid, counts / 10)}
    seg = write(tmp_path, cols, 1, 700, fmt=fmt)
    scales = {s.metric: int(x) for s, x in zip(seg.series, seg.scale)}
    assert scales == {"tenth_mul": MUL + 1, "milli_mul": MUL + 3, "tenth_div": 1}
    check(seg, cols)
    # a series stored at two scale codes in two segments merges losslessly
    later = {s: (t + 10_000_000, (v if "div" in s.metric else counts / 10)) for s, (t, v) in cols.items()}
    other = write(tmp_path, later, 2, 700, fmt=fmt)
    merged = write_prepared(tmp_path, 1, 2, merge_segments([seg, other]), row_group_size=900)
    both = {s: (np.concatenate([t, later[s][0]]), np.concatenate([v, later[s][1]])) for s, (t, v) in cols.items()}
    check(merged, both)


def test_segments_no_merge_takes_are_rewritten_in_the_cold_format(tmp_path, monkeypatch):
    """At high rates a flush alone fills a merge: those segments are rewritten in format 2 (same
    name, same samples), all but the newest; small ones all but the newest MERGE_FANOUT.  (Tiers of
    full segments: tests/test_store_format_tiers.py; none here.)"""
    from wattsight.consumers.store import compaction, segment

    monkeypatch.setattr(compaction, "TIER_FANOUT", 100)
    monkeypatch.setattr(compaction, "TIER_SPAN_MS", 0)

    cols = columns(600, 9)
    with open_store(tmp_path / "s") as store:
        store.MERGE_FANOUT = 2
        for k in range(5):
            for s, (t, v) in cols.items():
                store.handle(Batch.of_series(s, t + k * 10**7, v))
            store.flush()
        store.MERGE_MAX_ROWS = 10  # no merge fits (set after the flushes, which it would make cold at once)
        want = store.read([s.key for s in cols], 0, 2**62)
        assert [s.fmt for s in store._segments] == [segment.HOT_FORMAT] * 5
        names = [s.path.name for s in store._segments]
        assert store.compact() == 0
        assert [s.fmt for s in store._segments] == [segment.FORMAT] * 4 + [segment.HOT_FORMAT]  # too large to merge
        assert [s.path.name for s in store._segments] == names and store.stats()["recompressions"] == 4
        got = store.read([s.key for s in cols], 0, 2**62)
        store.MERGE_MAX_ROWS, store.MERGE_FANOUT = 10**9, 8  # small enough to merge: the newest 8 wait
        for s, (t, v) in cols.items():
            store.handle(Batch.of_series(s, t + 9 * 10**7, v))
        store.flush()
        assert store.compact() == 0 and [s.fmt for s in store._segments] == [segment.FORMAT] * 4 + [1, 1]
        want = {k: (t[t < 9 * 10**7 + T0], v[t < 9 * 10**7 + T0]) for k, (t, v) in
                store.read([s.key for s in cols], 0, 2**62).items()}
    with open_store(tmp_path / "s") as again:
        after = {k: (t[t < 9 * 10**7 + T0], v[t < 9 * 10**7 + T0]) for k, (t, v) in
                 again.read([s.key for s in cols], 0, 2**62).items()}
    for s in cols:
        for g in (got, after):
            assert np.array_equal(g[s.key][0], want[s.key][0]), s
            assert np.array_equal(bits(g[s.key][1]), bits(want[s.key][1])), s
