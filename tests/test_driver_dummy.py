"""The dummy driver and its patterns: determinism, exact energies, counter wraps, metadata."""

from __future__ import annotations

import sys
import tomllib

import numpy as np
import pydantic
import pytest

from wattsight.drivers.dummy import DummyConfig, DummyDriver
from wattsight.drivers.patterns import ConstantPattern, SquarePattern, WalkPattern, probe_keys, quantise

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z in ms


class Clock:
    """A clock the test moves by hand (int ms)."""

    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def driver(clock: Clock | None = None, site: str = "lyon", **settings) -> DummyDriver:
    if "probes" not in settings:
        settings.setdefault("count", 4)
    return DummyDriver(DummyConfig(**settings), site=site, clock=clock or Clock())


def values(batch, metric: str) -> np.ndarray:
    """(reads... , probes) values of one metric of a batch, in series order."""
    keep = np.array([s.metric == metric for s in batch.series])[batch.sidx]
    return batch.v[keep]


def patterns(n: int = 6, seed: int = 3):
    keys = probe_keys([f"lyon.node-{i}" for i in range(n)], seed)
    return {
        "constant": ConstantPattern(n, 123.456),
        "square": SquarePattern(keys, min=110.0, max=340.0, high=20.0, low=25.0, ramp=4.0),
        "steps": SquarePattern(keys, min=110.0, max=340.0, high=7.0, low=3.0, ramp=0.0),
        "walk": WalkPattern(keys, min=90.0, max=260.0, step=12.0, interval=1.0),
    }


# -- patterns -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["constant", "square", "steps", "walk"])
def test_energy_is_the_integral_of_the_curve(name):
    p = patterns()[name]
    t = np.arange(T0 - 200_000, T0 + 400_001, 1)  # 1 ms grid, across eras of the walk
    exact = p.energy(t[0], t[-1])
    numeric = np.trapezoid(p.curve_at(t), t / 1000.0, axis=0)
    tol = 1e-3 if name == "steps" else 1e-9  # a step is a jump inside one 1 ms grid cell
    np.testing.assert_allclose(numeric, exact, rtol=tol)


@pytest.mark.parametrize("name", ["constant", "square", "walk"])
def test_quantised_values_keep_the_energy_within_a_hundredth_of_a_percent(name):
    p = patterns()[name]
    t = np.arange(T0, T0 + 600_001, 10)
    v = p.value_at(t)
    np.testing.assert_allclose(v, quantise(v, 0.1))
    assert np.abs(v - p.curve_at(t)).max() <= 0.05 + 1e-9
    numeric = np.trapezoid(v, t / 1000.0, axis=0)
    np.testing.assert_allclose(numeric, p.energy(t[0], t[-1]), rtol=1e-4)


@pytest.mark.parametrize("name", ["constant", "square", "walk"])
def test_patterns_are_vectorised_over_times_and_probes(name):
    p = patterns()[name]
    t = np.array([[T0, T0 + 1500], [T0 + 7_000, T0 + 60_123]])
    grid = p.value_at(t)
    assert grid.shape == (2, 2, 6)
    np.testing.assert_array_equal(grid[1, 1], p.value_at(T0 + 60_123))
    assert p.energy(T0, t).shape == (2, 2, 6)
    np.testing.assert_allclose(p.energy(T0, T0 + 60_123), p.energy(T0, t)[1, 1])


def test_square_probes_are_phase_shifted_and_piecewise_linear():
    p = patterns()["square"]
    assert len(np.unique(p.phase_ms)) == 6
    t = np.arange(T0, T0 + 49_000, 1000)
    v = p.curve_at(t)
    assert v.min() == 110.0 and v.max() == 340.0
    assert np.abs(np.diff(v, axis=0)).max() <= (340.0 - 110.0) / 4.0 + 1e-9  # the ramp's slope
    cycle = p.cycle_ms
    np.testing.assert_array_equal(p.curve_at(T0 + 3 * cycle + 1234), p.curve_at(T0 + 1234))
    np.testing.assert_allclose(p.energy(T0, T0 + cycle), p.cycle_energy)


def test_walk_stays_in_bounds_and_moves_about_one_step_per_interval_at_most():
    p = patterns()["walk"]
    grid = p.curve_at(T0 + 1000 * np.arange(-3000, 3000))  # across several eras
    assert grid.min() >= 90.0 and grid.max() <= 260.0
    moves = np.abs(np.diff(grid, axis=0))
    assert moves.max() <= 12.0 + (260.0 - 90.0) / WalkPattern.ERA + 1e-9
    assert moves.max() > 6.0 and np.median(moves) > 2.0


def test_walk_is_a_function_of_time_only():
    """Two processes started at different times see the same curve (the demo relies on it)."""
    a, b = patterns()["walk"], patterns()["walk"]
    a.value_at(T0 - 7_777_777)
    t = T0 + np.arange(0, 5_000_000, 997)
    np.testing.assert_array_equal(a.value_at(t), b.value_at(t))
    far = T0 + 40 * 86_400_000
    np.testing.assert_allclose(a.energy(far, far + 60_000), b.energy(far, far + 60_000), rtol=1e-12)


