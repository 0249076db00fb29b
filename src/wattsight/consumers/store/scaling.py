"""Values <-> scaled integers: each series of a segment stores ``v`` with value = v / 10**scale,
``scale`` the smallest 0..6 exact for all its values (:func:`scale_values`), MUL + s where only a
multiplication by 10**-s gives them back, -1 for their float64 bit patterns (NaN, ...)."""

from __future__ import annotations

import numpy as np

from .sorting import starts_of

MAX_SCALE = 6
_POW10 = 10.0 ** np.arange(MAX_SCALE + 1)
#: Scale codes MUL + s (s = 1..6): value = v * 10**-s as a float multiplication (``count * 0.1``
#: in a driver), which is not always v / 10**s: such series keep integers instead of bit patterns.
MUL = 7
_NEG10 = np.array([1.0, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6])


def choose_scales(v: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per series (rows ``starts[i]:starts[i+1]``), the smallest exactly lossless scale code: s
    (value = v / 10**s), else MUL + s (value = v * 10**-s), else -1 (bit patterns)."""
    return scale_values(v, starts)[0]


def scale_values(v: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`choose_scales` and the int64 column (:func:`to_scaled`) in one go: each pass keeps
    the integers of the series it settles."""
    n = len(v)
    scale = np.full(len(starts), -1, np.int8)
    counts = np.diff(np.append(starts, n))
    pending = np.arange(len(starts))  # series without a scale yet
    rows = None  # where the rows of vv are in v (None: all of them)
    ints = None
    vv, st = v, starts
    for s in range(MAX_SCALE + 1):
        with np.errstate(invalid="ignore", over="ignore"):  # NaN, inf: never ok, as wanted
            x = np.rint(vv * _POW10[s]) if s else np.rint(vv)
            xi = x.astype(np.int64)
            xf = xi.astype(np.float64)
            back = xf / _POW10[s] if s else xf
            small = np.abs(x) < 2.0**62
            ok = small & (back.view(np.int64) == vv.view(np.int64))  # -0.0 is not 0.0
        good = np.logical_and.reduceat(ok, st)
        if s and not good.all():  # the same integers, decoded by a multiplication
            mul = ~good & np.logical_and.reduceat(small & ((xf * _NEG10[s]).view(np.int64) == vv.view(np.int64)), st)
            scale[pending[mul]] = MUL + s
            good = good | mul
        scale[pending[good & (scale[pending] < 0)]] = s
        if rows is None and good.all():
            return scale, xi
        if ints is None:
            ints = v.view(np.int64).copy()  # the rows that find no scale keep their bit pattern
        keep = np.repeat(good, counts[pending])
        if good.all():
            ints[rows] = xi
            break
        if good.any():
            ints[keep if rows is None else rows[keep]] = xi[keep]
            rows = np.flatnonzero(~keep) if rows is None else rows[~keep]
            vv = vv[~keep]
            pending = pending[~good]
            st = starts_of(counts[pending])
    return scale, ints


def to_scaled(v: np.ndarray, row_scale: np.ndarray) -> np.ndarray:
    """The int64 column for values ``v`` with the per-row ``row_scale``."""
    row_scale = np.asarray(row_scale, np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        ints = np.rint(v * _POW10[np.where(row_scale >= MUL, row_scale - MUL, np.maximum(row_scale, 0))]
                       ).astype(np.int64)
    raw = row_scale < 0
    ints[raw] = v.view(np.int64)[raw]
    return ints


def from_scaled(ints: np.ndarray, scale: int) -> np.ndarray:
    """float64 values of one series' int64 column (``scale`` -1: bit patterns)."""
    if scale < 0:
        return ints.view(np.float64).copy()
    if scale >= MUL:
        return ints.astype(np.float64) * _NEG10[scale - MUL]
    return ints.astype(np.float64) / _POW10[scale]


def decode(v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float64 values of a segment's ``v`` and ``scale`` columns (for reading segments directly)."""
    v, scale = np.asarray(v, np.int64), np.asarray(scale, np.int64)
    out = v.astype(np.float64) / _POW10[np.clip(scale, 0, MAX_SCALE)]
    mul = scale >= MUL
    if mul.any():
        out[mul] = v[mul].astype(np.float64) * _NEG10[scale[mul] - MUL]
    raw = scale < 0
    out[raw] = v[raw].view(np.float64)
    return out
