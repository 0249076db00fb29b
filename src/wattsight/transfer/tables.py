"""The long table wattsight exports and imports: one row per sample, in Parquet or CSV.

Columns, in this order (docs/export-import.md):

============ ================================ ==========================================
probe        dictionary<int32, string>        ``<site>.<name>``
metric       dictionary<int32, string>        power, energy, network_in, ...
unit         dictionary<int32, string>        SI unit: W, J, B
kind         dictionary<int32, string>        gauge, counter, or counter:<max_range>
provenance   dictionary<int32, string>        measured, derived, modelled
measured_at  timestamp[ms, tz=UTC]            CSV: ISO 8601, 2024-05-01T12:00:00.000Z
value        float64                          CSV: Python's shortest exact repr
============ ================================ ==========================================

Writers take :class:`~wattsight.sample.Batch` chunks; readers yield them, at most ``CHUNK`` rows
each, and raise :class:`~wattsight.errors.ConfigError` naming the file and row of a bad value.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..drivers.base import iso_ms as parse_iso_ms
from ..errors import ConfigError, SampleError
from ..sample import METRICS, Batch, Series

CHUNK = 1 << 20
COLUMNS = ("probe", "metric", "unit", "kind", "provenance", "measured_at", "value")
STRINGS = COLUMNS[:5]
META_KEY = b"wattsight.export"


def series_of(rows: list[tuple[str, ...]], first_row: list[int], path: Path, site: str | None) -> list[Series]:
    """Series from (probe, metric, unit, kind, provenance) tuples; a bad one names its first row."""
    out = []
    for (probe, metric, unit, kind, prov), row in zip(rows, first_row):
        if site and "." not in probe:
            probe = f"{site}.{probe}"
        known = METRICS.get(metric, ("", "gauge"))
        try:
            out.append(Series(probe, metric, unit or known[0], kind or known[1], prov or "measured"))
        except SampleError as exc:
            hint = "give --site SITE for probe names without a site" if "." not in probe else None
            raise ConfigError(str(exc), file=str(path), line=row, hint=hint) from None
    return out


# -- Parquet -------------------------------------------------------------------------------
class ParquetWriter:
    """Streams batches into one Parquet file (zstd, one or more row groups per batch)."""

    def __init__(self, path: Path, meta: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        dict_str = pa.dictionary(pa.int32(), pa.string())
        self.schema = pa.schema([pa.field(c, dict_str, nullable=False) for c in STRINGS]
                                + [pa.field("measured_at", pa.timestamp("ms", tz="UTC"), nullable=False),
                                   pa.field("value", pa.float64(), nullable=False)],
                                metadata={META_KEY: json.dumps(meta).encode()})
        self._w = pq.ParquetWriter(str(path), self.schema, compression="zstd", compression_level=3)

    def write(self, batch: Batch) -> None:
        pa = self.pa
        arrays = []
        for j, name in enumerate(STRINGS):
            values = [s.as_tuple()[j] for s in batch.series]
            uniq = list(dict.fromkeys(values))
            remap = np.asarray([uniq.index(x) for x in values], np.int32)
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(remap[batch.sidx]), pa.array(uniq, pa.string())))
        arrays.append(pa.array(batch.t, pa.timestamp("ms", tz="UTC")))
        arrays.append(pa.array(batch.v, pa.float64()))
        self._w.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=CHUNK)

    def close(self) -> None:
        self._w.close()


def read_parquet(path: Path, site: str | None = None) -> tuple[int, Iterator[Batch]]:
    """(rows, batches) of a Parquet long table; unit, kind and provenance may be absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(str(path))
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"not a readable Parquet file ({exc})", file=str(path)) from None
    names = f.schema_arrow.names
    missing = [c for c in ("probe", "metric", "measured_at", "value") if c not in names]
    if missing:
        raise ConfigError(f"no column {', '.join(missing)}", file=str(path), expected=f"columns {', '.join(COLUMNS)}")
    if not pa.types.is_timestamp(f.schema_arrow.field("measured_at").type):
        raise ConfigError(f"measured_at is {f.schema_arrow.field('measured_at').type}, not a timestamp",
                          file=str(path), expected="timestamp[ms, tz=UTC] (or any timestamp; naive is UTC)")
    wanted = [c for c in COLUMNS if c in names]

    def batches() -> Iterator[Batch]:
        row = 1
        try:
            for rb in f.iter_batches(batch_size=CHUNK, columns=wanted):
                yield _arrow_batch(rb, row, path, site)
                row += rb.num_rows
        except pa.ArrowException as exc:
            raise ConfigError(f"cannot read rows from {row} on ({exc})", file=str(path)) from None

    return f.metadata.num_rows, batches()


