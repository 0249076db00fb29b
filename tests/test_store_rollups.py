"""Rollups of the embedded store: cells against numpy on the raw samples, late samples, restarts,
and queries answered from rollups equal to the raw answers (store and API)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from store_contract import assert_energy_as_raw
from store_contract import open_embedded as open_store

from wattsight import energy, timeseries
from wattsight.consumers.api.catalog import Catalog
from wattsight.consumers.api.queries import energy_report, series_report, traffic_report
from wattsight.consumers.store import Store
from wattsight.consumers.store.rollup import LEVELS
from wattsight.errors import QueryError
from wattsight.sample import Batch, Series, Topology, counter_range, wrapping_counter

T0 = 1_767_225_600_000 - 37 * 60_000 - 13_000  # not on a bucket edge
WRAP = 5_000.0
POWER = Series("t.pdu-1", "power", "W")
POWER2 = Series("t.pdu-2", "power", "W")
ENERGY = Series("t.pdu-2", "energy", "J", wrapping_counter(WRAP))
RESET = Series("t.sw-1", "network_in", "B", "counter")
ALL_SERIES = (POWER, POWER2, ENERGY, RESET)
HUGE = 10**15


def trace(seed: int, seconds: int) -> dict[Series, tuple[np.ndarray, np.ndarray]]:
    """1 Hz-ish samples with jitter, gaps of 5 s .. 2 h, NaNs, a wrapping and a resetting counter."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in ALL_SERIES:
        t = T0 + np.arange(seconds) * 1000 + rng.integers(0, 400, seconds)
        keep = np.ones(seconds, bool)
        for _ in range(6):
            a = int(rng.integers(0, seconds))
            keep[a:a + int(rng.choice([5, 30, 400, 2000, 7200]))] = False
        t = t[keep]
        if s.kind == "gauge":
            v = np.round(rng.uniform(100, 400, len(t)), 1)
            v[rng.integers(0, len(t), 5)] = np.nan
        else:
            v = np.cumsum(rng.uniform(0, 60, len(t)))
            v = np.mod(v, WRAP) if s is ENERGY else np.where(np.arange(len(t)) > len(t) // 2,
                                                              v - v[len(t) // 2], v)
        out[s] = (t, v)
    return out


def feed(store: Store, data, pieces: int, seed: int = 0) -> None:
    """Send the data in ``pieces`` shuffled slices (late and out-of-order batches), flushing between."""
    rng = np.random.default_rng(seed)
    for s, (t, v) in data.items():
        cut = np.sort(rng.integers(0, len(t), pieces - 1))
        parts = list(zip(np.split(t, cut), np.split(v, cut)))
        for i in rng.permutation(len(parts)):
            pt, pv = parts[i]
            if len(pt):
                store.handle(Batch.of_series(s, pt, pv))
                if rng.random() < 0.5:
                    store.flush()
    store.flush()


def expected_cells(t: np.ndarray, v: np.ndarray, size: int, kind: str) -> dict[int, tuple]:
    """Per bucket, from numpy on the raw samples: n, sum, min, max, first, last, inner amount and ms."""
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    out = {}
    for b in np.unique(t // size * size).tolist():
        sel = (t >= b) & (t < b + size)
        tb, vb = t[sel], v[sel]
        a, z = int(tb[0]), int(tb[-1])
        if kind == "gauge":
            acc = energy.integrate(tb, vb, a, z, HUGE).joules * 1000
        else:
            acc = energy.counter_increase(tb, vb, a, z, HUGE, counter_range(kind)).joules
        out[b] = (len(tb), vb.sum(), vb.min(), vb.max(), a, vb[0], z, vb[-1], acc, z - a)
    return out


def check_cells(store: Store) -> None:
    R = store._rollups
    for s in ALL_SERIES:
        t, v = store.read([s.key], -HUGE, HUGE)[s.key]
        kid = R.kid(s.key)
        for level, size in LEVELS.items():
            want = expected_cells(t, v, size, s.kind)
            got = R.read(level, np.array([kid]), -HUGE, HUGE)
            assert got["b"].tolist() == sorted(want), (s, level)
            cols = ("n", "sum", "min", "max", "first_t", "first_v", "last_t", "last_v", "acc", "acc_ms")
            for j, b in enumerate(got["b"].tolist()):
                row = tuple(got[c][j] for c in cols)
                assert row[:2] == pytest.approx(want[b][:2], rel=1e-12), (s, level, b)
                assert row[2:8] == want[b][2:8], (s, level, b)
                assert row[8] == pytest.approx(want[b][8], rel=1e-9, abs=1e-6), (s, level, b)
                assert row[9] == want[b][9], (s, level, b)


@pytest.fixture(scope="module")
def data():
    return trace(1, 3 * 3600 + 1234)


def test_cells_equal_numpy_on_the_raw_samples_with_late_batches(tmp_path, data):
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=9)
    check_cells(store)
    # a late sample in an old minute and a sample sent again with another value: recomputed
    t, _ = data[POWER]
    store.handle(Batch.of_series(POWER, [int(t[100]) + 1, int(t[200])], [9999.0, -5.0]))
    store.flush()
    check_cells(store)
    assert store._rollups.read("1d", np.array([store._rollups.known(POWER.key)]), -HUGE, HUGE)["max"].max() == 9999
    store.close()


def test_restart_keeps_the_rollups_and_a_lost_state_rebuilds_them(tmp_path, data):
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=4)
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "s" / "rollups").rglob("*.parquet"))
    store.close()
    again = open_store(tmp_path / "s")
    assert again.stats()["rollup_errors"] == 0
    check_cells(again)
    again.close()
    shutil.rmtree(tmp_path / "s" / "rollups")  # an older store, or rollups lost: rebuilt from raw
    rebuilt = open_store(tmp_path / "s")
    check_cells(rebuilt)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "s" / "rollups").rglob("*.parquet")) == files
    rebuilt.close()


