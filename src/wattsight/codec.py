"""Encode a :class:`~wattsight.sample.Batch` to bytes and back: msgpack with packed arrays.

The wire form is a msgpack map::

    {"f": 1,                                  # format version
     "s": [[probe, metric, unit, kind, provenance], ...],   # series table
     "w": 1|2|4,                              # bytes per series index
     "i": <sidx as little-endian uint8/16/32>,
     "t": <measured_at as little-endian int64 ms>,
     "v": <values as little-endian float64>}

Arrays travel as raw bytes, so encoding and decoding cost one copy per column, not one
Python object per sample.  The same bytes are what the store's write-ahead log keeps.
"""

from __future__ import annotations

import msgpack
import numpy as np

from .errors import MessageRefused, SampleError
from .sample import Batch, Series

FORMAT = 1
_IDX = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def encode_batch(batch: Batch) -> bytes:
    """The wire bytes of ``batch``."""
    n = len(batch.series)
    width = 1 if n <= 0xFF else 2 if n <= 0xFFFF else 4
    return msgpack.packb(
        {
            "f": FORMAT,
            "s": [s.as_tuple() for s in batch.series],
            "w": width,
            "i": batch.sidx.astype(_IDX[width], copy=False).tobytes(),
            "t": batch.t.astype("<i8", copy=False).tobytes(),
            "v": batch.v.astype("<f8", copy=False).tobytes(),
        },
        use_bin_type=True,
    )


#: The last series table decoded, as (rows, Series tuple): a publisher resends the same table
#: with every batch, and building thousands of Series objects was most of the decoding time.
#: One tuple, swapped whole, so that threads decoding at once never see half of it.
_last_table: tuple = (None, ())


def _series_table(rows) -> tuple[Series, ...]:
    global _last_table
    seen_rows, seen = _last_table
    if rows == seen_rows:
        return seen
    series = tuple(Series(*map(str, row)) for row in rows)
    _last_table = (rows, series)
    return series


def decode_batch(data: bytes) -> Batch:
    """The batch in ``data``; raises MessageRefused("malformed") on anything inconsistent."""
    try:
        m = msgpack.unpackb(data, raw=False, use_list=True)
        if not isinstance(m, dict) or m.get("f") != FORMAT:
            raise ValueError(f"unknown format {m.get('f') if isinstance(m, dict) else type(m).__name__}")
        series = _series_table(m["s"])
        width = m["w"]
        if width not in _IDX:
            raise ValueError(f"bad index width {width!r}")
        sidx = np.frombuffer(m["i"], dtype=_IDX[width]).astype(np.uint32)
        t = np.frombuffer(m["t"], dtype="<i8").astype(np.int64, copy=False)
        v = np.frombuffer(m["v"], dtype="<f8").astype(np.float64, copy=False)
        if not (len(sidx) == len(t) == len(v)):
            raise ValueError(f"columns differ in length: {len(sidx)}, {len(t)}, {len(v)}")
        if len(sidx) and int(sidx.max()) >= len(series):
            raise ValueError("series index out of range")
        return Batch(series, sidx, t, v)
    except (ValueError, TypeError, KeyError, SampleError, msgpack.ExtraData,
            msgpack.FormatError, msgpack.StackError) as exc:
        raise MessageRefused("malformed", str(exc)) from None
