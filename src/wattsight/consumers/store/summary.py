"""A segment's summary: the per-series arrays (count, first/last time and value or integer, scale,
residual modes...) and row-group times kept in the Parquet key-value metadata
``wattsight.summary`` as zstd-compressed msgpack of packed arrays (docs/consumers/store.md)."""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pyarrow as pa

from ...sample import Series
from . import restarts

_NUMERIC = {"count": "<i8", "first_t": "<i8", "last_t": "<i8", "first_v": "<f8", "last_v": "<f8",
            "scale": "i1"}
_NUMERIC2 = {"mode": "i1", "partner": "<i4", "dict_n": "<i4", "first_x": "<i8", "last_x": "<i8", "step": "<i8"}


def arrays(fmt: int) -> dict[str, str]:
    """The summary's per-series arrays in format ``fmt`` (3: the first/last values are first/last_x decoded)."""
    out = dict(_NUMERIC, **(_NUMERIC2 if fmt >= 2 else {}))
    if fmt >= 3:
        del out["first_v"], out["last_v"]
    return out


def pack(summary: dict) -> bytes:
    """The metadata value of ``summary`` (its "fmt" says which arrays it holds)."""
    fmt = summary.get("fmt", 1)
    body = {k: np.ascontiguousarray(summary[k], dtype=dt).tobytes() for k, dt in arrays(fmt).items()}
    body["series"] = [s.as_tuple() for s in summary["series"]]
    body["f"] = fmt
    if fmt >= 2:
        body["w"], body["wt"] = int(summary["width"]), int(summary["t_width"])
        body["rg_t"] = np.ascontiguousarray(summary["rg_t"], dtype="<i8").tobytes()
    every = int(summary.get("restart") or 0)
    if fmt >= 2 and every:
        body["rs"] = every
        for key, first in (("rs_x", "first_x"), ("rs_t", "first_t")):
            d = restarts.deltas(summary[key], summary[first], summary["count"], every)
            body[key] = d.astype("<i8").tobytes()
    raw = msgpack.packb(body, use_bin_type=True)
    return struct.pack("<Q", len(raw)) + pa.compress(raw, codec="zstd", asbytes=True)


def unpack(blob: bytes, points: bool = False) -> dict:
    """The summary; in format 3 without first_v/last_v (the reader decodes first_x/last_x with the
    scale).  The restart points' spacing (``restart``) always, their values (``rs_x``, ``rs_t``) when
    ``points``: a store opens many segments and reads the points of few (segment.Segment.points)."""
    (size,) = struct.unpack_from("<Q", blob)
    body = msgpack.unpackb(pa.decompress(blob[8:], decompressed_size=size, codec="zstd", asbytes=True),
                           raw=False)
    fmt = body.get("f")
    if fmt not in (1, 2, 3):
        raise ValueError(f"unknown summary format {fmt!r} (a newer wattsight wrote it: upgrade to read it)")
    out = {k: np.frombuffer(body[k], dtype=dt).astype(np.dtype(dt).newbyteorder("="))
           for k, dt in arrays(fmt).items()}
    out["series"] = [Series(*row) for row in body["series"]]
    out["fmt"] = fmt
    if fmt >= 2:
        out["width"], out["t_width"] = int(body["w"]), int(body["wt"])
        out["rg_t"] = np.frombuffer(body["rg_t"], dtype="<i8").astype(np.int64)
    if fmt >= 2 and body.get("rs"):  # restart points (restarts.py): absent from older segments
        out["restart"] = every = int(body["rs"])
        for key, first in (("rs_x", "first_x"), ("rs_t", "first_t")) if points else ():
            d = np.frombuffer(body[key], dtype="<i8").astype(np.int64)
            out[key] = restarts.undeltas(d, out[first], out["count"], every)
    return out
