"""The embedded store on real files: lossless values, reads across segments and tail, merges."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from store_contract import ALL, KEY, POWER, T0, batches, bits, lossless_values, one, pdu_trace
from store_contract import open_embedded as open_store

from wattsight.config import StoreConfig
from wattsight.consumers.store import SeriesInfo, Store
from wattsight.consumers.store.segment import Segment, choose_scales
from wattsight.errors import StoreError
from wattsight.sample import Batch, Series


def test_values_come_back_bit_for_bit(tmp_path):
    n = 500
    values = lossless_values(n)
    store = open_store(tmp_path)
    for name, v in values.items():
        store.handle(one(Series("t.lossless", name, "W"), T0 + np.arange(n) * 1000, v))
    before = store.read([("t.lossless", k) for k in values], *ALL)
    store.close()
    seg = Segment.open(next((tmp_path / "segments").glob("*.parquet")))
    assert {s.metric: int(sc) for s, sc in zip(seg.series, seg.scale)} == {
        "int": 0, "tenth": 1, "milli": 3, "float": -1, "odd": -1, "tenth+nan": -1, "negzero": -1}
    with open_store(tmp_path) as store:
        after = store.read([("t.lossless", k) for k in values], *ALL)
    for name, v in values.items():
        for got in (before, after):
            t, back = got[("t.lossless", name)]
            assert np.array_equal(t, T0 + np.arange(n) * 1000)
            assert np.array_equal(bits(back), bits(v)), name


def test_choose_scales_takes_the_smallest_exact_one():
    v = np.array([1.0, 2.0, 0.5, 1.25, 0.1, 0.3, 1 / 3, 1e-6, 1e-7, -0.0, 0.0, 2.0**60, np.nan, -np.inf])
    starts = np.arange(len(v))
    assert choose_scales(v, starts).tolist() == [0, 0, 1, 2, 1, 1, -1, 6, -1, -1, 0, 0, -1, -1]


def test_reads_merge_segments_and_tail_in_order(tmp_path):
    t = T0 + np.arange(300) * 1000
    v = np.arange(300) * 0.5
    with open_store(tmp_path) as store:
        store.handle(one(POWER, t[:100], v[:100]))
        store.flush()
        store.handle(one(POWER, t[100:200], v[100:200]))
        store.flush()
        store.handle(one(POWER, t[200:], v[200:]))
        assert store.stats()["segments"] == 2 and store.stats()["tail_samples"] == 100
        got_t, got_v = store.read([KEY], int(t[50]), int(t[250]))[KEY]
        assert np.array_equal(got_t, t[50:251]) and np.array_equal(got_v, v[50:251])
        assert store.read([KEY], int(t[120]), int(t[120]))[KEY][0].tolist() == [t[120]]
        empty = store.read([KEY, ("t.pdu-1", "nothing"), ("t.nobody", "power")], 0, T0 - 1)
        assert all(len(a) == len(b) == 0 for a, b in empty.values()) and len(empty) == 3


def test_exact_duplicates_keep_the_last_written(tmp_path):
    store = open_store(tmp_path)
    store.handle(one(POWER, T0 + np.array([0, 1000, 2000]), [1, 1, 1]))
    store.flush()
    store.handle(one(POWER, [T0 + 1000], [5]))
    assert store.read([KEY], *ALL)[KEY][1].tolist() == [1, 5, 1]
    store.handle(one(POWER, [T0 + 1000, T0 + 2000, T0 + 3000, T0 + 3000], [7, 8, 9, 10]))
    expected = ([T0, T0 + 1000, T0 + 2000, T0 + 3000], [1, 7, 8, 10])
    assert [a.tolist() for a in store.read([KEY], *ALL)[KEY]] == list(expected)
    store.flush()
    assert [a.tolist() for a in store.read([KEY], *ALL)[KEY]] == list(expected)
    store.MERGE_FANOUT = 2
    assert store.compact() == 1
    assert [a.tolist() for a in store.read([KEY], *ALL)[KEY]] == list(expected)
    store.close()
    with open_store(tmp_path) as again:
        assert [a.tolist() for a in again.read([KEY], *ALL)[KEY]] == list(expected)
        assert again.series()[0].last_v == 10


def test_late_batches_are_stored_and_returned_sorted(tmp_path):
    t = T0 + np.arange(40) * 1000
    with open_store(tmp_path) as store:
        store.handle(one(POWER, t[20:], np.arange(20, 40)))
        store.flush()
        store.handle(one(POWER, t[:20], np.arange(20)))  # arrives late, older times
        got_t, got_v = store.read([KEY], *ALL)[KEY]
        assert np.array_equal(got_t, t) and got_v.tolist() == list(range(40))
        store.handle(one(POWER, t[::-1][:5], [0, 1, 2, 3, 4]))  # backwards inside one batch
        store.flush()
        got_t, got_v = store.read([KEY], *ALL)[KEY]
        assert np.array_equal(got_t, t) and got_v[-5:].tolist() == [4, 3, 2, 1, 0]
        [info] = store.series()
        assert info == SeriesInfo(POWER, 45, int(t[0]), int(t[-1]), 0.0)


def test_series_info_is_rebuilt_from_segments_and_log(tmp_path):
    energy = Series("t.pdu-1", "energy", "J", "counter")
    store = open_store(tmp_path)
    store.handle(Batch((POWER, energy), np.array([0, 1, 0, 1], np.uint32),
                       np.array([T0, T0, T0 + 1000, T0 + 1000]), np.array([100.0, 5.0, 101.0, 106.0])))
    store.flush()
    store.handle(one(POWER, [T0 + 2000], [99.5]))
    want = store.series()
    assert {i.series.metric: (i.count, i.last_t, i.last_v) for i in want} == {
        "power": (3, T0 + 2000, 99.5), "energy": (2, T0 + 1000, 106.0)}
    reopened = open_store(tmp_path)  # crash: the first store is never closed
    assert sorted(reopened.series(), key=str) == sorted(want, key=str)
    reopened.close()


def test_row_groups_are_read_only_where_needed(tmp_path):
    class SmallGroups(Store):
        ROW_GROUP_SIZE = 64  # so that series span several row groups

    trace = pdu_trace(6, 600, seed=5)
    store = SmallGroups(StoreConfig(path=tmp_path, flush_interval=3600))
    for b in batches(trace, 700):
        store.handle(b)
    store.flush()
    keys = [s.key for s in trace.series]
    start, end = int(trace.t[0]) + 123_000, int(trace.t[0]) + 456_000
    got = store.read(keys[3:9], start, end)
    for j, key in enumerate(keys[3:9], start=3):
        pick = (trace.sidx == j) & (trace.t >= start) & (trace.t <= end)
        assert np.array_equal(got[key][0], trace.t[pick]) and np.array_equal(got[key][1], trace.v[pick]), key
    assert pq.ParquetFile(next((tmp_path / "segments").glob("*.parquet"))).metadata.num_row_groups > 10
    store.close()


def test_flushing_while_writing_loses_nothing(tmp_path):
    trace = pdu_trace(10, 1800, seed=2)
    pieces = batches(trace, 997)
    store = open_store(tmp_path)
    store.MERGE_FANOUT = 3
    done, flushed = threading.Event(), threading.Event()
    bad_reads = []

    def write():
        for i, b in enumerate(pieces):
            store.handle(b)
            if i % 8 == 7:  # let a few flushes land between (and during) the writes
                flushed.wait()
                flushed.clear()
        done.set()

    def read_while_writing():
        while not done.is_set():
            t, _ = store.read([trace.series[0].key], *ALL)[trace.series[0].key]
            if len(t) > 1 and not np.all(np.diff(t) > 0):
                bad_reads.append(t)

    threads = [threading.Thread(target=write), threading.Thread(target=read_while_writing)]
    for th in threads:
        th.start()
    flushes = 0
    while not done.is_set():
        store.flush()
        store.compact()
        flushed.set()
        flushes += 1
    for th in threads:
        th.join()
    store.flush()
    assert flushes >= len(pieces) // 8 and store.stats()["merges"] >= 1 and not bad_reads
    keys = [s.key for s in trace.series]
    for name, s in (("live", store), ("reopened", None)):
        if s is None:
            store.close()
            s = open_store(tmp_path)
        got = s.read(keys, *ALL)
        for j, key in enumerate(keys):
            assert np.array_equal(got[key][0], trace.t[trace.sidx == j]), (name, key)
            assert np.array_equal(got[key][1], trace.v[trace.sidx == j]), (name, key)
    s.close()
    assert s.stats()["samples_total"] == len(trace)


def test_a_realistic_1hz_trace_takes_under_3_bytes_per_sample(tmp_path):
    trace = pdu_trace(20, 7200, seed=1)
    with open_store(tmp_path) as store:
        edges = np.searchsorted(trace.t, trace.t[0] + np.arange(60_000, 7200_000, 60_000))
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(trace)]):  # a flush every minute of data
            store.handle(Batch(trace.series, trace.sidx[lo:hi], trace.t[lo:hi], trace.v[lo:hi]))
            store.flush()
            store.compact()
        st = store.stats()
    assert st["segment_rows"] == len(trace) and st["merges"] > 0
    assert st["segment_bytes"] / len(trace) <= 3.0, st


def test_merge_killed_before_cleanup_is_finished_at_start(tmp_path):
    t = T0 + np.arange(40) * 1000
    store = open_store(tmp_path)
    for i in range(4):
        store.handle(one(POWER, t[i * 10:(i + 1) * 10], np.arange(10) + i))
        store.flush()
    saved = tmp_path / "saved"
    shutil.copytree(tmp_path / "segments", saved)
    store.MERGE_FANOUT = 4
    assert store.compact() == 1
    want = store.read([KEY], *ALL)
    store.close()
    for p in saved.iterdir():  # as if the merge had been killed before deleting its inputs
        shutil.copy(p, tmp_path / "segments" / p.name)
    (tmp_path / "segments" / ".tmp-000000000009-000000000012.parquet").write_bytes(b"PAR1 half")
    with open_store(tmp_path) as store:
        got = store.read([KEY], *ALL)
        assert store.stats()["segments"] == 1 and store.stats()["temp_files_removed"] == 1
        assert all(np.array_equal(a, b) for a, b in zip(got[KEY], want[KEY]))
    assert sorted(p.name for p in (tmp_path / "segments").iterdir()) == ["000000000001-000000000004.parquet"]


def test_closed_store_refuses_batches(tmp_path):
    store = open_store(tmp_path)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.handle(one(POWER, [T0], [1.0]))


def test_segments_read_directly_with_pandas_and_duckdb(tmp_path):
    """The docs' example (Reading segments directly) on a store whose samples were written
    twice, with odd floats: the last written wins, bits kept, through pandas and DuckDB."""
    pytest.importorskip("duckdb")  # the example imports it itself
    rng = np.random.default_rng(1)
    odd = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -1e300, 1.5, 1 / 3]
    keys = [KEY, ("t.pdu-1", "ratio"), ("t.pdu-1", "odd")]
    with open_store(tmp_path) as store:
        store.handle(one(POWER, T0 + np.arange(50) * 1000, np.round(rng.uniform(100, 200, 50), 1)))
        store.handle(one(Series("t.pdu-1", "ratio", "1"), T0 + np.arange(50) * 1000, rng.normal(0, 1, 50)))
        store.handle(one(Series("t.pdu-1", "odd", "1"), T0 + np.arange(9) * 1000, odd))
        store.flush()
        store.handle(one(POWER, [T0 + 7000], [42.5]))  # sent again: the later segment wins
        want = store.read(keys, *ALL)
    doc = (Path(__file__).resolve().parents[1] / "docs/consumers/store.md").read_text()
    code = doc.split("## Reading segments directly", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(code.replace("<store>", str(tmp_path)), scope)  # noqa: S102 - the docs' own example
    df, rows = scope["df"], scope["rows"]
    for key, (t, v) in want.items():
        sel = df[(df.probe == key[0]) & (df.metric == key[1])]
        assert np.array_equal(sel.t.to_numpy(), t), key
        assert np.array_equal(bits(sel.value.to_numpy()), bits(v)), key
    got = {}
    for probe, metric, _t, value in rows:
        got.setdefault((probe, metric), []).append(value)
    for key, (_, v) in want.items():
        assert np.array_equal(bits(np.array(got[key])), bits(v)), key
    # DuckDB's rows in its ORDER BY: keys sorted, each key's times as the store reads them
    assert [(p, m, int(t)) for p, m, t, _ in rows] == [(*key, t) for key in sorted(want) for t in want[key][0].tolist()]


def test_a_malformed_batch_is_refused_before_the_log(tmp_path):
    from wattsight.errors import SampleError

    store = open_store(tmp_path)
    with pytest.raises(SampleError, match="series index 3"):
        store.handle(Batch((POWER,), np.array([0, 3], np.uint32), np.array([T0, T0]), np.zeros(2)))
    store.handle(one(POWER, [T0], [1.0]))
    with open_store(tmp_path) as again:  # replays the log of the store left open
        assert again.stats()["replayed_batches"] == 1 and again.stats()["wal_corrupt"] == 0
        assert again.read([KEY], *ALL)[KEY][1].tolist() == [1.0]


def test_a_large_tail_is_flushed_before_the_interval_is_up(tmp_path):
    """At millions of samples per second a minute of tail would fill the memory: FLUSH_ROWS
    samples waiting wake the flush thread at once."""
    import time

    store = open_store(tmp_path / "s")
    store.FLUSH_ROWS = 5_000
    try:
        s = Series("a.x", "power", "W")
        store.handle(Batch.of_series(s, np.arange(4_000), np.full(4_000, 1.0)))
        assert store.stats()["flushes"] == 0
        store.handle(Batch.of_series(s, np.arange(4_000, 8_000), np.full(4_000, 1.0)))
        deadline = time.monotonic() + 60
        while store.stats()["flushes"] == 0:
            assert time.monotonic() < deadline, "the full tail was not flushed"
            time.sleep(0.05)
        assert store.stats()["tail_samples"] == 0
        t, _v = store.read([("a.x", "power")], 0, 8_000)[("a.x", "power")]
        assert len(t) == 8_000
    finally:
        store.close()


def test_a_range_that_overlapping_segments_hold_no_sample_of_reads_empty(tmp_path):
    store = open_store(tmp_path / "s")
    try:
        s = Series("a.x", "power", "W")
        store.handle(Batch.of_series(s, np.array([1000, 5000]), np.array([1.0, 2.0])))
        store.flush()
        store.handle(Batch.of_series(s, np.array([2000, 6000]), np.array([3.0, 4.0])))
        store.flush()
        t, v = store.read([("a.x", "power")], 3000, 3500)[("a.x", "power")]
        assert len(t) == len(v) == 0
        t, v = store.read([("a.x", "power")], 0, 10_000)[("a.x", "power")]
        assert t.tolist() == [1000, 2000, 5000, 6000] and v.tolist() == [1.0, 3.0, 2.0, 4.0]
    finally:
        store.close()
