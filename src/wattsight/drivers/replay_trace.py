"""Reading a recorded trace (CSV or Parquet) for the ``replay`` driver: :func:`load_trace` checks it
and gives a :class:`Trace`, its rows sorted by time, probe names rewritten by :func:`rename_probe`.

The file is opened through ``opener`` (default :func:`open_trace`), so a test can make it raise
:class:`PermissionError` even as root, where ``chmod 000`` denies nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..errors import MeterPermissionError, MeterReplyError, MeterUnreachable, SampleError
from ..sample import KINDS, METRICS, PROVENANCES, Series, check_probe_id

COLUMNS = ("probe", "metric", "measured_at", "value", "unit", "kind", "provenance")
REQUIRED = COLUMNS[:5]

#: Opens a trace file for binary reading; the one contact with the file system.
Opener = Callable[[Path], BinaryIO]


def open_trace(path: Path) -> BinaryIO:
    """The trace file at ``path``, open for reading (the default opener)."""
    return open(path, "rb")


@dataclass(frozen=True, eq=False)
class Trace:
    """A loaded trace: a series table and rows sorted by time (stable: ties keep file order)."""

    series: tuple[Series, ...]
    sidx: np.ndarray  # uint32
    t: np.ndarray  # int64 ms, recorded
    v: np.ndarray  # float64
    lap_ms: int  # trace time from one lap's first row to the next lap's

    @cached_property
    def rel(self) -> np.ndarray:
        """Each row's ms since the first row."""
        return self.t - self.t[0]

    def __len__(self) -> int:
        return len(self.t)


def rename_probe(probe: str, site: str, new_site: str | None = None, prefix: str = "") -> str:
    """A trace's probe name as published: ``<site>.`` added if missing, site and prefix rewritten."""
    old_site, dot, name = probe.partition(".")
    if not dot:
        old_site, name = site, probe
    return f"{new_site or old_site}.{prefix}{name}"


# -- loading ------------------------------------------------------------------------------
def load_trace(path: Path, fmt: str = "auto", *, time_unit: str = "auto", site: str = "local",
               new_site: str | None = None, prefix: str = "", fallback_step_ms: int = 1000,
               opener: Opener = open_trace) -> Trace:
    """Read and check a trace file; errors name the file and the line (CSV) or row (Parquet).

    Probe names are rewritten by :func:`rename_probe`; ``fallback_step_ms`` is the gap
    between laps when every row has the same time; the file is opened by ``opener``.
    """
    path = Path(path)
    fmt = _format(path, fmt)
    table = _read_table(path, fmt, opener)
    where = (lambda i: f"line {i + 2}") if fmt == "csv" else (lambda i: f"row {i + 1}")
    err = _Errors(path, where)
    _check_columns(table, err)
    if table.num_rows == 0:
        raise err.at(None, "the trace has no rows (expected one sample per row)")
    t = _times(table["measured_at"], time_unit, err)
    v = _values(table["value"], err)
    series, sidx = _series(table, lambda p: rename_probe(p, site, new_site, prefix), err)
    order = np.argsort(t, kind="stable")
    t, v, sidx = t[order], v[order], sidx[order]
    steps = np.diff(np.unique(t))
    step = int(np.median(steps)) if len(steps) else fallback_step_ms
    return Trace(series, sidx, t, v, int(t[-1] - t[0]) + max(step, 1))


class _Errors:
    """Builds MeterReplyErrors that name the file and the line or row."""

    def __init__(self, path: Path, where: Callable[[int], str]) -> None:
        self.path, self.where = path, where

    def at(self, row: int | None, message: str) -> MeterReplyError:
        prefix = "" if row is None else f"{self.where(row)}: "
        return MeterReplyError(prefix + message, probe=str(self.path))


def _format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] in ([".parquet"], [".pq"]):
        return "parquet"
    if ".csv" in suffixes[-2:]:
        return "csv"
    raise MeterReplyError("cannot tell the trace's format from its name: set format = \"csv\" or "
                          "\"parquet\" in the driver's section", probe=str(path))


def _read_table(path: Path, fmt: str, opener: Opener) -> pa.Table:
    try:
        file = opener(path)
    except FileNotFoundError:
        raise MeterUnreachable(f"no such trace file (working directory: {os.getcwd()}); check `path` "
                               "in the driver's section (relative to the configuration file's folder)",
                               probe=str(path)) from None
    except PermissionError:
        raise MeterPermissionError("this user may not read the trace file; check its permissions",
                                   probe=str(path)) from None
    except IsADirectoryError:
        raise MeterReplyError("is a directory; `path` must name a .csv or .parquet file",
                              probe=str(path)) from None
    try:
        with file:
            if fmt == "parquet":
                return pq.read_table(file)
            gzipped = [s.lower() for s in path.suffixes][-1:] == [".gz"]
            return _read_csv(pa.CompressedInputStream(file, "gzip") if gzipped else file, path)
    except (pa.ArrowException, OSError) as exc:
        raise MeterReplyError(f"cannot be read as {fmt}: {exc}", probe=str(path)) from None


def _read_csv(source, path: Path) -> pa.Table:
    bad = []

    def invalid(row) -> str:
        bad.append(row)
        return "error"

    try:
        return pcsv.read_csv(
            source,
            read_options=pcsv.ReadOptions(use_threads=False),
            parse_options=pcsv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}),
        )
    except pa.ArrowInvalid:
        if bad and bad[0].number is not None:
            row = bad[0]
            raise MeterReplyError(f"line {row.number}: {row.actual_columns} fields where the header has "
                                  f"{row.expected_columns}: {row.text!r}", probe=str(path)) from None
        raise


