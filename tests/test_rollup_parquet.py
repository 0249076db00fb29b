"""Rollup partitions in row groups cut between keys: a read of some keys loads only their groups,
files written before (one group, no group list) still read whole, and the answers from partitions
loaded key by key equal those from partitions loaded whole."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from store_contract import open_embedded as open_store

from wattsight.consumers.store import rollup as ru
from wattsight.consumers.store import rollup_parquet as rp
from wattsight.consumers.store.rollup_files import Rollups
from wattsight.sample import Batch, Series

M, H = ru.LEVELS["1m"], ru.LEVELS["1h"]
P = 1_767_225_600_000  # an hour's start
KEYS = [(f"t.pdu-{i}", "power") for i in range(20)]


@pytest.fixture
def small_groups(monkeypatch):
    monkeypatch.setattr(rp, "GROUP_ROWS", 50)  # 20 keys of 12 cells: 5 groups of 4 or 5 keys


def _cells(nkeys: int = 20, minutes: int = 12, seed: int = 0) -> ru.Cells:
    """1 min cells of keys 0 .. nkeys-1 over ``minutes`` minutes from P (random 1 Hz gauges)."""
    rng = np.random.default_rng(seed)
    t = P + np.arange(minutes * 60) * 1000
    kid = np.repeat(np.arange(nkeys), len(t))
    v = np.round(rng.uniform(100, 400, len(kid)), 1)
    return ru.from_raw(kid, np.tile(t, nkeys), v, M, np.zeros(nkeys, bool), np.full(nkeys, np.nan))


def _names(nkeys: int = 20) -> list[list[str]]:
    return [[*KEYS[k], "gauge"] for k in range(nkeys)]


def _same(a: ru.Cells, b: ru.Cells) -> None:
    a, b = ru.sort(a), ru.sort(b)
    assert set(a) == set(b)
    for c in a:
        np.testing.assert_array_equal(a[c], b[c], err_msg=c)


def _identity(key, kind) -> int:
    return KEYS.index(key)


def _lut(names: bytes) -> np.ndarray:
    return np.asarray([KEYS.index((a, b)) for a, b, _ in json.loads(names)])


def test_partitions_are_written_in_row_groups_cut_between_keys(tmp_path, small_groups):
    cells = _cells()
    path = tmp_path / "p.parquet"
    rp.write(path, cells, _names(), cells["kid"])
    f = pq.ParquetFile(path)
    firsts = json.loads(f.metadata.metadata[rp.GROUPS_META])
    assert f.metadata.num_row_groups == len(firsts) > 1
    kid = f.read(columns=["kid"]).column("kid").to_numpy()
    ends = np.cumsum([f.metadata.row_group(g).num_rows for g in range(len(firsts))])
    starts = np.r_[0, ends[:-1]]
    assert kid[starts].tolist() == firsts
    assert all(kid[e - 1] != kid[e] for e in ends[:-1])  # no key across two groups
    _same(rp.load(path, _identity), cells)


def test_a_read_of_some_keys_loads_their_groups_only(tmp_path, small_groups):
    cells = _cells()
    path = tmp_path / "p.parquet"
    rp.write(path, cells, _names(), cells["kid"])
    want = np.zeros(20, bool)
    want[[3, 17]] = True
    got, missing = rp.load_keys(path, _lut, want, ru.STATS)
    read = np.unique(got["kid"])
    assert {3, 17} <= set(read.tolist()) and len(read) < 20
    assert missing is not None and np.flatnonzero(~missing).tolist() == read.tolist()
    whole = ru.take(cells, np.isin(cells["kid"], read))
    _same(got, {c: whole[c] for c in ("kid", "b", *ru.STATS)})  # each key read has all its rows
    none, missing = rp.load_keys(path, _lut, np.zeros(20, bool))
    assert not len(none["kid"]) and missing.all()
    every, missing = rp.load_keys(path, _lut, np.ones(20, bool))
    assert missing is None
    _same(every, cells)


@pytest.mark.parametrize("groups", [None, 50])
def test_files_written_before_the_row_groups_read_whole(tmp_path, small_groups, groups):
    """One row group (Parquet's defaults), or several without the group list: read whole."""
    cells = _cells()
    path = tmp_path / "p.parquet"
    rp.write(path, cells, _names(), cells["kid"])
    old = pq.ParquetFile(path)
    meta = {k: v for k, v in old.metadata.metadata.items() if k != rp.GROUPS_META}
    pq.write_table(old.read().replace_schema_metadata(meta), path, compression="zstd", row_group_size=groups)
    want = np.zeros(20, bool)
    want[5] = True
    got, missing = rp.load_keys(path, _lut, want)
    assert missing is None
    _same(got, cells)


def _saved(path, order) -> Rollups:
    """Rollups at ``path`` holding one hour of 1 min cells of the 20 keys, numbered in ``order``."""
    R = Rollups(path)
    kids = np.asarray([R.kid(KEYS[k], "gauge") for k in order])
    cells = _cells()
    cells["kid"] = kids[cells["kid"]]
    R._replace("1m", kids, P, P + H, ru.sort(cells))
    R.save(1)
    return R


def test_rollups_load_the_groups_of_the_keys_asked_and_add_the_others_later(tmp_path, small_groups):
    _saved(tmp_path / "r", range(20))
    ref = Rollups(tmp_path / "r")
    ref_kids = np.asarray([ref.kid(k) for k in KEYS])
    want = ref.read("1m", ref_kids, P, P + H)  # loaded whole
    R = Rollups(tmp_path / "r")
    kids = np.asarray([R.kid(k) for k in reversed(KEYS)])[::-1]  # numbered otherwise than the file
    assert kids.tolist() == list(range(19, -1, -1))

    def as_ref(cells):  # renumbered as ref
        return dict(cells, kid=ref_kids[np.asarray([KEYS.index(R.keys[k]) for k in cells["kid"].tolist()],
                                                   np.int64)])
    first = R.read("1m", kids[[2, 3]], P, P + H)
    _same(as_ref(first), ru.take(want, np.isin(want["kid"], ref_kids[[2, 3]])))
    key = ("1m", P)
    held = len(R._parts[key]["kid"])
    assert key in R._missing and held < len(want["kid"])
    again = R.read("1m", kids[[2]], P, P + H)  # from memory
    assert R._missing[key] is not None and len(R._parts[key]["kid"]) == held
    _same(as_ref(again), ru.take(want, want["kid"] == ref_kids[2]))
    other = R.read("1m", kids[[2, 19]], P, P + H)  # key 19's group is added
    assert len(R._parts[key]["kid"]) > held
    _same(as_ref(other), ru.take(want, np.isin(want["kid"], ref_kids[[2, 19]])))
    _same(as_ref(R.read("1m", kids, P, P + H)), want)
    assert key not in R._missing and len(R._parts[key]["kid"]) == len(want["kid"])


def test_new_samples_join_a_partition_loaded_key_by_key(tmp_path, small_groups):
    """Samples appended to a partition of which some groups were loaded (another process's key
    numbering, groups loaded at two times) give the cells of a partition loaded whole."""
    _saved(tmp_path / "r", range(20))
    got = {}
    for partial in (False, True):
        R = Rollups(tmp_path / "r")
        kids = np.asarray([R.kid(k) for k in reversed(KEYS)])[::-1]
        if partial:
            R.read("1m", kids[[15]], P, P + H)
            R.read("1m", kids[[1]], P, P + H)
            assert ("1m", P) in R._missing
        t = np.tile([P + 12 * M - 400, P + 12 * M + 300], 20)  # joins minute 11, starts minute 12
        assert R.append(kids, np.full(20, 2), t, np.full(40, 7.0))
        assert ("1m", P) not in R._missing
        cells = R.read("1m", kids, P, P + H)
        got[partial] = dict(cells, kid=np.asarray([KEYS.index(R.keys[k]) for k in cells["kid"].tolist()]))
    _same(got[True], got[False])
    assert len(got[True]["kid"]) == 20 * 13


@pytest.mark.parametrize(("threads", "budget"), [(2, None), (1, None), (2, 300)])
def test_store_answers_from_partitions_loaded_key_by_key_equal_the_raw_path(tmp_path, small_groups, monkeypatch,
                                                                            threads, budget):
    """``threads``: loading partitions (1: one after the other); ``budget``: rows kept in memory
    (300: partitions loaded ahead are dropped again before they are read)."""
    monkeypatch.setattr(rp, "LOAD_THREADS", threads)
    series = [Series(f"t.pdu-{i}", "power", "W") for i in range(24)]
    t0 = _feed_many(tmp_path / "s", series, np.random.default_rng(3))
    store = open_store(tmp_path / "s")
    R = store._rollups
    R.budget_rows = budget or R.budget_rows
    end = t0 + 3 * H - 1
    start = (t0 // (10 * M) + 1) * 10 * M
    for pick in ([0, 1, 2], [7, 23], list(range(24))):
        keys = [series[i].key for i in pick]
        got = store.buckets(keys, start, end, 10 * M)
        if len(keys) < 24:  # the 5 min cells of the keys asked only
            assert all(("5m", p) in R._missing for lv, p in R._parts if lv == "5m")
            assert budget or any(lv == "5m" for lv, p in R._parts)
        want = store.buckets(keys, start, end, 10 * M, use_rollups=False)
        for k in keys:
            for c in ("t", "n", "min", "max", "last"):
                assert got[k][c].tolist() == want[k][c].tolist(), (pick, k, c)
            np.testing.assert_allclose(got[k]["avg"], want[k]["avg"], rtol=1e-12)
        fast = store.energy(keys, start + 17_300, end - 4_100, [5_000] * len(keys))
        slow = store.energy(keys, start + 17_300, end - 4_100, [5_000] * len(keys), use_rollups=False)
        for k in keys:
            assert fast[k].covered_ms == slow[k].covered_ms
            assert fast[k].joules == pytest.approx(slow[k].joules, rel=1e-9)
    assert budget or not R._missing  # all keys asked: every group loaded
    store.close()


def _feed_many(path, series, rng) -> int:
    """Three hours of 1 Hz samples of ``series`` (a few missing), a flush per hour; returns t0."""
    t0 = P - 7 * M
    store = open_store(path)
    for h in range(3):
        t = t0 + h * H + np.arange(3600) * 1000
        for s in series:
            keep = rng.random(3600) > 0.01
            store.handle(Batch.of_series(s, t[keep], np.round(rng.uniform(50, 500, keep.sum()), 1)))
        store.flush()
    store.close()
    return t0


def test_a_store_written_before_row_groups_rewrites_its_5m_partitions_in_them_once(tmp_path, small_groups, caplog):
    series = [Series(f"t.pdu-{i}", "power", "W") for i in range(24)]
    t0 = _feed_many(tmp_path / "s", series, np.random.default_rng(5))
    root = tmp_path / "s" / "rollups"
    for path in root.glob("*/*.parquet"):  # as the store wrote them before: one group, no group list
        old = pq.ParquetFile(path)
        meta = {k: v for k, v in old.metadata.metadata.items() if k != rp.GROUPS_META}
        pq.write_table(old.read().replace_schema_metadata(meta), path, compression="zstd")
    state = json.loads((root / "STATE.json").read_text())
    assert state.pop("grouped") is True
    (root / "STATE.json").write_text(json.dumps(state))
    big = [p for p in root.glob("5m/*.parquet") if pq.ParquetFile(p).metadata.num_rows > 50]
    assert big and not any(rp.grouped(p) for p in big)
    with caplog.at_level("INFO", logger="wattsight.store"):
        store = open_store(tmp_path / "s")
    assert f"5m rollups rewritten in row groups: {len(big)} of {len(big)} partitions" in caplog.text
    assert json.loads((root / "STATE.json").read_text())["grouped"] is True
    for path in big:
        f = pq.ParquetFile(path)
        assert rp.GROUPS_META in f.metadata.metadata and f.metadata.num_row_groups > 1
    assert not any(rp.grouped(p) for p in root.glob("1m/*.parquet"))  # the other levels read whole
    keys = [s.key for s in series]
    for pick in (keys[:3], keys):
        for step in (10 * M, M):
            start = (t0 // step + 1) * step
            got = store.buckets(pick, start, t0 + 3 * H - 1, step)
            want = store.buckets(pick, start, t0 + 3 * H - 1, step, use_rollups=False)
            assert all(got[k]["max"].tolist() == want[k]["max"].tolist() for k in pick)
    store.close()
    caplog.clear()
    with caplog.at_level("INFO", logger="wattsight.store"):
        open_store(tmp_path / "s").close()
    assert "row groups" not in caplog.text  # once
