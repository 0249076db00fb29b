"""The 5 min rollup level: buckets of 5, 10 and 30 min come from its cells, and a store written
before it existed gets it built from its 1 min cells at start (never from raw samples)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from store_contract import open_embedded as open_store
from test_store_rollups import ALL_SERIES, HUGE, T0, check_cells, feed, trace

from wattsight import timeseries
from wattsight.consumers.store import rollup as ru
from wattsight.consumers.store import rollup_sync
from wattsight.consumers.store.rollup import LEVELS
from wattsight.consumers.store.rollup_files import Rollups


@pytest.fixture(scope="module")
def data():
    return trace(3, 2 * 86_400 // 8)  # 6 h: partitions of two days of the 5 min level


def _as_older_store(root, garbage: bool) -> None:
    """The rollups as a store written before the 5 min level left them (or killed half-way
    through building it: one partition file of garbage, STATE still without the level)."""
    state = json.loads((root / "rollups" / "STATE.json").read_text())
    assert state["levels"] == list(LEVELS)
    files = sorted((root / "rollups" / "5m").glob("*.parquet"))
    assert files
    for f in files:
        f.unlink()
    if garbage:
        files[0].write_bytes(b"not a parquet file")
    (root / "rollups" / "STATE.json").write_text(json.dumps({"covered_hi": state["covered_hi"]}))


@pytest.mark.parametrize("garbage", [False, True])
def test_an_older_store_gets_the_5m_level_from_its_1m_cells(tmp_path, data, monkeypatch, caplog, garbage):
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=4)
    kids = np.arange(len(store._rollups.keys))
    before = store._rollups.read("5m", kids, -HUGE, HUGE)
    keys = list(store._rollups.keys)
    store.close()
    _as_older_store(tmp_path / "s", garbage)

    def no_raw(*args, **kw):
        raise AssertionError("the 5 min level must come from the 1 min cells, not from raw samples")
    monkeypatch.setattr(rollup_sync, "raw_columns", no_raw)
    with caplog.at_level("INFO", logger="wattsight.store"):
        again = open_store(tmp_path / "s")
    monkeypatch.undo()
    assert "5m rollups built from finer cells" in caplog.text
    assert json.loads((tmp_path / "s" / "rollups" / "STATE.json").read_text())["levels"] == list(LEVELS)
    R = again._rollups
    after = R.read("5m", np.asarray([R.kid(k) for k in keys]), -HUGE, HUGE)
    lut = np.asarray([R.kid(k) for k in keys])
    order = np.lexsort((before["b"], lut[before["kid"]]))
    for c, col in before.items():
        want = lut[col] if c == "kid" else col
        assert after[c].tolist() == want[order].tolist(), c
    check_cells(again)
    again.close()


def test_buckets_of_5_10_30_min_read_the_5m_cells_only(tmp_path, data):
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=3)
    R = store._rollups
    levels = []
    read = R.read

    def spy(level, *args):
        levels.append(level)
        return read(level, *args)
    R.read = spy
    keys = [s.key for s in ALL_SERIES]
    start = (T0 // 1_800_000 + 1) * 1_800_000
    end = int(max(data[s][0][-1] for s in ALL_SERIES))
    raw = store.read(keys, start, end)
    for step in (300_000, 600_000, 1_800_000):
        levels.clear()
        got = store.buckets(keys, start, end, step)
        assert set(levels) == {"5m"}, (step, levels)
        for k in keys:
            want = timeseries.buckets(*raw[k], start, end + 1, step)
            assert got[k]["t"].tolist() == want["t"].tolist() and got[k]["n"].tolist() == want["count"].tolist()
            for c in ("min", "max", "last"):
                assert got[k][c].tolist() == want[c].tolist(), (k, step, c)
    levels.clear()
    store.buckets(keys, start + 60_000, end, 600_000)  # not on a 5 min edge: the 1 min cells
    assert set(levels) == {"1m"}
    store.close()


def test_partitions_are_written_compact_and_older_ones_still_read(tmp_path, data):
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=2)
    store.close()
    files = sorted((tmp_path / "s" / "rollups" / "1m").glob("*.parquet"))
    f = pq.ParquetFile(files[0])
    assert b"ARROW:schema" not in f.metadata.metadata  # it held the keys' metadata a second time
    col = {f.metadata.row_group(0).column(i).path_in_schema: f.metadata.row_group(0).column(i).encodings
           for i in range(f.metadata.num_columns)}
    assert "BYTE_STREAM_SPLIT" in col["sum"] and "DELTA_BINARY_PACKED" in col["first_t"], col
    for path in files:  # as the store wrote them before: Parquet's defaults
        old = pq.ParquetFile(path)
        table = old.read().replace_schema_metadata(old.metadata.metadata)
        pq.write_table(table, path, compression="zstd")
    again = open_store(tmp_path / "s")
    check_cells(again)
    again.close()


def test_a_partition_whose_keys_this_process_numbers_otherwise_reads_and_joins_right(tmp_path):
    """Files list their keys in the order of the process that wrote them; a later process may number
    them otherwise (here: the other way round).  Loaded as they are (no sort of every row), such a
    partition still reads sorted by (kid, b), and new samples still join its cells."""
    M, H = LEVELS["1m"], LEVELS["1h"]
    keys = [("p-a", "power"), ("p-b", "power")]
    for order, part in ((keys, 0), (keys[::-1], H)):
        R = Rollups(tmp_path / "r")
        kids = np.asarray([R.kid(k, "gauge") for k in order])
        t = np.concatenate([part + np.arange(0, 5 * M, 1000)] * 2)
        kid = np.repeat(kids, len(t) // 2)
        R._replace("1m", kids, part, part + H, ru.from_raw(kid, t, np.ones(len(t)), M, R.counter, R.wrap))
        R.save(1)
    R = Rollups(tmp_path / "r")
    got = R.read("1m", np.arange(2), 0, 2 * H)  # loads the first file: its order numbers the keys
    assert [R.keys[k] for k in np.unique(got["kid"])] == keys
    assert got["kid"].tolist() == [0] * 10 + [1] * 10
    assert got["b"].tolist() == ([i * M for i in range(5)] + [H + i * M for i in range(5)]) * 2
    assert R._part("1m", H)["kid"].tolist() == [1] * 5 + [0] * 5  # as written by the other process
    # one more second in minute 4 (joined to its cell) and one in minute 5 (a new cell), per key
    t = np.array([H + 5 * M - 500, H + 5 * M + 500] * 2)
    assert R.append(np.arange(2), np.array([2, 2]), t, np.full(4, 2.0))
    got = R.read("1m", np.arange(2), H, 2 * H)
    assert got["b"].tolist() == [H + i * M for i in range(6)] * 2
    assert got["n"].tolist() == [60] * 4 + [61, 1] + [60] * 4 + [61, 1]
    assert got["sum"].tolist() == [60.0] * 4 + [62.0, 2.0] + [60.0] * 4 + [62.0, 2.0]


def test_buckets_load_cold_partitions_with_their_columns_only_and_later_reads_get_all(tmp_path, data):
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=2)
    store.close()
    store = open_store(tmp_path / "s")
    R = store._rollups
    keys = [s.key for s in ALL_SERIES]
    start = (T0 // 1_800_000 + 1) * 1_800_000
    end = int(max(data[s][0][-1] for s in ALL_SERIES))
    with R._lock:
        R._parts.clear()
    want = store.buckets(keys, start, end, 600_000, use_rollups=False)
    got = store.buckets(keys, start, end, 600_000)
    loaded = [k for k in R._parts if k[0] == "5m"]
    assert loaded and all(k in R._partial and set(R._parts[k]) == {"kid", "b", *ru.STATS} for k in loaded)
    for k in keys:
        assert got[k]["max"].tolist() == want[k]["max"].tolist() and got[k]["n"].tolist() == want[k]["n"].tolist()
    kid = np.asarray([R.kid(k) for k in keys])
    whole = R.read("5m", kid, -HUGE, HUGE)  # all columns: the partitions are loaded again, whole
    assert set(whole) == set(ru.COLUMNS) and not any(k in R._partial for k in loaded)
    check_cells(store)
    store.close()
