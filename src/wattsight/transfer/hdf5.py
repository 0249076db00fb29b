"""wattsight's HDF5 export layout (h5py, the ``hdf5`` extra).

::

    /                       attrs: format = "wattsight-export", format_version = 1,
                                   time_unit = "ms since 1970-01-01T00:00:00Z", and the export's
                                   range and selection (export_meta, JSON)
    /series                 compound (probe, metric, unit, kind, provenance), UTF-8 strings;
                            row i describes series i
    /samples/series         uint32 [n]  index into /series
    /samples/measured_at    int64  [n]  ms since the epoch, UTC
    /samples/value          float64[n]

The three sample columns are chunked, gzip-compressed (with shuffle) and as long as each other;
rows come series by series, in time order within a series.  Reading it back in Python::

    with h5py.File("may.h5") as f:
        series = [tuple(x.decode() for x in row) for row in f["series"][:]]
        t = f["samples/measured_at"][:]          # or a slice, for big files
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependency
from ..sample import Batch
from .tables import CHUNK, STRINGS, series_of

FORMAT = "wattsight-export"
_SAMPLES = (("series", np.uint32), ("measured_at", np.int64), ("value", np.float64))


def h5py_module():
    try:
        import h5py
    except ImportError:
        raise MissingDependency("h5py", "hdf5", "HDF5 export and import") from None
    return h5py


class Hdf5Writer:
    """Streams batches into the layout above; the series table is written at close."""

    def __init__(self, path: Path, meta: dict) -> None:
        h5py = self.h5py = h5py_module()
        self._f = h5py.File(path, "w")
        self._f.attrs.update(format=FORMAT, format_version=1, time_unit="ms since 1970-01-01T00:00:00Z",
                             export_meta=json.dumps(meta))
        g = self._f.create_group("samples")
        self._cols = {name: g.create_dataset(name, (0,), dtype=dt, maxshape=(None,), chunks=(1 << 16,),
                                             compression="gzip", compression_opts=4, shuffle=True)
                      for name, dt in _SAMPLES}
        self._ids: dict = {}
        self._n = 0

    def write(self, batch: Batch) -> None:
        ids = np.fromiter((self._ids.setdefault(s, len(self._ids)) for s in batch.series), np.uint32,
                          len(batch.series))
        n = len(batch)
        for name, data in (("series", ids[batch.sidx]), ("measured_at", batch.t), ("value", batch.v)):
            col = self._cols[name]
            col.resize((self._n + n,))
            col[self._n:] = data
        self._n += n

    def close(self) -> None:
        text = self.h5py.string_dtype("utf-8")
        dt = np.dtype([(name, text) for name in STRINGS])
        rows = np.array([s.as_tuple() for s in self._ids], dtype=dt) if self._ids else np.zeros(0, dt)
        self._f.create_dataset("series", data=rows)
        self._f.close()


def is_wattsight(path: Path) -> bool:
    """True when ``path`` is an HDF5 file in the layout above."""
    h5py = h5py_module()
    with h5py.File(path, "r") as f:
        return f.attrs.get("format") == FORMAT


def read_hdf5(path: Path, site: str | None = None) -> tuple[int, Iterator[Batch]]:
    """(rows, batches) of a wattsight HDF5 export."""
    h5py = h5py_module()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ConfigError(f"not a readable HDF5 file ({exc})", file=str(path)) from None
    try:
        table = f["series"][:]
        cols = [f[f"samples/{name}"] for name, _ in _SAMPLES]
    except KeyError as exc:
        f.close()
        raise ConfigError(f"no {exc.args[0] if exc.args else 'dataset'} in it: not a wattsight HDF5 export",
                          file=str(path), expected="/series and /samples/{series,measured_at,value}") from None
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        f.close()
        raise ConfigError("the /samples columns differ in length", file=str(path))
    rows = [tuple(x.decode() if isinstance(x, bytes) else str(x) for x in row) for row in table.tolist()]
    series = series_of(rows, [f"series[{i}]" for i in range(len(rows))], path, site)

    def batches() -> Iterator[Batch]:
        with f:
            for lo in range(0, n, CHUNK):
                sidx, t, v = (c[lo:lo + CHUNK] for c in cols)
                if len(sidx) and int(sidx.max()) >= len(series):
                    bad = lo + int(np.argmax(sidx >= len(series)))
                    raise ConfigError(f"samples/series[{bad}] = {int(sidx[bad - lo])} is beyond /series "
                                      f"({len(series)} rows)", file=str(path))
                yield Batch(tuple(series), sidx.astype(np.uint32), t.astype(np.int64), v.astype(np.float64))

    return n, batches()
