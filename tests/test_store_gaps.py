"""Gap columns of the rollup cells: energy from cells with gaps inside and at their edges equals the
raw integration at every gap limit, such cells are used whole (no finer read), and partitions
written before the gap columns existed still give the raw answers."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from store_contract import assert_energy_as_raw
from store_contract import open_embedded as open_store

from wattsight.consumers.store import Store, rollup_query
from wattsight.consumers.store.rollup import GAP_FLOOR_MS, LEVELS, NO_GAP
from wattsight.sample import Batch, Series

D, H, M = LEVELS["1d"], LEVELS["1h"], LEVELS["1m"]
DAY0 = 1_767_225_600_000  # a day edge
POWER = Series("g.pdu-1", "power", "W")
FINE = Series("g.pdu-2", "power", "W")
ENERGY = Series("g.pdu-2", "energy", "J", "counter")
ALL = (POWER, FINE, ENERGY)
#: Missing stretches (start ms from DAY0, length ms): around the floor (5 s), across minute, hour
#: and day edges, inside cells; the interval a gap makes is its length + 1 s.
HOLES = [(3_600_000 * 2 + 10_000, 2_000), (3_600_000 * 2 + 70_000, 4_000), (3_600_000 * 3 + 5_000, 4_001),
         (3_600_000 * 4 - 30_000, 60_000), (3_600_000 * 5 + 59_500, 6_000), (D - 200_000, 400_000),
         (D + 7 * H + 123_000, 600_000), (D + 9 * H, 59_000), (D + 12 * H + 1_000, 2 * H),
         (2 * D - 1_000, 1_000), (2 * D + H - 3_000, 10_000)]
GAPS = (2_000, 3_000, 5_000, 5_001, 6_000, 7_000, 11_000, 60_000, 61_000, 601_000, 8 * H)


def samples(seed: int, days: float = 2.25, jitter: bool = False) -> dict[Series, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = DAY0 - 10 * M + np.arange(int(days * 86400)) * 1000
    if jitter:
        t = t + rng.integers(0, 300, len(t))
    keep = np.ones(len(t), bool)
    for a, n in HOLES:
        keep[(t >= DAY0 + a) & (t < DAY0 + a + n)] = False
    t = t[keep]
    watts = 150 + 50 * np.sin(np.arange(len(t)) / 900) + rng.normal(0, 1.5, len(t))
    return {POWER: (t, np.round(watts)), FINE: (t, np.round(watts, 1)),
            ENERGY: (t, np.floor(np.cumsum(watts) / 3600) * 3600)}


def build(path, data) -> Store:
    store = open_store(path)
    for s, (t, v) in data.items():
        for part in np.array_split(np.arange(len(t)), 5):  # a flush per part: cells appended to
            store.handle(Batch.of_series(s, t[part], v[part]))
            store.flush()
    return store


def check(store: Store, ranges, gaps=GAPS) -> None:
    for start, end in ranges:
        for gap in gaps:
            assert_energy_as_raw(store, ALL, start, end, gap)


def ranges(seed: int, n: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    out = [(DAY0 - 10 * M, DAY0 + 2 * D + 5 * H), (DAY0, DAY0 + 2 * D - 1), (DAY0 + 2 * H, DAY0 + D + 13 * H)]
    for _ in range(n):
        a, b = sorted(rng.integers(DAY0 - 5 * M, DAY0 + 2 * D + 5 * H, 2).tolist())
        out.append((a, b) if rng.random() < 0.5 else (a // M * M, b // H * H))
    return out


@pytest.mark.parametrize("jitter", [False, True])
def test_energy_from_cells_with_gaps_equals_the_raw_integration(tmp_path, jitter):
    store = build(tmp_path / "s", samples(1, jitter=jitter))
    try:
        check(store, ranges(2, 12))
    finally:
        store.close()


def test_gap_columns_of_each_cell_equal_numpy_on_the_raw_intervals(tmp_path):
    store = build(tmp_path / "s", samples(3, jitter=True))
    R = store._rollups
    try:
        for s in ALL:
            t, _ = store.read([s.key], 0, 2**62)[s.key]
            for level, size in LEVELS.items():
                cells = R.read(level, np.array([R.kid(s.key)]), 0, 2**62)
                for j, b in enumerate(cells["b"].tolist()):
                    tb = t[(t >= b) & (t < b + size)]
                    dt = np.diff(tb)
                    big = dt[dt > GAP_FLOOR_MS]
                    assert cells["gap_ms"][j] == big.sum(), (s, level, b)
                    assert cells["gap_dt_min"][j] == (big.min() if len(big) else NO_GAP), (s, level, b)
                    assert cells["short_max"][j] == max(dt[dt <= GAP_FLOOR_MS], default=0), (s, level, b)
                    assert cells["max_dt"][j] == max(dt, default=0), (s, level, b)
    finally:
        store.close()


def test_cells_with_gaps_are_used_whole_under_the_limit(tmp_path, monkeypatch):
    """Whole days with gaps of 6 s .. 2 h at a 5 s limit: day cells only, no finer cell nor raw
    minute read; without the gap columns the same query descends to hours and minutes."""
    store = build(tmp_path / "s", samples(4))
    reads: list[str] = []
    real = store._rollups.read

    def counting(level, *args, **kw):
        reads.append(level)
        return real(level, *args, **kw)

    monkeypatch.setattr(store._rollups, "read", counting)
    raw_minutes = []
    monkeypatch.setattr(rollup_query, "_raw_minutes", lambda *a: raw_minutes.append(a) or [])
    keys = [s.key for s in ALL]
    try:
        store.energy(keys, DAY0, DAY0 + 2 * D - 1, 5_000)
        assert reads.count("1d") == 1 and reads.count("1h") == 0, reads
        assert reads.count("1m") == 2, reads  # the samples just outside either edge
        assert not raw_minutes
        with_columns = len(reads)
        reads.clear()
        monkeypatch.setattr(rollup_query, "USE_GAP_COLUMNS", False)
        store.energy(keys, DAY0, DAY0 + 2 * D - 1, 5_000)
        assert reads.count("1h") >= 1 and len(reads) > with_columns, reads
    finally:
        store.close()


def test_partitions_without_gap_columns_still_give_the_raw_answers(tmp_path):
    """A store whose rollup files predate the gap columns: read with short_max = max_dt (used
    only when every interval is bridged, as before), answers unchanged."""
    path = tmp_path / "s"
    build(path, samples(5)).close()
    for f in (path / "rollups").rglob("*.parquet"):
        table = pq.read_table(f)
        pq.write_table(table.drop_columns(["gap_acc", "gap_ms", "gap_dt_min", "short_max"]), f)
    store = open_store(path)
    try:
        cells = store._rollups.read("1d", np.array([store._rollups.kid(POWER.key)]), 0, 2**62)
        assert (cells["short_max"] == cells["max_dt"]).all() and (cells["gap_dt_min"] == NO_GAP).all()
        check(store, ranges(6, 4), gaps=(5_000, 61_000, 8 * H))
    finally:
        store.close()
