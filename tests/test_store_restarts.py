"""Restart points (store/restarts.py): a read from the middle of a format-3 series decodes only from
the last point before it, and gives exactly what a read from the series' first row gives."""

from __future__ import annotations

import numpy as np
import pytest
from store_contract import bits
from test_store_residual import T0, columns, write

from wattsight.consumers.store import residual, restarts


@pytest.fixture
def every(monkeypatch):
    monkeypatch.setattr(restarts, "RESTART_ROWS", 256)
    return 256


def truth(cols, s, start, end):
    t, v = cols[s]
    sel = (t >= start) & (t <= end)
    return t[sel], v[sel]


@pytest.mark.parametrize("rg", [100, 1000, 1 << 17])
def test_reads_from_restart_points_equal_the_truth_for_every_mode(tmp_path, every, rg, monkeypatch):
    n = 3000
    cols = columns(n, 7)
    seg = write(tmp_path, cols, 1, rg)
    assert seg.restart == every and len(seg.points()[0]) == int(restarts.per_series(seg.count, every).sum()) > 0
    modes = set(seg.mode.tolist())
    assert {residual.DICT, residual.PARTNER, residual.DELTA} <= modes | ({residual.DICT} if (seg.dict_n > 0).any() else set())
    decoded = []
    real_decode = residual.decode
    monkeypatch.setattr(residual, "decode", lambda r, *a, **k: decoded.append(len(r)) or real_decode(r, *a, **k))
    index = {s: i for i, s in enumerate(seg.series)}
    rng = np.random.default_rng(3)
    windows = [(T0 - 10, T0), (T0 + 2_500_000, 2**62), (0, 2**62), (T0 + 999_999, T0 + 1_000_001)]
    windows += [tuple(sorted(T0 + rng.integers(-50_000, 3_100_000, 2))) for _ in range(12)]
    for start, end in windows:
        for pick in (list(index.values()), sorted(rng.choice(len(index), 3, replace=False).tolist())):
            got = {seg.series[i]: (t, v) for i, t, v in seg.read(pick, int(start), int(end))}
            for s in (seg.series[i] for i in pick):
                t, v = truth(cols, s, start, end)
                if len(t):
                    assert np.array_equal(got[s][0], t) and np.array_equal(bits(got[s][1]), bits(v)), (s, start, end)
                else:  # a series whose span holds the window but no row in it: empty, as without points
                    assert s not in got or not len(got[s][0])
    late = [i for s, i in index.items() if s.metric in ("b_out", "g_steps", "power")]
    decoded.clear()
    seg.read(late, T0 + 2_900_000, 2**62)  # the last ~100 s of 3,000: from the last point on, partner too
    assert 0 < decoded[-1] <= 4 * 2 * every


def test_restart_points_survive_the_summary_and_older_segments_read_without_them(tmp_path, every):
    cols = columns(2000, 2)
    seg = write(tmp_path, cols, 1, 500)
    again = type(seg).open(seg.path)
    assert again.restart == every and again._points is None  # read from the summary when a read needs them
    assert all(np.array_equal(a, b) for a, b in zip(again.points(), seg.points()))
    again.restart = 0  # as a segment written before restart points: decoded from each series' start
    idx = list(range(len(seg.series)))
    for start, end in ((T0 + 700_000, T0 + 900_000), (T0 + 1_500_000, 2**62)):
        a = seg.read(idx, start, end)
        b = again.read(idx, start, end)
        assert [i for i, *_ in a] == [i for i, *_ in b]
        for (_, ta, va), (_, tb, vb) in zip(a, b):
            assert np.array_equal(ta, tb) and np.array_equal(bits(va), bits(vb))


def test_deltas_round_trip_modulo_2_64():
    count = np.array([1, 600, 0, 257, 1000])
    n = restarts.per_series(count, 256)
    rng = np.random.default_rng(1)
    values = rng.integers(-2**63, 2**63 - 1, int(n.sum()), dtype=np.int64)
    first = rng.integers(-2**63, 2**63 - 1, len(count), dtype=np.int64)
    d = restarts.deltas(values, first, count, 256)
    assert np.array_equal(restarts.undeltas(d, first, count, 256), values)