def _arrow_batch(rb, row: int, path: Path, site: str | None) -> Batch:
    import pyarrow as pa
    import pyarrow.compute as pc

    n = rb.num_rows
    for name in rb.schema.names:
        col = rb.column(name)
        if col.null_count:
            bad = row + int(pc.index(col.is_null(), True).as_py())
            raise ConfigError(f"{name} is empty (null)", file=str(path), line=bad)
    codes, values = [], []
    for name in STRINGS:
        if name not in rb.schema.names:
            codes.append(np.zeros(n, np.int64))
            values.append([""])
            continue
        col = rb.column(name)
        col = col if pa.types.is_dictionary(col.type) else col.cast(pa.string()).dictionary_encode()
        codes.append(col.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        values.append(col.dictionary.cast(pa.string()).to_pylist())
    combos, first, sidx = _unique_rows(codes, [len(v) for v in values])
    rows = [tuple(values[j][c] for j, c in enumerate(combo)) for combo in combos.tolist()]
    series = series_of(rows, [row + int(i) for i in first], path, site)
    t = rb.column("measured_at")
    t = t.cast(pa.timestamp("ms", t.type.tz), safe=False).cast(pa.int64()).to_numpy(zero_copy_only=False)
    try:
        v = rb.column("value").cast(pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowException as exc:
        raise ConfigError(f"value column is not numeric ({exc})", file=str(path), line=row) from None
    return Batch(tuple(series), sidx.astype(np.uint32), t.astype(np.int64), v.astype(np.float64))


def _unique_rows(codes: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of code columns (column j in 0..sizes[j]): (combos, first row of each, row -> combo)."""
    if not len(codes[0]):
        return np.zeros((0, len(codes)), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if math.prod(max(n, 1) for n in sizes) < 2**62:  # one int64 per row: a 1-D unique, much faster
        number = np.zeros(len(codes[0]), np.int64)
        for c, n in zip(codes, sizes):
            number = number * max(n, 1) + c
        _, first, inverse = np.unique(number, return_index=True, return_inverse=True)
        return np.stack(codes, axis=1)[first], first, inverse.reshape(-1)
    combos, first, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_index=True, return_inverse=True)
    return combos, first, inverse.reshape(-1)


# -- CSV -----------------------------------------------------------------------------------
class CsvWriter:
    """Streams batches into a CSV file with a header row; times in ISO 8601 UTC, exact values."""

    def __init__(self, path: Path | None, meta: dict) -> None:
        import sys

        self._f = open(path, "w", newline="", encoding="utf-8") if path else sys.stdout  # noqa: SIM115 -- closed by close()
        self._w = csv.writer(self._f, lineterminator="\n")
        self._w.writerow(COLUMNS)

    def write(self, batch: Batch) -> None:
        table = [s.as_tuple() for s in batch.series]
        for lo in range(0, len(batch), 65536):  # Python objects for a slice at a time
            part = batch.rows(lo, lo + 65536)
            when = np.datetime_as_string(part.t.astype("datetime64[ms]"), unit="ms").tolist()
            self._w.writerows((*table[i], f"{w}Z", repr(v))
                              for i, w, v in zip(part.sidx.tolist(), when, part.v.tolist()))

    def close(self) -> None:
        self._f.flush()
        if self._f.name != "<stdout>":
            self._f.close()


def read_csv(path: Path, site: str | None = None) -> tuple[int | None, Iterator[Batch]]:
    """(None, batches) of a CSV long table with a header; unit, kind and provenance may be absent."""
    try:
        f = open(path, newline="", encoding="utf-8")  # noqa: SIM115 -- closed by batches()
        header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the CSV file ({exc})", file=str(path)) from None
    header = [h.strip() for h in header or ()]
    missing = [c for c in ("probe", "metric", "measured_at", "value") if c not in header]
    if missing:
        f.close()
        raise ConfigError(f"the header has no column {', '.join(missing)}", file=str(path), line=1,
                          expected="a header row: " + ",".join(COLUMNS))
    pos = {c: header.index(c) for c in COLUMNS if c in header}

    def batches() -> Iterator[Batch]:
        with f:
            rows: list[list[str]] = []
            line = 2
            for rec in csv.reader(f):
                if not rec:
                    continue
                if len(rec) != len(header):
                    raise ConfigError(f"{len(rec)} fields, the header has {len(header)}", file=str(path),
                                      line=line + len(rows))
                rows.append(rec)
                if len(rows) == CHUNK:
                    yield _csv_batch(rows, pos, line, path, site)
                    line, rows = line + len(rows), []
            if rows:
                yield _csv_batch(rows, pos, line, path, site)

    return None, batches()


def _csv_batch(rows: list[list[str]], pos: dict, line: int, path: Path, site: str | None) -> Batch:
    table: dict[tuple, int] = {}
    first: list[int] = []
    sidx = np.empty(len(rows), np.uint32)
    cols = [pos.get(c) for c in STRINGS]
    for i, rec in enumerate(rows):
        key = tuple(rec[c] if c is not None else "" for c in cols)
        k = table.get(key)
        if k is None:
            k = table[key] = len(table)
            first.append(line + i)
        sidx[i] = k
    series = series_of(list(table), first, path, site)
    t = iso_ms([rec[pos["measured_at"]] for rec in rows], line, path)
    v = _floats([rec[pos["value"]] for rec in rows], line, path)
    return Batch(tuple(series), sidx, t, v)


def iso_ms(texts: list[str], line: int, path: Path) -> np.ndarray:
    """ISO 8601 times (a zone, or none for UTC) as int64 ms; a bad one names its line."""
    try:
        if all(s.endswith("Z") for s in texts):
            return np.array([s[:-1] for s in texts], dtype="datetime64[ms]").astype(np.int64)
    except ValueError:
        pass
    out = np.empty(len(texts), np.int64)
    for i, s in enumerate(texts):
        try:
            out[i] = parse_iso_ms(s.strip())
        except ValueError:
            raise ConfigError(f"measured_at {s!r} is not an ISO 8601 time", file=str(path), line=line + i,
                              expected="e.g. 2024-05-01T12:00:00.000Z") from None
    return out


def _floats(texts: list[str], line: int, path: Path) -> np.ndarray:
    try:
        return np.array(texts, dtype=np.float64)
    except ValueError:
        for i, s in enumerate(texts):
            try:
                float(s)
            except ValueError:
                raise ConfigError(f"value {s!r} is not a number", file=str(path), line=line + i) from None
        raise
