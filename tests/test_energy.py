"""Tests of wattsight.energy: integration, gaps, coverage, counters and wraps."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from wattsight.energy import (
    Energy,
    bits_range,
    counter_increase,
    gap_limit_ms,
    integrate,
    rates,
    wrap_deltas,
)
from wattsight.errors import QueryError, SampleError

EPOCH = 1_700_000_000_000  # a realistic ms timestamp, to catch precision loss


# -- exact references, written differently from the code under test -----------------------


def exact_integral(t, w, start, end, max_gap):
    """Joules of the piecewise-linear curve over [start, end], via antiderivatives, exactly."""
    total = Fraction(0)
    for t0, t1, w0, w1 in zip(t[:-1], t[1:], w[:-1], w[1:]):
        t0, t1 = int(t0), int(t1)
        if t1 == t0 or t1 - t0 > max_gap:
            continue
        slope = (Fraction(w1) - Fraction(w0)) / (t1 - t0)

        def prim(x):  # antiderivative of w0 + slope * (x - t0), zero at t0
            return Fraction(w0) * (x - t0) + slope * Fraction((x - t0) ** 2, 2)

        lo, hi = max(t0, start), min(t1, end)
        if hi > lo:
            total += prim(hi) - prim(lo)
    return total / 1000


def exact_covered(t, start, end, max_gap):
    """Milliseconds of [start, end] inside bridged intervals, one interval at a time."""
    covered = 0
    for t0, t1 in zip(t[:-1], t[1:]):
        t0, t1 = int(t0), int(t1)
        if 0 < t1 - t0 <= max_gap:
            covered += max(0, min(t1, end) - max(t0, start))
    return covered


def random_curve(rng, n, dup_rate=0.1, spread=2_000):
    steps = rng.integers(1, spread, size=n - 1)
    steps[rng.random(n - 1) < dup_rate] = 0  # some duplicate times
    t = EPOCH + np.concatenate(([0], np.cumsum(steps)))
    w = rng.uniform(0, 500, size=n)
    return t.astype(np.int64), w


# -- Energy ----------------------------------------------------------------------------------


def test_energy_properties_and_sum():
    e = Energy(7.2e6, 500, 1_000)
    assert e.kwh == pytest.approx(2.0)
    assert e.coverage == 0.5
    assert Energy.zero(1_000) == Energy(0.0, 0, 1_000)
    assert Energy.zero(0).coverage == 0.0
    total = e + Energy(3.6e6, 1_000, 1_000)
    assert total == Energy(10.8e6, 1_500, 2_000)
    assert total.coverage == 0.75
    assert sum([e, e, e]) == Energy(3 * 7.2e6, 1_500, 3_000)
    with pytest.raises(TypeError):
        e + 1.0
    with pytest.raises(AttributeError):
        e.joules = 1.0  # frozen


# -- integrate -------------------------------------------------------------------------------


def test_constant_power():
    t = np.arange(0, 11_000, 1_000) + EPOCH
    e = integrate(t, np.full(len(t), 100.0), EPOCH, EPOCH + 10_000, 5_000)
    assert e.joules == pytest.approx(1_000.0, rel=1e-15)
    assert (e.covered_ms, e.range_ms, e.coverage) == (10_000, 10_000, 1.0)


def test_ramp_clipped_inside_one_interval():
    # 0 W at t=0 rising to 100 W at t=10 s; between 2 s and 5 s that is a trapezoid from
    # 20 W to 50 W over 3 s: 105 J.
    e = integrate([0, 10_000], [0.0, 100.0], 2_000, 5_000, 10_000)
    assert e.joules == pytest.approx(105.0, rel=1e-15)
    assert e.covered_ms == 3_000 and e.coverage == 1.0


@pytest.mark.parametrize("seed", range(20))
def test_piecewise_linear_is_exact_on_any_range(seed):
    rng = np.random.default_rng(seed)
    t, w = random_curve(rng, int(rng.integers(2, 60)))
    max_gap = int(rng.integers(500, 2_500))
    for _ in range(10):
        start, end = sorted(int(x) for x in rng.integers(t[0] - 3_000, t[-1] + 3_000, size=2))
        e = integrate(t, w, start, end, max_gap)
        ref = exact_integral(t, w, start, end, max_gap)
        assert e.joules == pytest.approx(float(ref), rel=1e-12, abs=1e-9)
        assert e.covered_ms == exact_covered(t, start, end, max_gap)
        assert e.range_ms == end - start
        assert 0.0 <= e.coverage <= 1.0


@pytest.mark.parametrize("seed", range(5))
def test_adjacent_ranges_add_up(seed):
    rng = np.random.default_rng(100 + seed)
    t, w = random_curve(rng, 200)
    a, b, c = sorted(int(x) for x in rng.integers(t[0], t[-1], size=3))
    whole = integrate(t, w, a, c, 1_500)
    parts = integrate(t, w, a, b, 1_500) + integrate(t, w, b, c, 1_500)
    assert parts.joules == pytest.approx(whole.joules, rel=1e-12, abs=1e-9)
    assert (parts.covered_ms, parts.range_ms) == (whole.covered_ms, whole.range_ms)


def test_gaps_are_not_bridged():
    t = np.array([0, 1_000, 2_000, 10_000, 11_000]) + EPOCH
    w = np.full(5, 60.0)
    e = integrate(t, w, EPOCH, EPOCH + 11_000, 5_000)
    assert e.joules == pytest.approx(60.0 * 3)  # only the three 1 s intervals
    assert e.covered_ms == 3_000 and e.range_ms == 11_000
    assert e.coverage == pytest.approx(3 / 11)


def test_gap_limit_is_inclusive():
    e = integrate([0, 5_000], [10.0, 10.0], 0, 5_000, 5_000)
    assert e.joules == pytest.approx(50.0) and e.coverage == 1.0
    e = integrate([0, 5_001], [10.0, 10.0], 0, 5_001, 5_000)
    assert e == Energy(0.0, 0, 5_001)


def test_range_beyond_the_data_lowers_coverage():
    e = integrate([1_000, 3_000], [10.0, 10.0], 0, 4_000, 5_000)
    assert e.joules == pytest.approx(20.0)
    assert (e.covered_ms, e.range_ms, e.coverage) == (2_000, 4_000, 0.5)
    assert integrate([1_000, 3_000], [10.0, 10.0], 5_000, 9_000, 5_000) == Energy(0.0, 0, 4_000)


def test_duplicates_add_nothing_by_themselves():
    # 0 -> 10 W over the first second (5 J), a jump to 20 W at 1 s, then 20 W (20 J).
    t = [0, 1_000, 1_000, 2_000]
    e = integrate(t, [0.0, 10.0, 20.0, 20.0], 0, 2_000, 5_000)
    assert e.joules == pytest.approx(25.0)
    assert e.covered_ms == 2_000
    assert integrate([5, 5, 5], [1.0, 2.0, 3.0], 0, 10, 100) == Energy(0.0, 0, 10)


@pytest.mark.parametrize("t,w", [([], []), ([1_000], [50.0]), (np.zeros(0, np.int64), np.zeros(0))])
def test_fewer_than_two_samples(t, w):
    e = integrate(t, w, 0, 2_000, 5_000)
    assert e == Energy(0.0, 0, 2_000) and e.coverage == 0.0


def test_empty_range():
    e = integrate([0, 1_000], [1.0, 1.0], 500, 500, 5_000)
    assert e == Energy(0.0, 0, 0) and e.coverage == 0.0


def test_nan_samples_are_missing_readings():
    t = [0, 1_000, 2_000, 3_000]
    w = [10.0, math.nan, 10.0, 10.0]
    # NaN dropped: 0 -> 2000 is one 2 s interval, bridged with max_gap 5 s ...
    assert integrate(t, w, 0, 3_000, 5_000).joules == pytest.approx(30.0)
    # ... and a gap with max_gap 1.5 s.
    e = integrate(t, w, 0, 3_000, 1_500)
    assert e.joules == pytest.approx(10.0) and e.covered_ms == 1_000


def test_bad_input():
    with pytest.raises(SampleError):
        integrate([0, 2, 1], [1.0, 1.0, 1.0], 0, 2, 10)
    with pytest.raises(SampleError):
        integrate([0, 1], [1.0], 0, 2, 10)
    with pytest.raises(QueryError):
        integrate([0, 1], [1.0, 1.0], 5, 2, 10)


def test_large_series_is_fast_and_exact():
    n = 1_000_000
    t = EPOCH + np.arange(n, dtype=np.int64) * 20  # 50 Hz for 5.5 hours
    w = 200.0 + 100.0 * (np.arange(n) % 2)  # zig-zag 200/300 W: mean 250 W
    e = integrate(t, w, int(t[0]), int(t[-1]), 100)
    assert e.joules == pytest.approx(250.0 * (n - 1) * 0.020, rel=1e-12)
    assert e.coverage == 1.0


# -- wrap_deltas and bits_range --------------------------------------------------------------


def test_plain_deltas():
    assert wrap_deltas([1.0, 4.0, 4.0, 10.0]).tolist() == [3.0, 0.0, 6.0]
    assert wrap_deltas([]).shape == (0,)
    assert wrap_deltas([5.0]).shape == (0,)


def test_reset_without_max_range():
    # Prometheus convention: the counter restarted at zero and is now at v[i+1].
    assert wrap_deltas([100.0, 150.0, 20.0, 30.0]).tolist() == [50.0, 20.0, 10.0]


def test_wrap_32_bits():
    top = bits_range(32)
    assert top == 2**32
    assert wrap_deltas([top - 10, 5, 20], top).tolist() == [15.0, 15.0]


def test_wrap_64_bits_keeps_float_precision():
    top = bits_range(64)
    # float64 spacing is 2048 just below 2**64 and 4096 just above: adding 2**64 to a small
    # reading first would round it away, so the wrap must be (top - v[i]) + v[i+1].
    v = np.array([float(top) - 3 * 2048.0, 1_000.0, 3_000.0])
    assert wrap_deltas(v, top).tolist() == [6_144.0 + 1_000.0, 2_000.0]


def test_wrap_arbitrary_meter_range():
    # RAPL: max_energy_range_uj = 262143328850 uJ, values in joules.
    top = 262_143.328850
    d = wrap_deltas([261_900.0, 262_100.0, 56.671150], top)
    assert d[0] == pytest.approx(200.0)
    assert d[1] == pytest.approx(100.0, rel=1e-12)


def test_bits_range_refuses_other_widths():
    for bits in (0, 16, 48, 128):
        with pytest.raises(ValueError):
            bits_range(bits)


# -- counter_increase ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_counter_increase_of_a_linear_counter_is_exact(seed):
    rng = np.random.default_rng(200 + seed)
    rate = 0.25  # J per ms = 250 W
    t = EPOCH + np.cumsum(rng.integers(1, 1_000, size=50))
    v = rate * (t - t[0]).astype(float)
    for _ in range(10):
        start, end = sorted(int(x) for x in rng.integers(t[0], t[-1] + 1, size=2))
        e = counter_increase(t, v, start, end, 1_000)
        assert e.joules == pytest.approx(rate * (end - start), rel=1e-9, abs=1e-9)
        assert e.covered_ms == end - start


def test_counter_increase_across_a_wrap():
    top = bits_range(32)
    t = [0, 1_000, 2_000, 3_000]
    v = [top - 1_500, top - 500, 500, 1_500]
    e = counter_increase(t, v, 0, 3_000, 2_000, max_range=top)
    assert e.joules == 3_000.0 and e.coverage == 1.0
    half = counter_increase(t, v, 1_500, 2_500, 2_000, max_range=top)
    assert half.joules == pytest.approx(1_000.0)  # half of two 1000-unit intervals


def test_counter_increase_after_reset():
    e = counter_increase([0, 1_000, 2_000], [500.0, 900.0, 100.0], 0, 2_000, 5_000)
    assert e.joules == 500.0  # 400, then a reset and 100 since


def test_counter_gap_is_not_bridged():
    t = [0, 1_000, 9_000, 10_000]
    v = [0.0, 10.0, 90.0, 100.0]
    e = counter_increase(t, v, 0, 10_000, 5_000)
    assert e.joules == 20.0  # the 80 units of the 8 s gap are not counted
    assert (e.covered_ms, e.coverage) == (2_000, 0.2)


def test_counter_duplicates_lose_nothing():
    t = [0, 1_000, 1_000, 2_000]
    v = [0.0, 10.0, 14.0, 20.0]
    assert counter_increase(t, v, 0, 2_000, 5_000).joules == pytest.approx(20.0)
    # the 4 units read twice at t=1000 belong to the interval that ends there
    assert counter_increase(t, v, 0, 1_000, 5_000).joules == pytest.approx(14.0)
    assert counter_increase(t, v, 1_000, 2_000, 5_000).joules == pytest.approx(6.0)
    assert counter_increase([3, 3], [1.0, 2.0], 0, 10, 5) == Energy(0.0, 0, 10)


def test_counter_duplicate_wrap():
    top = 1_000.0
    t = [0, 1_000, 1_000, 2_000]
    v = [0.0, 990.0, 10.0, 30.0]  # wrapped between the two readings at t=1000
    assert counter_increase(t, v, 0, 2_000, 5_000, max_range=top).joules == pytest.approx(1_030.0)


@pytest.mark.parametrize("seed", range(5))
def test_counter_full_range_equals_sum_of_deltas(seed):
    rng = np.random.default_rng(300 + seed)
    t, _ = random_curve(rng, 100, dup_rate=0.1, spread=500)
    v = np.cumsum(rng.uniform(0, 100, size=len(t))) % 10_000.0
    e = counter_increase(t, v, int(t[0]), int(t[-1]), 10_000, max_range=10_000.0)
    deltas = wrap_deltas(v, 10_000.0)
    # every increase counts, except those read at the very first time (no interval ends there)
    assert e.joules == pytest.approx(deltas[t[1:] > t[0]].sum(), rel=1e-12)
    assert e.coverage == 1.0


def test_counter_few_samples_and_nan():
    assert counter_increase([], [], 0, 10, 5) == Energy.zero(10)
    assert counter_increase([1], [1.0], 0, 10, 5) == Energy.zero(10)
    e = counter_increase([0, 1_000, 2_000], [0.0, math.nan, 20.0], 0, 2_000, 5_000)
    assert e.joules == 20.0 and e.coverage == 1.0


# -- rates and gap_limit_ms ------------------------------------------------------------------


def test_rates_of_an_energy_counter_are_watts():
    t, r = rates([0, 1_000, 3_000, 3_000, 4_000], [0.0, 100.0, 500.0, 500.0, 550.0])
    assert t.tolist() == [1_000, 3_000, 3_000, 4_000]
    assert r[:2].tolist() == [100.0, 200.0]
    assert math.isnan(r[2])  # zero-length interval
    assert r[3] == 50.0


def test_rates_with_wrap_and_reset():
    top = bits_range(32)
    _, r = rates([0, 2_000], [top - 1_000.0, 1_000.0], max_range=top)
    assert r.tolist() == [1_000.0]
    _, r = rates([0, 2_000], [5_000.0, 1_000.0])
    assert r.tolist() == [500.0]


def test_rates_of_short_input():
    t, r = rates([7], [1.0])
    assert len(t) == 0 and len(r) == 0


@pytest.mark.parametrize(
    "period,max_gap,expected",
    [(None, 5.0, 5_000), (1.0, 5.0, 5_000), (2.0, 5.0, 6_000), (0.1, 0.2, 300), (60, 5, 180_000)],
)
def test_gap_limit_ms(period, max_gap, expected):
    assert gap_limit_ms(period, max_gap) == expected
