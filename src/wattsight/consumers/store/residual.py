"""How a segment stores each series' scaled integers: as *residuals* chosen per series (format 2).

The ``v`` column of a segment holds, per series, one of these (``mode``, in the summary):

======== ======================================================================================
RAW      the integers themselves (every format-1 segment; float bit patterns that do not delta)
DELTA    zigzag of the differences (the first row's: 0, the first value is in the summary): a
         1 W meter's noise costs 2-3 bits, a counter's steps their size
DICT     DELTA, then the frequent residuals (4 times or more in the series) replaced by their
         rank by frequency, the others by ``rank count + residual``: the ``rank count`` residuals,
         most frequent first, are the low half of the ``aux`` column of the series' first rows
         (``dict_n`` in the summary).  Byte counters of idle links (a few frame sizes, over and
         over) cost ~1 byte less per sample.  PARTNER residuals get a dictionary the same way
PARTNER  DELTA minus a prediction from the differences of another series of the same probe,
         unit, kind and provenance, both integers (its *partner*, the first such series by name:
         ``network_in`` for ``network_out``) at the same times: ``rint(k * partner
         difference)``, ``k`` fitted by least squares per block of ``BLOCK`` rows (float32, in
         the high half of ``aux`` on the block's first row; 0 where it does not help).  The two
         counters of a link move together (a transfer and its ACKs)
======== ======================================================================================

The mode of each series is the smallest by a cost estimate (:func:`plane_bits`, plus the side
data).  The residuals of each row group are then split in byte planes, as many as the
segment's largest residual needs (:func:`pack`: the high planes of small residuals are runs of
zeros, the low ones hold the noise), and zstd-compressed by Parquet.  Everything is integer
arithmetic modulo 2**64 (differences of bit patterns wrap and come back exactly); the
prediction is a float64 product rounded to an integer, the same on every IEEE machine.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from .sorting import starts_of

RAW, DELTA, DICT, PARTNER = 0, 1, 2, 3
BLOCK = 128
DICT_MIN = 4  # a difference enters the dictionary when it comes this often in the series
DICT_SPAN = 1 << 16  # dictionary candidates: zigzag differences below this
_PRED_MAX = 2.0**62


@dataclass
class Coded:
    """A segment's ``v`` and ``aux`` columns, and per series its mode, partner and dictionary size."""

    r: np.ndarray  # int64 per row
    aux: np.ndarray  # int64 per row
    mode: np.ndarray  # int8 per series
    partner: np.ndarray  # int32 per series (-1: none)
    dict_n: np.ndarray  # int32 per series
    first: np.ndarray  # int64 per series: its first value (the differences start from it)
    last: np.ndarray  # int64 per series: its last value (decoding joins the series in one running sum)


def zigzag(d: np.ndarray) -> np.ndarray:
    return (d << 1) ^ (d >> 63)


def unzigzag(u: np.ndarray) -> np.ndarray:
    low = np.bitwise_and(u, 1)
    np.negative(low, out=low)
    return np.bitwise_xor((u.view(np.uint64) >> np.uint64(1)).view(np.int64), low, out=low)


def cost_bits(u: np.ndarray) -> np.ndarray:
    """Bits a residual costs, about (log2(1 + u) for the unsigned u; float32 is precise enough)."""
    return np.log2(u.view(np.uint64).astype(np.float32) + np.float32(1.0))