def _check_columns(table: pa.Table, err: _Errors) -> None:
    names = table.column_names
    unknown = [c for c in names if c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in names]
    if unknown or missing:
        what = "; ".join(x for x in (missing and f"missing column(s) {', '.join(missing)}",
                                     unknown and f"unknown column(s) {', '.join(unknown)}") if x)
        raise err.at(None, f"{what} (expected {', '.join(REQUIRED)} and optionally kind, provenance)")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _strings(col: pa.ChunkedArray, name: str, err: _Errors, required: bool) -> pa.ChunkedArray:
    """A column as strings; an empty cell is an error when the column is required."""
    col = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    empty = pc.fill_null(pc.equal(col, ""), True).to_numpy(zero_copy_only=False)
    if required and empty.any():
        raise err.at(_first(empty), f"{name} is empty")
    return col


def _series(table: pa.Table, rename: Callable[[str], str],
            err: _Errors) -> tuple[tuple[Series, ...], np.ndarray]:
    """The series table and each row's index into it."""
    codes, words = [], []
    for name in ("probe", "metric", "unit", "kind", "provenance"):
        if name in table.column_names:
            enc = _strings(table[name], name, err, name in REQUIRED).combine_chunks().dictionary_encode()
            codes.append(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False))
            words.append(enc.dictionary.to_pylist())
        else:
            codes.append(np.full(table.num_rows, -1))
            words.append([])
    keys, first, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_index=True, return_inverse=True)
    table_ = tuple(_one_series([w[c] if c >= 0 else "" for w, c in zip(words, key.tolist())],
                               int(row), rename, err) for key, row in zip(keys, first))
    return table_, inverse.reshape(-1).astype(np.uint32)


def _one_series(fields: list[str], row: int, rename: Callable[[str], str], err: _Errors) -> Series:
    probe, metric, unit, kind, provenance = fields
    known = METRICS.get(metric)
    kind = kind or (known[1] if known else "gauge")
    provenance = provenance or "measured"
    if known and (unit, kind) != known:
        raise err.at(row, f"{metric} must be a {known[1]} in {known[0]} (SI units), not a {kind} in {unit!r}")
    if kind not in KINDS or provenance not in PROVENANCES:
        raise err.at(row, f"kind {kind!r} / provenance {provenance!r} (expected kind in {KINDS} "
                          f"and provenance in {PROVENANCES})")
    try:
        return Series(check_probe_id(rename(probe)), metric, unit, kind, provenance)
    except SampleError as exc:
        raise err.at(row, str(exc)) from None


def _values(col: pa.ChunkedArray, err: _Errors) -> np.ndarray:
    if _is_text(col.type):
        col = _strings(col, "value", err, True)
        try:
            col = pc.cast(col, pa.float64())
        except pa.ArrowInvalid:
            parsed = _parse_each(col, float, "value", "a number", err)
            col = pa.chunked_array([pa.array(parsed, pa.float64())])
    elif not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise err.at(None, f"column value has type {col.type} (expected numbers)")
    v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    if not np.isfinite(v).all():
        raise err.at(_first(~np.isfinite(v)), "value is empty, NaN or infinite (expected a finite number)")
    return v


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_dictionary(typ)


def _parse_each(col: pa.ChunkedArray, parse: Callable[[str], object], name: str, expected: str,
                err: _Errors) -> list:
    """Cells parsed one by one in Python (the slow path, when Arrow refused the column)."""
    out = []
    for i, text in enumerate(col.to_pylist()):
        try:
            out.append(parse(text))
        except (TypeError, ValueError):
            raise err.at(i, f"{name} {text!r} is not {expected}") from None
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_ms(text: str) -> int:
    """ms since the epoch of an ISO 8601 time; a time without a zone is taken as UTC."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _times(col: pa.ChunkedArray, unit: str, err: _Errors) -> np.ndarray:
    """measured_at as int64 ms: integers are ms, decimals s (or as ``unit`` says), or ISO times."""
    typ = col.type
    if pa.types.is_timestamp(typ):
        if col.null_count:
            raise err.at(_first(pc.is_null(col).to_numpy(zero_copy_only=False)), "measured_at is empty")
        return pc.cast(col, pa.timestamp("ms", typ.tz), safe=False).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return _numeric_times(col, unit, err)
    if not _is_text(typ):
        raise err.at(None, f"column measured_at has type {typ} (expected seconds, ms or ISO 8601 times)")
    col = _strings(col, "measured_at", err, True)
    for target in (pa.int64(), pa.float64()):
        try:
            return _numeric_times(pc.cast(col, target), unit, err)
        except pa.ArrowInvalid:
            pass
    for target in (pa.timestamp("ms", "UTC"), pa.timestamp("ms")):  # with a zone; without (UTC)
        try:
            return pc.cast(col, target, safe=False).cast(pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            pass
    if _is_number(col[0].as_py()):
        x = _parse_each(col, float, "measured_at", "a number like the first row's", err)
        return _numeric_times(pa.chunked_array([pa.array(x, pa.float64())]), unit, err)
    iso = "an ISO 8601 time like 2024-05-01T12:00:00Z"
    return np.asarray(_parse_each(col, _iso_ms, "measured_at", iso, err), dtype=np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_times(col: pa.ChunkedArray, unit: str, err: _Errors) -> np.ndarray:
    if col.null_count:
        raise err.at(_first(pc.is_null(col).to_numpy(zero_copy_only=False)), "measured_at is empty")
    x = col.to_numpy()
    ms = unit == "ms" or (unit == "auto" and pa.types.is_integer(col.type))
    if not np.isfinite(x).all():
        raise err.at(_first(~np.isfinite(x)), "measured_at is NaN or infinite")
    return x.astype(np.int64) if ms else np.round(x * 1000.0).astype(np.int64)
