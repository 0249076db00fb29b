"""Tests of wattsight.timeseries: buckets against a naive reference, and nice steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wattsight.errors import QueryError, SampleError
from wattsight.timeseries import NICE_STEPS_MS, buckets, step_for

EPOCH = 1_700_000_000_000


def naive_buckets(t, v, start, end, step):
    """One Python loop, one dict: the obvious way, to check the vectorised one against."""
    groups: dict[int, list[float]] = {}
    for ti, vi in zip(t.tolist(), v.tolist()):
        if start <= ti < end and math.isfinite(vi):
            groups.setdefault(start + (ti - start) // step * step, []).append(vi)
    keys = sorted(groups)
    return {
        "t": keys,
        "min": [min(groups[k]) for k in keys],
        "max": [max(groups[k]) for k in keys],
        "avg": [sum(groups[k]) / len(groups[k]) for k in keys],
        "last": [groups[k][-1] for k in keys],
        "count": [len(groups[k]) for k in keys],
    }


@pytest.mark.parametrize("seed", range(30))
def test_buckets_match_naive_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    t = EPOCH + np.sort(rng.integers(0, 60_000, size=n))  # sorted, with duplicates
    v = rng.normal(100, 30, size=n)
    v[rng.random(n) < 0.05] = np.nan
    start, end = sorted(int(x) for x in EPOCH + rng.integers(-5_000, 65_000, size=2))
    step = int(rng.choice([1, 7, 100, 1_000, 4_999, 20_000, 100_000]))
    got = buckets(t, v, start, end, step)
    ref = naive_buckets(t, v, start, end, step)
    assert set(got) == {"t", "min", "max", "avg", "last", "count"}
    assert got["t"].dtype == np.int64 and got["count"].dtype == np.int64
    assert got["t"].tolist() == ref["t"]
    assert got["count"].tolist() == ref["count"]
    for key in ("min", "max", "last"):
        assert got[key].tolist() == ref[key]
    np.testing.assert_allclose(got["avg"], ref["avg"], rtol=1e-12)


def test_empty_buckets_are_gaps_not_zeros():
    t = np.array([0, 100, 250, 950, 960])
    v = np.array([1.0, 3.0, 5.0, 7.0, 2.0])
    b = buckets(t, v, 0, 1_000, 100)
    assert b["t"].tolist() == [0, 100, 200, 900]
    assert b["count"].tolist() == [1, 1, 1, 2]
    assert b["min"].tolist() == [1.0, 3.0, 5.0, 2.0]
    assert b["max"].tolist() == [1.0, 3.0, 5.0, 7.0]
    assert b["avg"].tolist() == [1.0, 3.0, 5.0, 4.5]
    assert b["last"].tolist() == [1.0, 3.0, 5.0, 2.0]


def test_buckets_start_at_range_start_and_exclude_end():
    t = np.array([5, 10, 15, 20])
    b = buckets(t, np.array([1.0, 2.0, 3.0, 4.0]), 10, 20, 10)
    assert b["t"].tolist() == [10] and b["count"].tolist() == [2]  # t=5 before, t=20 is the end


def test_buckets_of_nothing():
    for t, v, start, end in [([], [], 0, 100), ([500], [1.0], 0, 100), ([1, 2], [1.0, 2.0], 50, 50)]:
        b = buckets(t, v, start, end, 10)
        assert all(len(a) == 0 for a in b.values())
        assert b["t"].dtype == np.int64


def test_buckets_bad_input():
    with pytest.raises(QueryError):
        buckets([1], [1.0], 0, 10, 0)
    with pytest.raises(QueryError):
        buckets([1], [1.0], 10, 0, 1)
    with pytest.raises(SampleError):
        buckets([2, 1], [1.0, 1.0], 0, 10, 1)
    with pytest.raises(SampleError):
        buckets([1, 2], [1.0], 0, 10, 1)


def test_buckets_of_a_big_series_respect_step_for():
    n = 500_000
    t = EPOCH + np.arange(n, dtype=np.int64) * 20
    v = np.arange(n, dtype=np.float64)
    start, end = int(t[0]), int(t[-1]) + 1
    step = step_for(start, end, 1_000)
    b = buckets(t, v, start, end, step)
    assert len(b["t"]) <= 1_000
    assert int(b["count"].sum()) == n
    assert b["last"][-1] == n - 1


# -- step_for --------------------------------------------------------------------------------


def test_nice_steps_are_ascending_and_as_listed():
    assert list(NICE_STEPS_MS) == sorted(set(NICE_STEPS_MS))
    for step in (1, 10, 20, 50, 100, 200, 500, 1_000, 15_000, 60_000, 3 * 3_600_000, 86_400_000):
        assert step in NICE_STEPS_MS


@pytest.mark.parametrize(
    "span,max_points,expected",
    [
        (0, 10, 1),
        (10, 10, 1),
        (11, 10, 2),
        (1_000, 10, 100),
        (1_001, 10, 200),
        (3_600_000, 100, 60_000),  # one hour in 100 points: a minute
        (3_600_000, 1_000, 5_000),  # ... in 1000 points: 5 s (3.6 s is not nice)
        (86_400_000, 10, 3 * 3_600_000),  # one day in 10 points: 3 h
        (30 * 86_400_000, 10, 7 * 86_400_000),
        (365 * 86_400_000, 10, 6 * 7 * 86_400_000),  # beyond the table: whole weeks
    ],
)
def test_step_for_known_cases(span, max_points, expected):
    assert step_for(EPOCH, EPOCH + span, max_points) == expected


@pytest.mark.parametrize("seed", range(10))
def test_step_for_respects_the_cap_and_is_the_smallest(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        span = int(10 ** rng.uniform(0, 11))  # 1 ms .. ~3 years
        max_points = int(rng.integers(1, 20_000))
        step = step_for(EPOCH, EPOCH + span, max_points)
        assert span / step <= max_points
        assert math.ceil(span / step) <= max_points  # the number of buckets, too
        smaller = [s for s in NICE_STEPS_MS if s < step]
        if smaller and step in NICE_STEPS_MS:
            assert span / smaller[-1] > max_points
        elif step not in NICE_STEPS_MS:  # whole weeks: one week less would break the cap
            assert step % (7 * 86_400_000) == 0
            assert span / (step - 7 * 86_400_000 or 1) > max_points


def test_step_for_bad_input():
    with pytest.raises(QueryError):
        step_for(0, 100, 0)
    with pytest.raises(QueryError):
        step_for(100, 0, 10)
