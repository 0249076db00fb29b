"""Rollups.update (late samples: cells recomputed from raw samples, then from finer cells) and
Rollups.append (in-order samples folded into the cells) build every level the same way, the hours
from the 5 min cells: a store that received late samples holds the cells of one that did not."""

from __future__ import annotations

import numpy as np
import pytest
from store_contract import bits, one
from store_contract import open_embedded as open_store

from wattsight.consumers.store.rollup import LEVELS
from wattsight.sample import Series

D0 = 1_767_225_600_000  # a day edge: both hours in one day cell
HOUR = LEVELS["1h"]
POWER = Series("c.pdu-1", "power", "W")
ENERGY = Series("c.pdu-1", "energy", "J", "counter")
ALL = (POWER, ENERGY)
#: Columns that are exact whatever the order of the sums (the others are float sums).
EXACT = ("n", "min", "max", "first_t", "first_v", "last_t", "last_v", "acc_ms", "max_dt", "gap_ms",
         "gap_dt_min", "short_max")


def trace(seed: int) -> dict[Series, tuple[np.ndarray, np.ndarray]]:
    """Two hours of 1 Hz samples with jitter, a gap of 40 s and values whose sums round."""
    rng = np.random.default_rng(seed)
    t = D0 + np.arange(2 * 3600) * 1000 + rng.integers(0, 400, 2 * 3600)
    t = np.delete(t, np.arange(1_000, 1_040))
    return {POWER: (t, rng.uniform(100, 400, len(t))), ENERGY: (t, np.cumsum(rng.uniform(0, 60, len(t))))}


def late_sample_mask(t: np.ndarray, seed: int) -> np.ndarray:
    """Samples held back and sent after the rest: some in three minutes of hour 0, one in hour 1."""
    rng = np.random.default_rng(seed)
    minute = (t - D0) // 60_000
    late = np.isin(minute, [7, 31, 59]) & (rng.random(len(t)) < 0.3)
    late[np.searchsorted(t, D0 + HOUR + 12 * 60_000)] = True
    return late


def fill(path, data, *, late: bool, random_cuts: bool = False, seed: int = 0):
    """A store fed ``data`` hour by hour (or in random slices), one flush each; with ``late``,
    some samples are held back and sent last.  Returns it and the number of update() calls."""
    store = open_store(path)
    R = store._rollups
    updates = []
    real = R.update
    R.update = lambda *a: (updates.append(1), real(*a))[1]
    held = {s: late_sample_mask(t, seed) if late else np.zeros(len(t), bool) for s, (t, _) in data.items()}
    rng = np.random.default_rng(seed)
    t_all = data[POWER][0]
    edges = np.sort(rng.choice(t_all[1:], 9, replace=False)) if random_cuts else [D0 + HOUR]
    for lo, hi in zip([D0, *edges], [*edges, D0 + 2 * HOUR + 1]):
        for s, (t, v) in data.items():
            pick = (t >= lo) & (t < hi) & ~held[s]
            store.handle(one(s, t[pick], v[pick]))
        store.flush()
    if late:
        for s, (t, v) in data.items():
            store.handle(one(s, t[held[s]], v[held[s]]))
        store.flush()
    return store, len(updates)


def cells(store, level: str) -> dict:
    R = store._rollups
    kids = np.asarray([R.kid(s.key) for s in ALL], np.int64)
    got = R.read(level, kids, D0, D0 + LEVELS["1d"])
    order = np.lexsort((got["b"], [R.keys[k] == ENERGY.key for k in got["kid"].tolist()]))
    return {c: a[order] for c, a in got.items() if c != "kid"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_update_and_append_give_bit_identical_cells_with_late_samples(tmp_path, seed):
    data = trace(seed)
    appended, n_a = fill(tmp_path / "a", data, late=False, seed=seed)
    updated, n_u = fill(tmp_path / "u", data, late=True, seed=seed)
    assert n_a == 0 and n_u >= 1  # the paths under test were taken
    for level in LEVELS:
        a, u = cells(appended, level), cells(updated, level)
        assert len(a["b"]) == len(u["b"]) > 0, level
        for c, col in a.items():
            got, want = u[c], col
            if got.dtype.kind == "f":
                got, want = bits(got), bits(want)
            assert got.tolist() == want.tolist(), (level, c)
    appended.close()
    updated.close()


def test_with_flushes_that_cut_hours_the_exact_columns_agree_and_the_sums_to_rounding(tmp_path):
    """Sums folded flush by flush add the same terms in another order: equal up to rounding."""
    data = trace(3)
    appended, n_a = fill(tmp_path / "a", data, late=False, random_cuts=True, seed=3)
    updated, n_u = fill(tmp_path / "u", data, late=True, random_cuts=True, seed=3)
    assert n_a == 0 and n_u >= 1
    for level in LEVELS:
        a, u = cells(appended, level), cells(updated, level)
        for c in EXACT:
            assert u[c].tolist() == a[c].tolist(), (level, c)
        for c in ("sum", "acc", "gap_acc"):
            assert np.allclose(u[c], a[c], rtol=1e-12, atol=1e-9), (level, c)
    appended.close()
    updated.close()
