"""Segments give back exactly what was written: counters with wraps, resets, gaps, odd floats."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from wattsight.consumers.store.segment import COMPRESSION_LEVEL, Segment, write_segment
from wattsight.errors import StoreError
from wattsight.sample import Series

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Rack, pdu_trace

T0 = 1_767_225_600_000


def bits(a) -> np.ndarray:
    return np.asarray(a, np.float64).view(np.int64)


def roundtrip(tmp_path: Path, columns: dict[str, tuple[np.ndarray, np.ndarray]], kind: str = "counter"):
    """Write each (t, v) as a series of one segment; return the segment and what it reads back."""
    series = [Series("t.enc", name, "B", kind) for name in columns]
    sid = np.concatenate([np.full(len(t), i, np.int64) for i, (t, _) in enumerate(columns.values())])
    t = np.concatenate([np.asarray(t, np.int64) for t, _ in columns.values()])
    v = np.concatenate([np.asarray(v, np.float64) for _, v in columns.values()])
    n = len(list(tmp_path.glob("*.parquet"))) + 1
    seg = write_segment(tmp_path, n, n, series, sid, t, v, row_group_size=64)
    got = {seg.series[i].metric: (tt, vv) for i, tt, vv in seg.read(list(range(len(seg.series))), 0, 2**62)}
    sid_all, t_all, v_all = seg.read_all()
    for i, s in enumerate(seg.series):  # read_all agrees with read
        assert np.array_equal(t_all[sid_all == i], got[s.metric][0])
        assert np.array_equal(bits(v_all[sid_all == i]), bits(got[s.metric][1]))
    return seg, got


def test_counters_with_wraps_resets_gaps_and_negative_steps_come_back_exactly(tmp_path):
    rng = np.random.default_rng(7)
    n = 1000
    grid = T0 + np.arange(n) * 1000
    c32 = np.cumsum(rng.integers(0, 50_000_000, n)) % 2**32  # a Counter32 that wraps many times
    reset = np.cumsum(rng.integers(0, 5000, n))
    reset[600:] -= reset[600]  # the device rebooted: back to 0
    gaps = np.sort(rng.choice(np.arange(5 * n), n, replace=False))  # irregular times, long holes
    down = np.cumsum(rng.integers(-3000, 100, n))  # negative steps (a "counter" misreported)
    big = 2.0**53 - np.arange(n)[::-1] * 4096  # the largest exact integers of a float64
    c64 = 2.0**63 - 2.0**20 * np.arange(n, 0, -1)  # Counter64 near its top: not below 2**62, bits kept
    cols = {"wrap32": (grid, c32), "reset": (grid, reset), "gaps": (T0 + gaps * 1000, np.cumsum(gaps)),
            "down": (grid, down), "big": (grid, big), "c64": (grid, c64),
            "jitter": (grid + rng.integers(0, 10, n), np.round(np.cumsum(rng.integers(0, 9, n)) * 0.1, 1))}
    seg, got = roundtrip(tmp_path, cols)
    for name, (t, v) in cols.items():
        assert np.array_equal(got[name][0], t), name
        assert np.array_equal(bits(got[name][1]), bits(v)), name
    scales = {s.metric: int(x) for s, x in zip(seg.series, seg.scale)}
    assert scales == {"wrap32": 0, "reset": 0, "gaps": 0, "down": 0, "big": 0, "c64": -1, "jitter": 1}


def test_nan_and_infinities_fall_back_to_bit_patterns_for_their_series_only(tmp_path):
    grid = T0 + np.arange(8) * 1000
    odd = np.array([1.0, np.nan, 3.0, np.inf, -np.inf, -0.0, 5e-324, 2.0])
    neg_nan = np.array([1.0, 2.0, -np.nan, 4.0, 5.0, 6.0, 7.0, 8.0])
    cols = {"odd": (grid, odd), "negnan": (grid, neg_nan), "fine": (grid, np.arange(8) * 0.25)}
    seg, got = roundtrip(tmp_path, cols, kind="gauge")
    for name, (_, v) in cols.items():
        assert np.array_equal(bits(got[name][1]), bits(v)), name  # NaN payload and sign kept
    assert {s.metric: int(x) for s, x in zip(seg.series, seg.scale)} == {"odd": -1, "negnan": -1, "fine": 2}


def test_the_bench_trace_comes_back_exactly_and_small(tmp_path):
    trace = pdu_trace(6, 4 * 3600, seed=3, jitter_ms=0)
    seg = write_segment(tmp_path, 1, 1, list(trace.series), trace.sidx.astype(np.int64), trace.t, trace.v)
    got = {i: (t, v) for i, t, v in seg.read(list(range(len(seg.series))), 0, 2**62)}
    index = {s: i for i, s in enumerate(seg.series)}
    for j, s in enumerate(trace.series):
        pick = trace.sidx == j
        t, v = got[index[s]]
        assert np.array_equal(t, trace.t[pick]) and np.array_equal(bits(v), bits(trace.v[pick])), s
    assert seg.size / len(trace) < 1.5  # ~1.0 at this size; the figures are in bench/store_scale.py


def test_the_trace_is_the_same_however_it_is_read():
    whole = pdu_trace(5, 7300, seed=4)
    parts = list(Rack(5, 7300, seed=4).blocks(3600))
    assert len(parts) == 3
    for name in ("sidx", "t", "v"):
        assert np.array_equal(np.concatenate([getattr(b, name) for b in parts]), getattr(whole, name))
    assert np.all(np.diff(whole.t) >= 0)
    counters = [j for j, s in enumerate(whole.series) if s.kind == "counter"]
    for j in counters:  # counters never go down, and the byte counters move with the load
        assert np.all(np.diff(whole.v[whole.sidx == j]) >= 0)


def test_segments_of_the_previous_compression_level_still_read(tmp_path):
    t = T0 + np.arange(300) * 1000
    v = np.cumsum(np.arange(300)) * 1.0
    old = write_segment(tmp_path, 1, 1, [Series("t.enc", "c", "B", "counter")], np.zeros(300, np.int64), t, v,
                        compression_level=1)
    assert COMPRESSION_LEVEL != 1
    again = Segment.open(old.path)
    [(_, tt, vv)] = again.read([0], 0, 2**62)
    assert np.array_equal(tt, t) and np.array_equal(vv, v)


def test_a_segment_of_an_unknown_summary_format_is_refused(tmp_path):
    import msgpack
    import pyarrow as pa

    from wattsight.consumers.store import segment as mod

    seg = write_segment(tmp_path, 1, 1, [Series("t.enc", "c", "B", "counter")], np.zeros(3, np.int64),
                        T0 + np.arange(3) * 1000, np.arange(3.0))
    table = pq.read_table(seg.path)
    body = msgpack.packb({"f": 99}, use_bin_type=True)
    blob = len(body).to_bytes(8, "little") + pa.compress(body, codec="zstd", asbytes=True)
    bad = tmp_path / mod.segment_name(2, 2)
    pq.write_table(table.replace_schema_metadata({mod.SUMMARY_KEY: blob}), bad)
    with pytest.raises(StoreError, match="unknown summary format 99"):
        Segment.open(bad)


@pytest.mark.parametrize("in_order", [True, False])
@pytest.mark.parametrize("ranks", [50, 70_000])
def test_sorting_keeps_the_last_written_of_equal_series_and_time(in_order, ranks):
    from wattsight.consumers.store.segment import sort_rows

    rng = np.random.default_rng(ranks + in_order)
    n = 20_000
    t = np.sort(rng.integers(0, 3000, n)) if in_order else rng.integers(0, 3000, n)
    rank = rng.integers(0, ranks, n)
    got = sort_rows(rank, T0 + t)
    want = {}
    for i, key in enumerate(zip(rank.tolist(), t.tolist())):
        want[key] = i  # the last written wins
    assert got.tolist() == [want[k] for k in sorted(want)]