def _random_ranges(rng, n):
    t_lo, t_hi = T0 - 600_000, T0 + 3 * 3600_000 + 2_000_000
    out = [(t_lo, t_hi), (T0 // 3600_000 * 3600_000, T0 // 3600_000 * 3600_000 + 2 * 3600_000 - 1)]
    for _ in range(n):
        a, b = sorted(rng.integers(t_lo, t_hi, 2).tolist())
        out.append((a, b))
    return out


def _edge_ranges(rng, n):
    """Ranges starting and ending on a minute, hour or day edge, or 1 ms either side: the energy
    takes the sample just outside from the 1 min cells, or raw samples, depending on which."""
    t_lo, t_hi = T0 - 600_000, T0 + 3 * 3600_000 + 2_000_000
    out = []
    for _ in range(n):
        size = int(rng.choice([60_000, 3_600_000, 86_400_000]))
        a, b = (x // size * size + int(rng.integers(-1, 2)) for x in sorted(rng.integers(t_lo, t_hi, 2).tolist()))
        out.append((a, b if b > a + 2 else b + size))
    return out


@pytest.mark.parametrize("budget", [None, 250])
def test_store_energy_and_buckets_equal_the_raw_path(tmp_path, data, budget):
    """``budget``: rollup rows kept in memory (250: one or two hours of 1 min cells, so reads mix partitions in
    memory and on disk, and take those in memory first)."""
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=5)
    if budget is not None:  # reopened: no partition in memory yet
        store.close()
        store = open_store(tmp_path / "s")
        store._rollups.budget_rows = budget
    last = {s: data[s][0][-1] for s in ALL_SERIES}
    store.handle(Batch.of_series(POWER, [int(last[POWER]) + 500], [123.0]))  # one still in memory
    rng = np.random.default_rng(7)
    keys = [s.key for s in ALL_SERIES]
    for start, end in _random_ranges(rng, 25) + _edge_ranges(rng, 40):
        for gap in (5_000, 61_000, 3_000_000):
            fast = store.energy(keys, start, end, gap)
            raw = store.read(keys, start - gap, end + gap)
            for s in ALL_SERIES:
                t, v = raw[s.key]
                if s.kind == "gauge":
                    want = energy.integrate(t, v, start, end, gap)
                else:
                    want = energy.counter_increase(t, v, start, end, gap, counter_range(s.kind))
                got = fast[s.key]
                assert got.covered_ms == want.covered_ms and got.range_ms == want.range_ms, (s, start, end)
                assert got.joules == pytest.approx(want.joules, rel=1e-9, abs=1e-6), (s, start, end, gap)
    for start, end in _random_ranges(rng, 25):
        for step in (60_000, 120_000, 300_000, 600_000, 1_800_000, 5_400_000, 3_600_000, 86_400_000):  # 90 min: across
            a = start - start % step
            got = store.buckets(keys, a, end, step)
            raw = store.read(keys, a, end)
            for k in keys:
                want = timeseries.buckets(*raw[k], a, end + 1, step)
                g = got[k]
                assert g["t"].tolist() == want["t"].tolist() and g["n"].tolist() == want["count"].tolist()
                for c in ("min", "max", "last"):
                    assert g[c].tolist() == want[c].tolist(), (k, step, c)
                np.testing.assert_allclose(g["avg"], want["avg"], rtol=1e-12)
    store.close()


def test_api_answers_from_rollups_equal_the_raw_path(tmp_path, data):
    store = open_store(tmp_path / "s")
    feed(store, data, pieces=3)
    catalog = Catalog(store, Topology())
    rng = np.random.default_rng(11)
    for start, end in _random_ranges(rng, 8):
        for max_gap in (5.0, 600.0):
            args = {"max_gap_s": max_gap, "price_per_kwh": 0.2, "currency": "EUR"}
            fast = energy_report(store, catalog, start, end, **args)
            slow = energy_report(store, catalog, start, end, use_rollups=False, **args)
            assert fast["probes"].keys() == slow["probes"].keys()
            for p in fast["probes"]:
                f, s = fast["probes"][p], slow["probes"][p]
                assert (f["method"], f["coverage"], f["covered_s"]) == (s["method"], s["coverage"], s["covered_s"])
                assert f["joules"] == pytest.approx(s["joules"], rel=1e-9, abs=1e-6)
            tf = traffic_report(store, catalog, start, end, max_gap_s=max_gap)
            ts = traffic_report(store, catalog, start, end, max_gap_s=max_gap, use_rollups=False)
            f, s = tf["probes"]["t.sw-1"]["network_in"], ts["probes"]["t.sw-1"]["network_in"]
            assert f["coverage"] == s["coverage"] and f["bytes"] == pytest.approx(s["bytes"], rel=1e-9)
        for resolution in ("auto", "1m", "5m", "1h"):
            kw = {"resolution": resolution, "agg": "minmax", "max_points": 500}
            try:
                fast = series_report(store, catalog, ["t.pdu-1", "t.pdu-2"], "power", start, end, **kw)
            except QueryError as exc:  # too many points for an explicit step: both refuse alike
                with pytest.raises(type(exc)):
                    series_report(store, catalog, ["t.pdu-1"], "power", start, end, use_rollups=False, **kw)
                continue
            slow = series_report(store, catalog, ["t.pdu-1", "t.pdu-2"], "power", start, end,
                                 use_rollups=False, **kw)
            for f, s in zip(fast["series"], slow["series"]):
                assert f["count"] == s["count"] and f["columns"] == s["columns"]
                for pf, ps in zip(f["points"], s["points"]):
                    assert pf[0] == ps[0] and pf[1] == ps[1] and pf[3] == ps[3]
                    assert pf[2] == pytest.approx(ps[2], rel=1e-12)
    store.close()


def test_energy_with_samples_on_and_next_to_minute_edges(tmp_path):
    """Samples at minute edges and 1-2 ms either side: whether the energy takes the sample just
    outside the range from the 1 min cells or reads raw samples must not change the answer."""
    rng = np.random.default_rng(3)
    e0 = T0 // 60_000 * 60_000 + 60_000
    edges = e0 + np.arange(0, 200) * 60_000
    t = np.unique(np.concatenate([e0 + np.arange(0, 200 * 60, 3) * 1000 + 7,
                                  (edges[:, None] + np.arange(-2, 3)).ravel()]))
    t = t[rng.random(len(t)) < 0.9]
    store = open_store(tmp_path / "s")
    data = {POWER: (t, np.round(rng.uniform(100, 400, len(t)), 1)),
            ENERGY: (t, np.mod(np.cumsum(rng.uniform(0, 60, len(t))), WRAP))}
    feed(store, data, pieces=3)
    for _ in range(60):
        i, j = sorted(rng.integers(1, 199, 2).tolist())
        start = int(edges[i]) + int(rng.integers(-2, 3))
        end = int(edges[j] if j > i else edges[i] + 60_000 * int(rng.integers(1, 90))) + int(rng.integers(-2, 3))
        for gap in (2_000, 5_000, 3_000_000):
            assert_energy_as_raw(store, list(data), start, end, gap)
    store.close()
