"""Downsample a series into buckets for graphs and the API.

A range ``[start_ms, end_ms)`` is cut into buckets of ``step_ms``, the first starting at
``start_ms``; each bucket that holds at least one sample gets its min, max, plain mean,
last value and sample count.  Buckets without samples are *not* returned: an empty
bucket is a gap in the data, not a zero, and graphs should show it as such.

Pick ``step_ms`` with :func:`step_for` so that a graph never gets more than the points it
can draw.  For boundaries that stay put while a live graph slides, round ``start_ms``
down to a multiple of the step before calling :func:`buckets`.
"""

from __future__ import annotations

import numpy as np

from .errors import QueryError, SampleError

_S = 1_000
_MIN = 60 * _S
_H = 60 * _MIN
_DAY = 24 * _H
_WEEK = 7 * _DAY

#: The "nice" steps, ascending; beyond the last one, steps are whole weeks.
NICE_STEPS_MS: tuple[int, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500,
    _S, 2 * _S, 5 * _S, 10 * _S, 15 * _S, 30 * _S,
    _MIN, 2 * _MIN, 5 * _MIN, 10 * _MIN, 15 * _MIN, 30 * _MIN,
    _H, 2 * _H, 3 * _H, 6 * _H, 12 * _H,
    _DAY, _WEEK,
)  # fmt: skip

_KEYS = ("t", "min", "max", "avg", "last", "count")


def _empty() -> dict[str, np.ndarray]:
    """The answer for a range without samples: every column empty."""
    out = {k: np.zeros(0, dtype=np.float64) for k in _KEYS}
    out["t"] = np.zeros(0, dtype=np.int64)
    out["count"] = np.zeros(0, dtype=np.int64)
    return out


def _in_range(t_ms, v, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """The samples with ``start_ms <= t < end_ms`` and a finite value, checked ascending."""
    t = np.asarray(t_ms, dtype=np.int64)
    v = np.asarray(v, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 1 or len(t) != len(v):
        raise SampleError(f"times and values must be 1-D and aligned: shapes {t.shape} and {v.shape}")
    if len(t) > 1 and bool(np.any(t[1:] < t[:-1])):
        raise SampleError("times must be ascending to be bucketed")
    lo, hi = np.searchsorted(t, [start_ms, end_ms], side="left")
    t, v = t[lo:hi], v[lo:hi]
    ok = np.isfinite(v)
    return (t, v) if bool(ok.all()) else (t[ok], v[ok])


def buckets(t_ms, v, start_ms: int, end_ms: int, step_ms: int) -> dict[str, np.ndarray]:
    """Min, max, mean, last and count of the samples in each ``step_ms`` bucket.

    Buckets are ``[start_ms + k * step_ms, start_ms + (k + 1) * step_ms)``; samples are
    taken from ``[start_ms, end_ms)`` (end excluded, so consecutive ranges do not count
    a sample twice).  NaN values are missing readings and are ignored.  Returns a dict of
    aligned arrays: ``t`` (bucket start, int64 ms), ``min``, ``max``, ``avg`` (plain mean
    of the samples, not time-weighted), ``last`` (float64) and ``count`` (int64), with
    only the buckets that hold at least one sample.
    """
    start_ms, end_ms, step_ms = int(start_ms), int(end_ms), int(step_ms)
    if step_ms <= 0:
        raise QueryError(f"bucket step must be a positive number of ms, not {step_ms}")
    if end_ms < start_ms:
        raise QueryError(f"range ends before it starts: start={start_ms} ms > end={end_ms} ms")
    t, v = _in_range(t_ms, v, start_ms, end_ms)
    if len(t) == 0:
        return _empty()
    index = (t - start_ms) // step_ms
    first = np.flatnonzero(np.concatenate(([True], index[1:] != index[:-1])))
    count = np.diff(np.append(first, len(t)))
    return {
        "t": start_ms + index[first] * step_ms,
        "min": np.minimum.reduceat(v, first),
        "max": np.maximum.reduceat(v, first),
        "avg": np.add.reduceat(v, first) / count,
        "last": v[first + count - 1],
        "count": count.astype(np.int64),
    }


def step_for(start_ms: int, end_ms: int, max_points: int) -> int:
    """The smallest nice step (in ms) that cuts ``[start_ms, end_ms)`` into at most ``max_points``.

    Nice steps are those of :data:`NICE_STEPS_MS` (1, 2, 5, 10 ... ms, 1, 2, 5, 10, 15,
    30 s, minutes alike, 1, 2, 3, 6, 12 h, 1 day, 7 days), then whole weeks.  The result
    satisfies ``(end_ms - start_ms) / step <= max_points``, so :func:`buckets` returns at
    most ``max_points`` buckets.
    """
    max_points = int(max_points)
    if max_points < 1:
        raise QueryError(f"max_points must be at least 1, not {max_points}")
    span = int(end_ms) - int(start_ms)
    if span < 0:
        raise QueryError(f"range ends before it starts: start={start_ms} ms > end={end_ms} ms")
    for step in NICE_STEPS_MS:
        if span <= step * max_points:
            return step
    weeks = -(-span // (_WEEK * max_points))  # ceil, in integers
    return int(weeks * _WEEK)


def merge_parts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One series from (times, values) parts in write order: sorted by time, and of samples with
    equal times the last written kept (a re-sent sample replaces the earlier one).  Used by every
    store to join what segments, partitions and memory hold of one series."""
    parts = [p for p in parts if len(p[0])]  # a part overlapping the range may hold none of it
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    if len(parts) == 1 and (len(parts[0][0]) < 2 or bool(np.all(np.diff(parts[0][0]) > 0))):
        return parts[0]
    t = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    last = np.ones(len(t), bool)
    last[:-1] = t[1:] != t[:-1]
    return t[last], v[last]
