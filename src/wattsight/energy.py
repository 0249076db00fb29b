"""Pure maths: integration on measured time, counter wrap, gaps and coverage.

Everything here works on plain numpy arrays, as the store returns them: times ``t_ms`` are
``int64`` milliseconds since the epoch, ascending (duplicates allowed); values are
``float64`` SI units (W for power, J for energy counters, B for byte counters).  Nothing
loops per sample in Python.

Conventions shared by every function:

* An *interval* is the span between two consecutive samples.  One that lasts longer than
  ``max_gap_ms`` is a **gap**: it is never bridged, so it contributes neither energy (or
  counter increase) nor coverage.  An interval of exactly ``max_gap_ms`` is bridged.
* Only the part of an interval that overlaps the queried range ``[start_ms, end_ms]``
  counts; inside an interval values are linear in time, so power is interpolated at the
  clip points and a counter's increase is apportioned by the overlap.
* A non-finite value (NaN, inf) is a missing reading: the sample is dropped and its
  neighbours are joined if they are close enough (see the gap rule).
* Zero-length intervals (two samples at the same millisecond) last no time: they add no
  energy and no coverage.

See ``docs/energy.md`` for worked examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import QueryError, SampleError

#: Joules in one kilowatt-hour.
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Energy:
    """An amount over a time range, with how much of the range the data covered.

    ``joules`` is the amount (for a byte counter passed to :func:`counter_increase`, it
    holds bytes); ``covered_ms`` is the part of the range spanned by bridged intervals;
    ``range_ms`` is the length of the range asked for.
    """

    joules: float
    covered_ms: int
    range_ms: int

    @property
    def coverage(self) -> float:
        """The fraction of the range the data covered, 0..1 (0 for an empty range)."""
        if self.range_ms <= 0:
            return 0.0
        return min(1.0, max(0.0, self.covered_ms / self.range_ms))

    @property
    def kwh(self) -> float:
        """The amount in kilowatt-hours."""
        return self.joules / J_PER_KWH

    def __add__(self, other: object) -> Energy:
        """The total over two disjoint ranges: amounts, coverage and lengths add."""
        if not isinstance(other, Energy):
            return NotImplemented
        return Energy(
            self.joules + other.joules, self.covered_ms + other.covered_ms, self.range_ms + other.range_ms
        )

    def __radd__(self, other: object) -> Energy:
        """Lets ``sum(energies)`` start from the integer 0."""
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    @classmethod
    def zero(cls, range_ms: int = 0) -> Energy:
        """No energy and no coverage over a range of ``range_ms``."""
        return cls(0.0, 0, int(range_ms))


# -- input checks ---------------------------------------------------------------------------


def _arrays(t_ms, values) -> tuple[np.ndarray, np.ndarray]:
    """``t_ms`` as int64 and ``values`` as float64, checked 1-D, aligned and ascending."""
    t = np.asarray(t_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 1 or len(t) != len(v):
        raise SampleError(f"times and values must be 1-D and aligned: shapes {t.shape} and {v.shape}")
    if len(t) > 1 and bool(np.any(t[1:] < t[:-1])):
        i = int(np.argmax(t[1:] < t[:-1]))
        raise SampleError(f"times must be ascending: t[{i}]={t[i]} > t[{i + 1}]={t[i + 1]}")
    return t, v


def _range_ms(start_ms: int, end_ms: int) -> int:
    """``end_ms - start_ms``, refusing a range that ends before it starts."""
    start_ms, end_ms = int(start_ms), int(end_ms)
    if end_ms < start_ms:
        raise QueryError(f"range ends before it starts: start={start_ms} ms > end={end_ms} ms")
    return end_ms - start_ms


def _finite(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the samples whose value is not finite (missing readings)."""
    ok = np.isfinite(v)
    if bool(ok.all()):
        return t, v
    return t[ok], v[ok]


def _around(t: np.ndarray, start_ms: int, end_ms: int) -> slice:
    """The samples that bound an interval overlapping ``[start_ms, end_ms]``."""
    lo = max(int(np.searchsorted(t, start_ms, side="right")) - 1, 0)
    hi = min(int(np.searchsorted(t, end_ms, side="left")) + 1, len(t))
    return slice(lo, hi)


def _overlap(t: np.ndarray, start_ms: int, end_ms: int, max_gap_ms: int):
    """Per interval: its length, the clipped bounds a..b, and the overlap of bridged ones.

    Returns ``(dt, a, b, overlap)`` as int64 arrays of length ``len(t) - 1``; ``overlap``
    is 0 for gaps (longer than ``max_gap_ms``) and for zero-length intervals.
    """
    dt = t[1:] - t[:-1]
    a = np.clip(t[:-1], start_ms, end_ms)
    b = np.clip(t[1:], start_ms, end_ms)
    bridged = (dt > 0) & (dt <= max_gap_ms)
    return dt, a, b, np.where(bridged, b - a, 0)


# -- power -> energy ------------------------------------------------------------------------


def integrate(t_ms, watts, start_ms: int, end_ms: int, max_gap_ms: int) -> Energy:
    """Energy from power samples over ``[start_ms, end_ms]``: trapezoids on measured time.

    Each bridged interval contributes the integral of the straight line between its two
    samples over its overlap with the range (the value is interpolated at the clip
    points), so a piecewise-linear power curve with breakpoints at the sample times is
    integrated exactly (up to float rounding) over any range.  Gaps longer than
    ``max_gap_ms`` add neither energy nor coverage.  Fewer than two usable samples give
    zero energy and zero coverage.

    To integrate up to the range's edges, pass the samples just outside it too (read
    ``[start - max_gap, end + max_gap]``): only their part inside the range is counted.
    """
    range_ms = _range_ms(start_ms, end_ms)
    t, w = _finite(*_arrays(t_ms, watts))
    near = _around(t, start_ms, end_ms)
    t, w = t[near], w[near]
    if len(t) < 2 or range_ms == 0:
        return Energy.zero(range_ms)
    dt, a, b, overlap = _overlap(t, int(start_ms), int(end_ms), int(max_gap_ms))
    # A trapezoid under a straight line = its length times the value at its midpoint.
    span = np.where(dt > 0, dt, 1).astype(np.float64)
    mid = ((a - t[:-1]) + (b - t[:-1])).astype(np.float64) / (2.0 * span)
    w0, w1 = w[:-1], w[1:]
    joules_ms = overlap.astype(np.float64) * (w0 + (w1 - w0) * mid)
    return Energy(float(joules_ms.sum()) / 1000.0, int(overlap.sum()), range_ms)