def test_walk_does_not_depend_on_the_order_of_calls():
    far, near = T0 + 3_000_000, T0 + 1_500
    a = patterns()["walk"]
    first = a.value_at(far), a.value_at(near), a.energy(near, far)
    b = patterns()["walk"]
    b.value_at(T0 - 5_000_000)  # another era first
    second = b.value_at(near), b.value_at(far), b.energy(near, far)
    np.testing.assert_array_equal(first[0], second[1])
    np.testing.assert_array_equal(first[1], second[0])
    np.testing.assert_allclose(first[2], second[2], rtol=1e-12)


def test_walk_energies_add_up_over_long_spans_in_any_order():
    p = patterns()["walk"]
    day = 86_400_000
    a, b, c = T0 + 3 * day + 1, T0 - 2 * day + 77, T0 + 5 * day + 500
    ab, bc, ac = p.energy(a, b), p.energy(b, c), p.energy(a, c)
    np.testing.assert_allclose(ab + bc, ac, rtol=1e-9)
    fresh = patterns()["walk"]
    np.testing.assert_allclose(fresh.energy(T0 + 3 * day, T0 + 3 * day + 60_000),
                               p.energy(T0 + 3 * day, T0 + 3 * day + 60_000), rtol=1e-9)
    assert len(p._chain) <= 7 * day // 1000 // WalkPattern.ERA // 64 + 3  # milestones, not every era


def test_walk_energy_is_the_trapezoid_of_its_grid_values():
    p = patterns()["walk"]
    ticks = T0 + 1000 * np.arange(0, 601)
    np.testing.assert_allclose(np.trapezoid(p.curve_at(ticks), dx=1.0, axis=0), p.energy(T0, ticks[-1]))


def test_a_probe_keeps_its_curve_when_others_are_added():
    few = SquarePattern(probe_keys(["a.x", "a.y"], 1), min=0, max=10, high=5, low=5, ramp=1)
    more = SquarePattern(probe_keys(["a.w", "a.x", "a.y"], 1), min=0, max=10, high=5, low=5, ramp=1)
    np.testing.assert_array_equal(few.phase_ms, more.phase_ms[1:])


# -- the driver -----------------------------------------------------------------------------
def test_sample_validates():
    section = tomllib.loads(DummyDriver.SAMPLE)["drivers"]["dummy"]
    cfg = DummyDriver.Config.model_validate(section)
    assert cfg.count == 8 and cfg.metrics == ["power", "energy", "network"]
    assert len(DummyDriver(cfg, site="lyon", clock=Clock()).read()) == 8 * 4


@pytest.mark.parametrize("settings, words", [
    ({"count": 2, "colour": "red"}, "colour"),
    ({"count": 2, "probes": ["a"]}, "not both"),
    ({}, "neither"),
    ({"probes": ["bad name"]}, "probe id"),
    ({"probes": ["n1", "n1"]}, "twice"),
    ({"count": 2, "min": 300, "max": 100}, "min"),
    ({"count": 2, "period": 0.1, "burst": 1000}, "burst"),
    ({"count": 2, "counter_bits": 16}, "counter_bits"),
    ({"count": 2, "metrics": ["power", "temperature"]}, "metrics"),
])
def test_bad_settings_are_refused(settings, words):
    with pytest.raises(pydantic.ValidationError, match=words):
        DummyConfig(**settings)


def test_probes_metadata_says_simulated():
    d = driver(probes=["node-1", "paris.pdu-3"], period=2.0, pattern="constant", value=150)
    probes = d.probes()
    assert [p.id for p in probes] == ["lyon.node-1", "paris.pdu-3"]
    for p in probes:
        assert p.period == 2.0 and p.driver == "dummy"
        assert p.description.startswith("simulated") and "150 W" in p.description
    assert driver(count=3, prefix="srv").ids == ["lyon.srv1", "lyon.srv2", "lyon.srv3"]


def test_series_are_modelled_with_si_units():
    b = driver(metrics=["power", "energy", "network"]).read()
    assert {(s.metric, s.unit, s.kind, s.provenance) for s in b.series} == {
        ("power", "W", "gauge", "modelled"), ("energy", "J", "counter", "modelled"),
        ("network_in", "B", "counter:4294967296", "modelled"), ("network_out", "B", "counter:4294967296", "modelled")}
    assert len(b) == 4 * 4
    b64 = driver(metrics=["network"], counter_bits=64).read()
    assert {s.kind for s in b64.series} == {"counter:18446744073709551616"}  # wraps are declared, not resets


def test_same_seed_same_values_other_seed_other_values():
    def run(seed, pattern):
        clock = Clock()
        d = driver(clock, seed=seed, pattern=pattern, metrics=["power", "network"])
        out = []
        for _ in range(30):
            clock.t += 1000
            out.append(d.read().v)
        return np.concatenate(out)

    for pattern in ("walk", "square"):
        np.testing.assert_array_equal(run(7, pattern), run(7, pattern))
        assert not np.array_equal(run(7, pattern), run(8, pattern))


