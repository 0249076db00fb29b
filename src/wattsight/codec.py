"""Encode a :class:`~wattsight.sample.Batch` to bytes and back: msgpack with packed arrays.

The wire form is a msgpack map::

    {"f": 1,                                  # format version
     "s": [[probe, metric, unit, kind, provenance], ...],   # series table
     "w": 1|2|4,                              # bytes per series index
     "i": <sidx as little-endian uint8/16/32>,
     "t": <measured_at as little-endian int64 ms>,
     "v": <values as little-endian float64>}

Arrays travel as raw bytes, so encoding and decoding cost one copy per column, not one
Python object per sample; decoding even none: ``t`` and ``v`` are read-only views of the
message.  The same bytes are what the store's write-ahead log keeps.

A sender resends the same series table with every batch (a rack's thousands of series), and
building the Series objects was most of the decoding time: both sides keep the tables they
saw recently, by the table's bytes when decoding and by the table object when encoding, so a
table seen before costs a dict look-up and the receiver gets *the same* tuple of Series back
(which lets the store map it to its series ids by identity, see ``tail.Registry.id_map``).
"""

from __future__ import annotations

import msgpack
import numpy as np

from .errors import MessageRefused, SampleError
from .recent import ByIdentity, Recent
from .sample import Batch, Series

FORMAT = 1
_IDX = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}
#: msgpack bin headers: marker -> bytes of the length that follows (big-endian).
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}


#: Series tables recently decoded (their msgpack bytes -> tuple of Series) and encoded (tuple ->
#: bytes).  64 tables of a few thousand series each: a few MB at most.
_decoded = Recent(64)
_encoded = ByIdentity(64)


def _table_bytes(series: tuple[Series, ...] | list[Series]) -> bytes:
    if isinstance(series, tuple):
        got = _encoded.get(series)
        if got is not None:
            return got
    raw = msgpack.packb([s.as_tuple() for s in series], use_bin_type=True)
    if isinstance(series, tuple) and len(series) >= 16:
        _encoded.put(series, raw)
    return raw


def encode_batch(batch: Batch) -> bytes:
    """The wire bytes of ``batch``."""
    n = len(batch.series)
    width = 1 if n <= 0xFF else 2 if n <= 0xFFFF else 4
    pack = msgpack.Packer(use_bin_type=True)
    return b"".join([
        pack.pack_map_header(6), pack.pack("f"), pack.pack(FORMAT), pack.pack("s"), _table_bytes(batch.series),
        pack.pack("w"), pack.pack(width),
        pack.pack("i"), pack.pack(batch.sidx.astype(_IDX[width], copy=False).tobytes()),
        pack.pack("t"), pack.pack(batch.t.astype("<i8", copy=False).tobytes()),
        pack.pack("v"), pack.pack(batch.v.astype("<f8", copy=False).tobytes()),
    ])


def _series_table(raw: bytes) -> tuple[Series, ...]:
    """The Series of a table given as its msgpack bytes (the same tuple for the same bytes)."""
    got = _decoded.get(raw)
    if got is None:
        rows = msgpack.unpackb(raw, raw=False, use_list=True)
        if not isinstance(rows, list):
            raise ValueError(f"the series table is a {type(rows).__name__}, not a list")
        got = tuple(Series(*map(str, row)) for row in rows)
        _decoded.put(raw, got)
    return got


def _array(data: bytes, span: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """A read-only view of the msgpack bin value at ``data[span[0]:span[1]]`` as ``dtype``."""
    lo, hi = span
    size = _BIN.get(data[lo]) if lo < hi else None
    if size is None:
        raise ValueError(f"a column is not binary (msgpack type 0x{data[lo]:02x})" if lo < hi else "empty column")
    start = lo + 1 + size
    length = int.from_bytes(data[lo + 1:start], "big")
    if start + length != hi or length % dtype.itemsize:
        raise ValueError(f"a column of {length} bytes does not hold whole {dtype} values")
    out = np.frombuffer(data, dtype, length // dtype.itemsize, start)
    # numpy's slow paths (ufunc.at ~50x) await a misaligned view: copy those to a new bytes
    return out if out.flags.aligned else np.frombuffer(data[start:hi], dtype)


def _fields(data: bytes) -> dict:
    """The map's small values decoded, and (start, end) offsets of its table and columns."""
    u = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1 << 20))
    u.feed(data)
    out = {}
    for _ in range(u.read_map_header()):
        key = u.unpack()
        if key in ("s", "i", "t", "v"):
            lo = u.tell()
            u.skip()
            out[key] = (lo, u.tell())
        else:
            out[key] = u.unpack()
    if u.tell() != len(data):
        raise msgpack.ExtraData(None, data[u.tell():])
    return out


def decode_batch(data: bytes) -> Batch:
    """The batch in ``data``; raises MessageRefused("malformed") on anything inconsistent."""
    try:
        data = bytes(data)  # the arrays are views of it: an immutable copy if it is not bytes already
        m = _fields(data)
        if m.get("f") != FORMAT:
            raise ValueError(f"unknown format {m.get('f')!r}")
        lo, hi = m["s"]
        series = _series_table(data[lo:hi])
        width = m["w"]
        if width not in _IDX:
            raise ValueError(f"bad index width {width!r}")
        sidx = _array(data, m["i"], _IDX[width]).astype(np.uint32)
        t = _array(data, m["t"], np.dtype("<i8")).astype(np.int64, copy=False)
        v = _array(data, m["v"], np.dtype("<f8")).astype(np.float64, copy=False)
        if not (len(sidx) == len(t) == len(v)):
            raise ValueError(f"columns differ in length: {len(sidx)}, {len(t)}, {len(v)}")
        if len(sidx) and int(sidx.max()) >= len(series):
            raise ValueError("series index out of range")
        return Batch(series, sidx, t, v)
    except KeyError as exc:
        raise MessageRefused("malformed", f"no {exc} field") from None
    except (ValueError, TypeError, SampleError, msgpack.ExtraData, msgpack.OutOfData,
            msgpack.FormatError, msgpack.StackError) as exc:
        raise MessageRefused("malformed", str(exc)) from None