# -- counters -------------------------------------------------------------------------------


def bits_range(bits: int) -> int:
    """The range of an unsigned hardware counter of ``bits`` bits: 2**32 or 2**64."""
    if bits not in (32, 64):
        raise QueryError(f"counter width {bits!r} bits is not supported (expected 32 or 64)")
    return 2 ** int(bits)


def wrap_deltas(values, max_range: float | None = None) -> np.ndarray:
    """The increases between consecutive readings of a counter (length ``n - 1``).

    A reading lower than the one before means the counter went round or restarted:

    * with ``max_range`` (``bits_range(32)``, ``bits_range(64)`` or a meter's own maximum,
      such as RAPL's ``max_energy_range_uj`` converted to joules) it **wrapped**: the
      increase is ``v[i+1] + max_range - v[i]``;
    * without it, the counter was **reset** to zero (the Prometheus convention): the
      increase is ``v[i+1]``.

    Precision: values arrive as float64, which holds integers exactly only up to 2**53
    (about 9.0e15).  Above that, readings are already rounded to the nearest float
    (multiples of 2048 near 2**64), so each delta is only as exact as the readings,
    about ``1.1e-16 * value``.  The wrap is computed as ``(max_range - v[i]) + v[i+1]``,
    which adds no error of its own when ``v[i]`` is close to ``max_range``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise SampleError(f"counter values must be 1-D, not of shape {v.shape}")
    if len(v) < 2:
        return np.zeros(0, dtype=np.float64)
    prev, nxt = v[:-1], v[1:]
    deltas = nxt - prev
    down = deltas < 0
    if bool(down.any()):
        if max_range is None:
            deltas[down] = nxt[down]
        else:
            deltas[down] = (float(max_range) - prev[down]) + nxt[down]
    return deltas


def _merge_duplicates(t: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold increases across duplicate times into the interval that ends at that time.

    Returns distinct times and the increase between each consecutive pair, so a counter
    read twice in the same millisecond loses nothing (increases before the very first
    time have no interval to land in and are dropped).
    """
    last = np.flatnonzero(np.append(t[1:] != t[:-1], True))  # last index of each time
    if len(last) == len(t):
        return t, deltas
    if len(last) < 2:
        return t[last], np.zeros(0, dtype=np.float64)
    return t[last], np.add.reduceat(deltas, last[:-1])


def counter_increase(
    t_ms, values, start_ms: int, end_ms: int, max_gap_ms: int, max_range: float | None = None
) -> Energy:
    """How much a counter went up over ``[start_ms, end_ms]`` (J for energy, B for bytes).

    Increases come from :func:`wrap_deltas`; each interval's increase is apportioned
    linearly by the part of it that overlaps the range.  Intervals longer than
    ``max_gap_ms`` are not bridged: their increase is not counted, nor their coverage (the
    counter went up, but we cannot tell when).  Readings at the same millisecond are
    merged, their increase going to the interval that ends there.
    """
    range_ms = _range_ms(start_ms, end_ms)
    t, v = _finite(*_arrays(t_ms, values))
    if len(t) < 2 or range_ms == 0:
        return Energy.zero(range_ms)
    t, deltas = _merge_duplicates(t, wrap_deltas(v, max_range))
    near = _around(t, start_ms, end_ms)
    t, deltas = t[near], deltas[near.start : max(near.stop - 1, near.start)]
    if len(t) < 2:
        return Energy.zero(range_ms)
    dt, _, _, overlap = _overlap(t, int(start_ms), int(end_ms), int(max_gap_ms))
    whole = overlap == dt  # exact when the interval lies fully inside the range
    share = np.where(whole, deltas, deltas * (overlap / dt.astype(np.float64)))
    return Energy(float(share.sum()), int(overlap.sum()), range_ms)


def rates(t_ms, values, max_range: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-second rates of a counter: J counter -> W, byte counter -> B/s.

    Returns ``(t_ms[1:], rate)``: each rate is the interval's increase (from
    :func:`wrap_deltas`) over its length, stamped at the interval's end.  A zero-length
    interval (duplicate time) has no defined rate and gives NaN; so does a NaN reading.
    Gaps are not treated here: the caller decides whether a long interval's average rate
    is worth showing.
    """
    t, v = _arrays(t_ms, values)
    if len(t) < 2:
        return t[1:], np.zeros(0, dtype=np.float64)
    deltas = wrap_deltas(v, max_range)
    seconds = (t[1:] - t[:-1]).astype(np.float64) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = deltas / seconds
    rate[seconds == 0] = np.nan
    return t[1:], rate


def gap_limit_ms(period_s: float | None, max_gap_s: float) -> int:
    """The longest interval bridged: ``max(max_gap_s, 3 * period_s)`` in ms.

    ``period_s`` is the probe's polling period (``None`` when unknown or pushed).
    """
    limit = float(max_gap_s)
    if period_s is not None:
        limit = max(limit, 3.0 * float(period_s))
    return round(limit * 1000.0)