def test_a_read_returns_the_pattern_value_at_read_time():
    clock = Clock()
    d = driver(clock, pattern="square", metrics=["power", "energy"])
    clock.t += 12_345
    b = d.read()
    assert set(b.t.tolist()) == {clock.t}
    np.testing.assert_array_equal(values(b, "power"), d.power.value_at(clock.t))
    np.testing.assert_allclose(values(b, "energy"), d.power.energy(d.origin_ms, clock.t))


@pytest.mark.parametrize("pattern", ["walk", "square", "constant"])
def test_energy_counter_agrees_with_the_stored_power(pattern):
    """What a store would integrate from the power readings matches the energy counter."""
    clock = Clock()
    d = driver(clock, pattern=pattern, metrics=["power", "energy"], burst=100, ramp=3.0)
    t, w, e = [], [], []
    for _ in range(600):
        clock.t += 1000
        b = d.read()
        t.append(np.unique(b.t))
        w.append(values(b, "power").reshape(-1, 4))
        e.append(values(b, "energy").reshape(-1, 4))
    t, w, e = np.concatenate(t), np.concatenate(w), np.concatenate(e)
    assert np.all(np.diff(t) == 10)
    np.testing.assert_allclose(np.trapezoid(w, t / 1000.0, axis=0), e[-1] - e[0], rtol=1e-4)
    assert np.all(np.diff(e, axis=0) >= 0)


def test_network_counters_wrap_at_32_bits():
    clock = Clock()
    rate = 2e9  # B/s: a 32-bit counter wraps about every 2 s
    d = driver(clock, metrics=["network"], network_rate=rate, network_noise=0.3)
    reads = []
    for _ in range(40):
        clock.t += 500
        reads.append(values(d.read(), "network_in").reshape(4))
    c = np.array(reads)
    assert c.min() >= 0 and c.max() < 2**32
    assert np.all(c == np.floor(c))
    assert (np.diff(c, axis=0) < 0).sum() >= 4 * 8  # wrapped, several times per probe
    grown = np.mod(np.diff(c, axis=0), 2**32)  # what a wrap-aware consumer computes
    assert np.all(grown >= 0.5 * rate * (1 - 0.3) - 1)  # 0.5 s at the lowest rate
    assert np.all(grown <= 0.5 * rate * (1 + 0.3) + 1)


def test_a_32_bit_counter_is_the_64_bit_one_modulo_2_to_the_32():
    c32, c64 = Clock(), Clock()
    d32 = driver(c32, metrics=["network"], network_rate=3e9)
    d64 = driver(c64, metrics=["network"], network_rate=3e9, counter_bits=64)
    for _ in range(20):
        c32.t += 1000
        c64.t += 1000
        a, b = d32.read().v, d64.read().v
        np.testing.assert_array_equal(a, np.mod(b, 2**32))
    assert b.max() > 2**34


def test_network_counters_on_64_bits_do_not_wrap_soon():
    clock = Clock()
    d = driver(clock, metrics=["network"], network_rate=2e9, counter_bits=64)
    first = d.read().v
    clock.t += 60_000
    later = d.read().v
    assert np.all(later > first) and later.max() > 2**32


def test_burst_returns_evenly_spaced_samples_ending_now():
    clock = Clock()
    d = driver(clock, count=3, burst=4, period=2.0)
    clock.t += 2000
    b = d.read()
    assert len(b) == 12
    assert np.unique(b.t).tolist() == [clock.t - 1500, clock.t - 1000, clock.t - 500, clock.t]
    for i in range(3):
        mine = b.sidx == i
        assert b.t[mine].tolist() == sorted(b.t[mine].tolist())


def calls_per_read(d: DummyDriver, clock: Clock, moves: list[int]) -> tuple[list[int], int]:
    """Python and C function calls made by each read after each clock move, and the last batch's size."""
    counts, size = [], 0
    for move in moves:
        clock.t += move
        n = 0

        def count(frame, event, arg):
            nonlocal n
            n += event in ("call", "c_call")

        before = sys.getprofile()
        sys.setprofile(count)
        try:
            size = len(d.read())
        finally:
            sys.setprofile(before)
        counts.append(n)
    return counts, size


def test_a_burst_of_100k_samples_is_cheap():
    # Counted, not timed: a vectorised read makes as many calls for 100,000 samples as for 10,
    # whereas a loop over probes or burst samples would make thousands more.
    moves = [1000, 1000, 60_000, 250]
    small_clock, big_clock = Clock(), Clock()
    small = driver(small_clock, count=10, burst=1, pattern="walk")
    big = driver(big_clock, count=1000, burst=100, pattern="walk")
    small.read(), big.read()
    small_calls, small_size = calls_per_read(small, small_clock, moves)
    big_calls, big_size = calls_per_read(big, big_clock, moves)
    assert (small_size, big_size) == (10, 100_000)
    assert big_calls == small_calls, (big_calls, small_calls)
