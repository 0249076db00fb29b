"""Simulated load curves for the dummy driver: pure functions of time, with exact energies.

Every pattern describes ``n`` probes at once and answers three questions, vectorised over
probes and over times (``t_ms`` may be an int or an array of int ms since the epoch):

``curve_at(t_ms)``
    the exact, piecewise-linear curve in W: shape ``(n,)`` for a scalar time,
    ``t.shape + (n,)`` for an array;
``value_at(t_ms)``
    what the simulated meter shows: the curve quantised to ``resolution`` W (0.1 W by
    default, like a PDU);
``energy(t0_ms, t1_ms)``
    the exact integral of ``curve_at`` from ``t0`` to ``t1`` in J (``t0``/``t1`` broadcast).

Quantisation rounds to the nearest step, so it adds an error of at most ``resolution / 2``
to a sample and averages out over a curve; levels (the constant value, the square
pattern's min and max) are snapped to the resolution so plateaus read exactly.

Randomness is counter-based: a value depends only on the seed, the probe's name and the
tick index, never on the order of the calls (see :func:`probe_keys`).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective, well-mixing hash of uint64 words."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _uniform(x: np.ndarray) -> np.ndarray:
    """A float in [0, 1) drawn from each uint64 word (53 bits of its hash)."""
    return (_mix(x) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def probe_keys(names: Sequence[str], seed: int, stream: str = "") -> np.ndarray:
    """One uint64 random key per probe, from the seed, the probe's name and a stream name.

    Keys depend on the name, not the position, so adding a probe does not change the
    others; ``stream`` separates independent curves of one probe (power, network_in...).
    """
    salt = zlib.crc32(stream.encode()) << 32
    words = np.fromiter((salt ^ zlib.crc32(n.encode()) for n in names), np.uint64, len(names))
    return _mix(_mix(np.uint64(seed % 2**64)) ^ words)


def quantise(values: np.ndarray, resolution: float) -> np.ndarray:
    """``values`` rounded to the nearest multiple of ``resolution`` (0: unchanged)."""
    if resolution <= 0:
        return values
    return np.round(values / resolution) * resolution


def _ms(t_ms) -> np.ndarray:
    return np.asarray(t_ms, dtype=np.int64)


class Pattern:
    """Base of the patterns: quantisation on top of an exact curve."""

    n: int
    resolution: float

    def curve_at(self, t_ms) -> np.ndarray:  # pragma: no cover - contract
        raise NotImplementedError

    def energy(self, t0_ms, t1_ms) -> np.ndarray:  # pragma: no cover - contract
        raise NotImplementedError

    def value_at(self, t_ms) -> np.ndarray:
        """The simulated reading in W at ``t_ms``: the curve quantised to ``resolution``."""
        return quantise(self.curve_at(t_ms), self.resolution)


class ConstantPattern(Pattern):
    """Every probe draws ``value`` W, always."""

    def __init__(self, n: int, value: float, *, resolution: float = 0.1) -> None:
        self.n, self.resolution = n, resolution
        self.value = float(quantise(np.float64(value), resolution))

    def curve_at(self, t_ms) -> np.ndarray:
        return np.full(_ms(t_ms).shape + (self.n,), self.value)

    def energy(self, t0_ms, t1_ms) -> np.ndarray:
        dt = (_ms(t1_ms) - _ms(t0_ms)).astype(np.float64) / 1000.0
        return dt[..., None] * np.full(self.n, self.value)


class SquarePattern(Pattern):
    """Load phases: ``low`` s at ``min`` W, a ramp, ``high`` s at ``max`` W, a ramp down.

    The curve is piecewise linear (ramps of ``ramp`` s; 0 makes steps) and periodic; each
    probe is shifted by its own phase in [0, cycle), drawn from its key, so a rack does not
    move in lockstep.  Energy is exact: whole cycles plus the closed-form integral of the
    partial ones.
    """

    def __init__(self, keys: np.ndarray, *, min: float, max: float, high: float, low: float,
                 ramp: float, resolution: float = 0.1) -> None:
        self.n, self.resolution = len(keys), resolution
        self.lo, self.hi = (float(quantise(np.float64(x), resolution)) for x in (min, max))
        self.low_ms, self.high_ms, self.ramp_ms = (int(round(x * 1000)) for x in (low, high, ramp))
        self.cycle_ms = self.low_ms + self.high_ms + 2 * self.ramp_ms
        if self.cycle_ms <= 0:
            raise ValueError("square pattern: high + low + 2*ramp must be at least 1 ms")
        self.phase_ms = np.floor(_uniform(keys) * self.cycle_ms).astype(np.int64)
        L, R, H = (x / 1000.0 for x in (self.low_ms, self.ramp_ms, self.high_ms))
        self._edges = np.array([L, L + R, L + R + H, L + 2 * R + H])  # s into a cycle
        self.cycle_energy = self.lo * (L + R) + self.hi * (H + R)

    def _split(self, t_ms) -> tuple[np.ndarray, np.ndarray]:
        """(whole cycles, seconds into the cycle) per time and probe."""
        shifted = _ms(t_ms)[..., None] + self.phase_ms
        return shifted // self.cycle_ms, (shifted % self.cycle_ms) / 1000.0

    def _curve(self, u: np.ndarray) -> np.ndarray:
        e0, e1, e2, _ = self._edges
        rise = self.hi - self.lo
        slope = rise / (e1 - e0) if e1 > e0 else 0.0
        return np.select(
            [u < e0, u < e1, u < e2],
            [self.lo, self.lo + slope * (u - e0), self.hi],
            self.hi - slope * (u - e2),
        )

    def _within(self, u: np.ndarray) -> np.ndarray:
        """Joules from the start of the cycle to ``u`` seconds into it."""
        e0, e1, e2, _ = self._edges
        R, rise = e1 - e0, self.hi - self.lo
        up = self.lo * e0 + self.lo * R + rise * R / 2
        top = up + self.hi * (e2 - e1)
        w0, w1, w2 = u - e0, u - e1, u - e2
        half = rise / (2 * R) if R > 0 else 0.0
        return np.select(
            [u < e0, u < e1, u < e2],
            [self.lo * u, self.lo * u + half * w0 * w0, up + self.hi * w1],
            top + self.hi * w2 - half * w2 * w2,
        )

    def curve_at(self, t_ms) -> np.ndarray:
        return self._curve(self._split(t_ms)[1])

    def energy(self, t0_ms, t1_ms) -> np.ndarray:
        c0, u0 = self._split(t0_ms)
        c1, u1 = self._split(t1_ms)
        return (c1 - c0) * self.cycle_energy + self._within(u1) - self._within(u0)


class _LRU(OrderedDict):
    """A dict that forgets its oldest entries beyond ``size`` (caches of recomputable tables)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class WalkPattern(Pattern):
    """A random walk per probe within [min, max], on a grid of ``interval`` s since the epoch.

    At each tick every probe moves by a step drawn uniformly in [-step, +step] from its key
    and the tick's index; the walk is folded into [min, max] (a reflecting walk).  So that a
    value depends only on the seed, the probe and the tick (and not on when a driver
    started), the walk restarts every ``ERA`` ticks from a random level, and each era's walk
    is faded in linearly over the era while the previous one fades out: the curve has no
    jumps and moves at most ``step + (max - min) / ERA`` per tick.

    Between ticks the curve is the straight line between grid values, so its exact energy is
    **the trapezoid of its own grid values**.  Grid values are computed a sub-chunk of ticks
    at a time; the integral at the start of each era seen is remembered (n floats per era).
    """

    ERA = 256  # ticks; shorter eras cost less at the first read, longer ones fade more slowly

    def __init__(self, keys: np.ndarray, *, min: float, max: float, step: float, interval: float,
                 resolution: float = 0.1) -> None:
        self.n, self.resolution = len(keys), resolution
        self.keys = np.asarray(keys, np.uint64)
        self.lo, self.hi, self.step = float(min), float(max), float(step)
        self.interval_ms = int(round(interval * 1000))
        if self.interval_ms <= 0:
            raise ValueError("walk pattern: interval must be at least 1 ms")
        # Sub-chunk tables of ~256k floats (2 MB) whatever the number of probes.
        self.sub = int(2 ** np.clip(np.floor(np.log2(2**18 / (self.n or 1))), 4, 8))
        self._eras = _LRU(3)  # era -> [(free walk, J since the era's start) at each sub-chunk start]
        self._sums = _LRU(3)  # era -> sum of the era's steps
        self._tables = _LRU(3)  # sub-chunk -> (grid values, J since the era's start)
        self._chain: dict[int, np.ndarray] = {}  # era -> J from the first era asked to its start
        self._points = _LRU(4)  # t_ms -> J at that time

    # -- grid values --------------------------------------------------------------------
    def _steps(self, first: int, count: int) -> np.ndarray:
        """The steps of ticks first..first+count-1, shape (count, n)."""
        ticks = np.arange(first, first + count, dtype=np.int64).view(np.uint64)
        return (2.0 * _uniform(_mix(ticks)[:, None] ^ self.keys) - 1.0) * self.step

    def _start(self, era: int) -> np.ndarray:
        """Where era ``era``'s walk starts, per probe."""
        word = _mix(np.array([era], np.int64).view(np.uint64)) ^ np.uint64(0x5EED)
        return self.lo + (self.hi - self.lo) * _uniform(self.keys ^ word)

    def _era_sum(self, era: int) -> np.ndarray:
        """The sum of the era's steps: how far its walk (unfolded) went."""
        # Always summed the same way, so that every process gets the same bits.
        if era not in self._sums:
            first = era * self.ERA + 1
            self._sums.put(era, sum(self._steps(first + i, self.sub).sum(axis=0)
                                    for i in range(0, self.ERA, self.sub)))
        return self._sums[era]

    def _fold(self, x: np.ndarray) -> np.ndarray:
        width = self.hi - self.lo
        if width <= 0:
            return np.full_like(x, self.lo)
        y = np.mod(x - self.lo, 2 * width)
        return self.lo + width - np.abs(width - y)

    def _build(self, era: int, i: int, free0: np.ndarray, joules0: np.ndarray):
        """(grid values, J since the era's start) of sub-chunk ``i`` of ``era`` (sub+1 ticks)."""
        first = era * self.ERA + i * self.sub
        free = np.vstack([free0, free0 + np.cumsum(self._steps(first + 1, self.sub), axis=0)])
        fade = ((i * self.sub + np.arange(self.sub + 1)) / self.ERA)[:, None]
        new = self._fold(self._start(era) + free)
        old = self._fold(self._start(era - 1) + self._era_sum(era - 1) + free)
        values = fade * new + (1.0 - fade) * old
        trap = (values[1:] + values[:-1]) * (self.interval_ms / 2000.0)
        return free, values, np.vstack([joules0, joules0 + np.cumsum(trap, axis=0)])

    def _state(self, era: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(free walk, J since the era's start) at the first tick of sub-chunk ``i`` of ``era``."""
        state = self._eras.get(era) or self._eras.put(era, [(np.zeros(self.n), np.zeros(self.n))])
        while len(state) <= i:
            j = len(state) - 1
            free, values, joules = self._build(era, j, *state[j])
            self._tables.put(era * (self.ERA // self.sub) + j, (values, joules))
            state.append((free[-1], joules[-1]))
        return state[i]

    def _table(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(grid values, J since the era's start) of sub-chunk ``s`` (counted from the epoch)."""
        if s not in self._tables:
            era, i = divmod(s, self.ERA // self.sub)
            _, values, joules = self._build(era, i, *self._state(era, i))
            self._tables.put(s, (values, joules))
        return self._tables[s]

    # -- energy -------------------------------------------------------------------------
    def _era_start(self, era: int) -> np.ndarray:
        """J from the start of the first era asked for to the start of ``era``."""
        if not self._chain:
            self._chain[era] = np.zeros(self.n)
        if era not in self._chain:
            last = self.ERA // self.sub
            below = [e for e in self._chain if e < era]
            start = max(below) if below else min(self._chain)
            joules, way = self._chain[start], (1 if below else -1)
            for e in range(start + way, era + way, way):
                joules = joules + way * self._state(e - 1 if below else e, last)[1]
                if e % 64 == 0:  # milestones, so that far queries need not start from the first era
                    self._chain[e] = joules
            self._prune(keep=era)
            self._chain[era] = joules
        return self._chain[era]

    def _prune(self, keep: int) -> None:
        """Forget eras that are neither milestones nor the first (memory: n floats per era)."""
        first = next(iter(self._chain))
        for e in [e for e in self._chain if e % 64 and e not in (first, keep)]:
            del self._chain[e]

    def _gather(self, t_ms, joules: bool = False) -> np.ndarray:
        """The curve in W (or the J since a fixed reference) at each time, shape t.shape + (n,)."""
        t = _ms(t_ms)
        shape = t.shape + (self.n,)
        k, frac = np.divmod(t.reshape(-1), self.interval_ms)
        s, j = np.divmod(k, self.sub)
        frac = (frac / self.interval_ms)[:, None]
        out = np.empty((len(k), self.n))
        for chunk in np.unique(s).tolist():
            at = s == chunk
            values, within = self._table(chunk)
            v0, f = values[j[at]], frac[at]
            w = v0 + (values[j[at] + 1] - v0) * f
            if joules:
                start = self._era_start(chunk // (self.ERA // self.sub))
                w = start + within[j[at]] + (v0 + w) * f * (self.interval_ms / 2000.0)
            out[at] = w
        return out.reshape(shape)

    def curve_at(self, t_ms) -> np.ndarray:
        return self._gather(t_ms)

    def energy(self, t0_ms, t1_ms) -> np.ndarray:
        return self._gather(t1_ms, joules=True) - self._since(t0_ms)

    def _since(self, t_ms) -> np.ndarray:
        # A counter asks energy(start, now) at every read: remember the start's integral.
        if np.ndim(t_ms):
            return self._gather(t_ms, joules=True)
        key = int(t_ms)
        return self._points.get(key) if key in self._points else \
            self._points.put(key, self._gather(key, joules=True))