def plane_bits(u: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per series (``count`` rows each), the bits its residuals cost split in byte planes, each
    plane coded by its own byte frequencies (order-0 entropy: what zstd's Huffman stage gets)."""
    ns = len(count)
    out = np.zeros(ns)
    if not len(u):
        return out
    sid = np.repeat(np.arange(ns, dtype=np.int64), count) << 8
    planes = u.view(np.uint8).reshape(-1, 8)
    for k in range(width(u)):
        h = np.bincount(sid | planes[:, k], minlength=ns << 8).reshape(ns, 256).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out += np.nansum(h * np.log2(np.maximum(count, 1)[:, None] / h), axis=1)
    return out


def _sum(x: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    if not n or not len(x):
        return np.zeros(len(starts))
    return np.add.reduceat(x, starts, dtype=np.float64)


def partners(series, scale: np.ndarray) -> np.ndarray:
    """Per series, the index of its partner (the first by name of the other series of the same probe,
    unit, kind and provenance, both with integer values) or -1.  By name, not by row: rows are in
    :func:`.segment_write.by_cost`'s order, and ``network_in`` stays ``network_out``'s partner."""
    out = np.full(len(series), -1, np.int32)
    head: dict[tuple, int] = {}
    for i in sorted(range(len(series)), key=lambda k: series[k].as_tuple()):
        s = series[i]
        if scale[i] < 0:
            continue
        g = (s.probe, s.unit, s.kind, s.provenance)
        if g in head:
            out[i] = head[g]
        else:
            head[g] = i
    return out


def _aligned(ti: np.ndarray, tj: np.ndarray, pd: np.ndarray) -> np.ndarray:
    """The partner's differences ``pd`` (at its times ``tj``) at the times ``ti`` (0 where it has none)."""
    if np.array_equal(ti, tj):
        return pd
    pos = np.minimum(np.searchsorted(tj, ti), len(tj) - 1)
    return np.where(tj[pos] == ti, pd[pos], 0)


def _predict(k: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.rint(k * p.astype(np.float64)).astype(np.int64)


def _k_of(aux: np.ndarray) -> np.ndarray:
    """The prediction factors in ``aux``'s high 32 bits (float32 bit patterns) as float64."""
    return (aux >> 32).astype(np.int32).view(np.float32).astype(np.float64)


def encode(x: np.ndarray, t: np.ndarray, count: np.ndarray, series, scale: np.ndarray, *,
           dictionaries: bool = True, partners_too: bool = True) -> Coded:
    """Residuals of the int64 column ``x`` (rows sorted by series then t; ``count`` rows per series)."""
    n, ns = len(x), len(count)
    starts = starts_of(count)
    nonempty = count > 0
    st = starts[nonempty]
    d = np.zeros_like(x)
    if n:
        np.subtract(x[1:], x[:-1], out=d[1:])
        d[st] = 0
    first = np.zeros(ns, np.int64)
    first[nonempty] = x[st]
    last = np.zeros(ns, np.int64)
    last[nonempty] = x[st + count[nonempty] - 1]
    u_delta = zigzag(d)
    c_delta = plane_bits(u_delta, count)
    c_raw = np.full(ns, np.inf)  # float bit patterns may cost less as they are (integers: never, about)
    bits = scale < 0
    if bits.any():
        rows = np.repeat(bits, count)
        c_raw[bits] = plane_bits(x[rows], count[bits])
    mode = np.where(c_delta <= c_raw, DELTA, RAW).astype(np.int8)
    best = np.minimum(c_delta, c_raw)
    r = np.where(np.repeat(mode == DELTA, count), u_delta, x)
    aux = np.zeros(n, np.int64)
    partner = np.full(ns, -1, np.int32)
    for i, j in enumerate(partners(series, scale).tolist() if partners_too else ()):
        if j >= 0 and count[i] >= 2 and count[j] >= 2:
            _partner(i, j, t, d, u_delta, starts, count, best, mode, partner, r, aux)
    dict_n = np.zeros(ns, np.int32)
    if dictionaries and n:
        _dictionaries(count, starts, best, mode, r, aux, dict_n)
    return Coded(r, aux, mode, partner, dict_n, first, last)


def _partner(i: int, j: int, t, d, u_delta, starts, count, best, mode, partner, r, aux) -> None:
    """Switch series ``i`` to PARTNER (with ``j``) if predicting its differences from ``j``'s is cheaper."""
    a, m = int(starts[i]), int(count[i])
    pa, pn = int(starts[j]), int(count[j])
    p = _aligned(t[a:a + m], t[pa:pa + pn], d[pa:pa + pn])
    if np.any((p >= 2**52) | (p <= -2**52)):
        return
    di = d[a:a + m]
    blk = np.arange(m) // BLOCK
    pf = p.astype(np.float64)
    den = np.bincount(blk, weights=pf * pf)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        k = np.where(den > 0, np.bincount(blk, weights=pf * di.astype(np.float64)) / den, 0.0).astype(np.float32)
    k[~np.isfinite(k)] = 0.0
    kr = k[blk].astype(np.float64)
    if np.any(np.abs(kr * pf) >= _PRED_MAX):
        return
    u_p = zigzag(di - _predict(kr, p))
    cost_p = np.bincount(blk, weights=cost_bits(u_p)) + 32
    cost_d = np.bincount(blk, weights=cost_bits(u_delta[a:a + m]))
    use = cost_p < cost_d
    k[~use] = 0.0
    kr = k[blk]
    u_i = np.where(kr != 0, u_p, u_delta[a:a + m])
    cost = float(plane_bits(u_i, np.array([m]))[0]) + 32 * int(use.sum())
    if cost >= best[i]:
        return
    best[i] = cost
    mode[i], partner[i] = PARTNER, j
    r[a:a + m] = u_i
    aux[a:a + m:BLOCK] = k.view(np.int32).astype(np.int64) << 32  # on each block's first row


def _dictionaries(count: np.ndarray, starts: np.ndarray, best: np.ndarray, mode: np.ndarray, r: np.ndarray,
                  aux: np.ndarray, dict_n: np.ndarray) -> None:
    """Rank the frequent residuals of the series a dictionary makes cheaper (in place: DELTA becomes DICT)."""
    for i in np.flatnonzero((count >= 16 * DICT_MIN) & (mode != RAW)).tolist():
        a, m = int(starts[i]), int(count[i])
        ui = r[a:a + m].view(np.uint64)
        small = ui < np.uint64(DICT_SPAN)
        if small.sum() < m // 4 or ui.max() >= np.uint64(1 << 62):  # an escape must not wrap
            continue
        seen = np.bincount(ui[small].astype(np.int64))
        frequent = np.flatnonzero(seen >= DICT_MIN)
        if not len(frequent):
            continue
        entry = frequent[np.argsort(-seen[frequent], kind="stable")]  # most frequent first
        k = len(entry)
        lut = np.full(len(seen), -1, np.int64)
        lut[entry] = np.arange(k)
        rank = np.full(m, -1, np.int64)
        rank[small] = lut[ui[small].astype(np.int64)]
        coded = np.where(rank >= 0, rank, r[a:a + m] + k)  # an escape: the residual after the ranks
        cost = float(plane_bits(coded, np.array([m]))[0] + (cost_bits(entry) + 4).sum())
        if cost < best[i] and k <= m:
            r[a:a + m] = coded
            aux[a:a + k] |= entry
            best[i], dict_n[i] = cost, k
            if mode[i] == DELTA:
                mode[i] = DICT


def decode(r: np.ndarray, aux: np.ndarray | None, t: np.ndarray, count: np.ndarray, mode: np.ndarray,
           partner: np.ndarray, dict_n: np.ndarray, first: np.ndarray, last: np.ndarray | None, *,
           entries: np.ndarray | None = None) -> np.ndarray:
    """The int64 values of series laid out as :func:`encode` wrote them (``partner`` indexes series
    of the same layout; ``first``, ``last``: each series' first and last value; ``last`` None when
    the series may be cut short: only their first rows given).  ``entries``: the dictionaries of
    the series with ``dict_n`` > 0, end to end, when the rows given do not start at the series'
    first rows (a read from a restart point: :mod:`.restarts`; ``first`` then the value there)."""
    n = len(r)
    if not n or not mode.any():
        return r.copy()
    starts = starts_of(count)
    u = r
    dm = np.flatnonzero(dict_n > 0)
    if len(dm):  # every dictionary at once: the series' tables end to end, each row's offset into them
        u = r.copy()
        k, m = dict_n[dm].astype(np.int64), count[dm]
        at = starts_of(k)
        if entries is None:
            entries = aux[_rows_of(starts[dm], k)] & 0xFFFFFFFF
        rows = _rows_of(starts[dm], m)
        rr, kr = r[rows], np.repeat(k, m)
        hit = rr.view(np.uint64) < kr.view(np.uint64)
        u[rows] = np.where(hit, entries[np.repeat(at, m) + np.where(hit, rr, 0)], rr - kr)
    d = unzigzag(u)
    raw = mode == RAW
    if raw.any():  # their rows are values: as differences, for the one running sum below
        rows = np.flatnonzero(np.repeat(raw, count))
        d[rows] = r[rows]
        d[rows[1:]] -= r[rows[:-1]]
    pm = mode == PARTNER
    held = {}
    for i in np.flatnonzero(pm).tolist():  # summed apart below, once their partner is known
        a, m = int(starts[i]), int(count[i])
        held[i] = d[a:a + m].copy()
        d[a:a + m] = 0
    x = _running(d, starts, count, first, None if last is None else np.where(pm, first, last))
    for i, di in held.items():  # partners are never PARTNER themselves: right already
        j = int(partner[i])
        a, m = int(starts[i]), int(count[i])
        pa, pn = int(starts[j]), int(count[j])
        pd = np.zeros(pn, np.int64)
        np.subtract(x[pa + 1:pa + pn], x[pa:pa + pn - 1], out=pd[1:])
        p = _aligned(t[a:a + m], t[pa:pa + pn], pd)
        k = _k_of(aux[a:a + m:BLOCK])
        use = np.flatnonzero(k != 0)
        if len(use):
            kr = np.repeat(k, BLOCK)[:m]
            rows = np.flatnonzero(kr != 0)
            di[rows] += _predict(kr[rows], p[rows])
        di[0] = 0
        x[a:a + m] = np.cumsum(di, out=di) + first[i]
    return x


def _rows_of(starts: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The rows ``starts[i]:starts[i] + count[i]`` of every i, end to end."""
    return np.repeat(starts - starts_of(count), count) + np.arange(int(count.sum()))


def _running(d: np.ndarray, starts: np.ndarray, count: np.ndarray, first: np.ndarray,
             end: np.ndarray | None) -> np.ndarray:
    """Each series' values from its differences ``d`` (its first row's ignored) and ``first``, in
    place, modulo 2**64.  With each series' ``end`` value known, one running sum over every row
    does it (each series' first difference set to the step from the previous series' end)."""
    nz = np.flatnonzero(count > 0)
    if not len(nz):
        return d
    st = starts[nz]
    if end is not None:
        d[st] = first[nz] - np.concatenate([[0], end[nz[:-1]]]).astype(np.int64)
        return np.cumsum(d, out=d)
    d[st] = 0
    x = np.cumsum(d, out=d)
    base = np.zeros(len(count), np.int64)
    base[nz] = first[nz]
    base[nz[1:]] -= x[st[1:] - 1]
    x += np.repeat(base, count)
    return x


# -- times ----------------------------------------------------------------------------------
def encode_t(t: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times as offsets from each series' regular grid: (zigzag of each step minus the series'
    usual step, 0 on first rows; the usual step per series: the median of its first 64 steps).
    A meter read on the tick costs ~0 bits, one stamped on reply its jitter."""
    n, ns = len(t), len(count)
    starts = starts_of(count)
    dt = np.zeros(n, np.int64)
    if n:
        np.subtract(t[1:], t[:-1], out=dt[1:])
    dt[starts[count > 0]] = 0
    k = np.arange(1, 65)
    rows = np.minimum(starts[:, None] + k[None, :], max(n - 1, 0))
    sample = np.where(k[None, :] < count[:, None], dt[rows] if n else 0, np.nan).astype(np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmedian: all-NaN for a series of one row
        step = np.nan_to_num(np.nanmedian(sample, axis=1) if ns else np.zeros(0)).astype(np.int64)
    r = zigzag(dt - np.repeat(step, count))
    r[starts[count > 0]] = 0
    return r, step


def decode_t(r: np.ndarray, count: np.ndarray, step: np.ndarray, first_t: np.ndarray,
             last_t: np.ndarray | None) -> np.ndarray:
    """The times :func:`encode_t` coded (``first_t``, ``last_t`` per series; ``last_t`` None when the
    series may be cut short)."""
    starts = starts_of(count)
    dt = unzigzag(r)
    if len(step) and (step == step[0]).all():
        dt += step[0]
    else:
        dt += np.repeat(step, count)
    return _running(dt, starts, count, first_t, last_t)


# -- byte planes ----------------------------------------------------------------------------
def width(r: np.ndarray) -> int:
    """Bytes the largest residual needs (1..8)."""
    if not len(r):
        return 1
    return max(1, (int(r.view(np.uint64).max()).bit_length() + 7) // 8)


def pack(r: np.ndarray, bounds: np.ndarray, w: int) -> bytes:
    """The low ``w`` bytes of each residual, split in planes per row group (rows ``bounds[g]:bounds[g+1]``):
    row group g's bytes are its rows' first bytes, then their second bytes, ..."""
    b = r.view(np.uint8).reshape(-1, 8)
    out = np.empty(len(r) * w, np.uint8)
    pos = 0
    for lo, hi in pairwise(bounds.tolist()):
        n = hi - lo
        for k in range(w):  # one plane at a time: a strided read, a contiguous write (a 2-D transpose is 5x slower)
            out[pos:pos + n] = b[lo:hi, k]
            pos += n
    return out.tobytes()


def column_bytes(column, w: int) -> np.ndarray:
    """The bytes of a fixed_size_binary(``w``) Arrow column (chunked), end to end: what pack wrote."""
    parts = [np.frombuffer(c.buffers()[1], np.uint8)[c.offset * w:(c.offset + len(c)) * w] for c in column.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def unpack(buf, sizes: list[int], w: int) -> np.ndarray:
    """The residuals of consecutive row groups of ``sizes`` rows from :func:`pack`'s bytes."""
    raw = np.frombuffer(buf, np.uint8)
    out = np.zeros((sum(sizes), 8), np.uint8)
    pos = row = 0
    for n in sizes:
        for k in range(w):  # as in pack: plane by plane
            out[row:row + n, k] = raw[pos:pos + n]
            pos += n
        row += n
    return out.view(np.int64).ravel()
