"""Play a recorded trace (CSV or Parquet) back as if a meter were read now.

The trace has one sample per row, in columns ``probe, metric, measured_at, value, unit``
and optionally ``kind`` and ``provenance``.  The first read fixes the start: the trace's
first row is due then, and a row ``d`` ms later in the trace is due ``d / speed`` ms later.
Each read returns every row that has come due since the last read, time-stamped with its
due time (or, with ``keep_time``, its original time).  With ``loop`` the trace starts over
one typical sample interval after its last row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from pydantic import Field, ValidationInfo, field_validator

from ..errors import MeterPermissionError, MeterReplyError, MeterUnreachable, SampleError
from ..sample import KINDS, METRICS, PROVENANCES, Batch, Probe, Series, check_probe_id, now_ms
from .base import Driver, DriverConfig, FilePath

COLUMNS = ("probe", "metric", "measured_at", "value", "unit", "kind", "provenance")
REQUIRED = COLUMNS[:5]


class ReplayConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "replay"``."""

    type: Literal["replay"] = "replay"
    path: FilePath = Field(description="the trace: a .csv (or .csv.gz) or .parquet file; "
                                   "relative to the configuration file's folder")
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="auto: from the file's suffix")
    speed: float = Field(1.0, gt=0, le=1e6, description="1: real time; 10: ten times faster")
    keep_time: bool = Field(False, description="keep the recorded timestamps instead of shifting them to now")
    loop: bool = Field(False, description="start over after the last row")
    time_unit: Literal["auto", "s", "ms"] = Field(
        "auto", description="unit of a numeric measured_at; auto: integers are ms, decimals are s")
    rewrite_site: str | None = Field(None, description="replace the site of every probe id with this one")
    prefix: str = Field("", description="put this before every probe's name (after the site)")

    @field_validator("path")
    @classmethod
    def _from_config_folder(cls, path: Path, info: ValidationInfo) -> Path:
        # As for every path in the file: relative to the file's folder (the loader passes it).
        base = (info.context or {}).get("base")
        path = path.expanduser()
        return Path(base) / path if base is not None and not path.is_absolute() else path


SAMPLE = """\
# Play a recorded trace back: a .csv or .parquet file with columns
# probe, metric, measured_at, value, unit[, kind, provenance].
[drivers.replay]
type = "replay"
period = 1.0                  # s between reads; each read returns the rows come due since the last
path = "traces/rack-2024-05-01.csv"   # relative to this file's folder
speed = 10.0                  # 1 = real time, 10 = ten times faster
keep_time = false             # true: keep the recorded timestamps
loop = true                   # start over after the last row
time_unit = "auto"            # numeric measured_at: "auto" (integers ms, decimals s), "s" or "ms"
# rewrite_site = "lab"        # replace the site of every probe id
# prefix = "replay-"          # lyon.taurus-7 -> lyon.replay-taurus-7
"""


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


class ReplayDriver(Driver):
    """Plays a recorded CSV or Parquet trace back, sped up or looped (no hardware)."""

    Config = ReplayConfig
    SAMPLE = SAMPLE

    def __init__(self, config: ReplayConfig, *, site: str, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(config, site=site, clock=clock)
        self._trace: Trace | None = None
        self._start: int | None = None  # clock time of the first read
        self._lap = 0
        self._next = 0  # first row of the current lap not yet returned

    def trace(self) -> Trace:
        """The trace, read from the file the first time it is needed."""
        if self._trace is None:
            cfg = self.config
            fallback = max(1, int(round(cfg.period * 1000 * cfg.speed)))
            self._trace = load_trace(cfg.path, cfg.format, time_unit=cfg.time_unit, site=self.site,
                                     new_site=cfg.rewrite_site, prefix=cfg.prefix, fallback_step_ms=fallback)
        return self._trace

    @property
    def done(self) -> bool:
        """True once every row was returned and the trace does not loop."""
        return (self._trace is not None and not self.config.loop and self._next >= len(self._trace))

    def probes(self) -> list[Probe]:
        cfg, series = self.config, self.trace().series
        text = f"replayed from {cfg.path.name} (x{cfg.speed:g}{', looped' if cfg.loop else ''})"
        ids = dict.fromkeys(s.probe for s in series)
        return [Probe(pid, driver=cfg.type, period=cfg.period, description=text) for pid in ids]

    def read(self) -> Batch:
        trace, cfg = self.trace(), self.config
        now = int(self.clock())
        if self._start is None:
            self._start = now
        parts = self._advance((now - self._start) * cfg.speed)
        if not parts:
            return Batch.empty()
        rows = np.concatenate([np.arange(a, b) for _, a, b in parts])
        shift = np.concatenate([np.full(b - a, lap * trace.lap_ms, np.int64) for lap, a, b in parts])
        if cfg.keep_time:
            t = trace.t[rows] + shift
        else:
            t = self._start + np.floor((trace.rel[rows] + shift) / cfg.speed).astype(np.int64)
        batch = Batch(trace.series, trace.sidx[rows], t, trace.v[rows])
        return batch if len(trace.series) == 1 else batch.select(np.ones(len(rows), bool))

    def _advance(self, played: float) -> list[tuple[int, int, int]]:
        """(lap, first row, end row) of the rows come due once ``played`` trace ms have been played."""
        trace, parts = self._trace, []
        while True:
            end = int(np.searchsorted(trace.rel, played - self._lap * trace.lap_ms, side="right"))
            if end > self._next:
                parts.append((self._lap, self._next, end))
                self._next = end
            if end < len(trace) or not self.config.loop:
                return parts
            self._lap, self._next = self._lap + 1, 0


def rename_probe(probe: str, site: str, new_site: str | None = None, prefix: str = "") -> str:
    """A trace's probe name as published: ``<site>.`` added if missing, site and prefix rewritten."""
    old_site, dot, name = probe.partition(".")
    if not dot:
        old_site, name = site, probe
    return f"{new_site or old_site}.{prefix}{name}"


# -- loading ------------------------------------------------------------------------------
def load_trace(path: Path, fmt: str = "auto", *, time_unit: str = "auto", site: str = "local",
               new_site: str | None = None, prefix: str = "", fallback_step_ms: int = 1000) -> Trace:
    """Read and check a trace file; errors name the file and the line (CSV) or row (Parquet).

    Probe names are rewritten by :func:`rename_probe`; ``fallback_step_ms`` is the gap
    between laps when every row has the same time.
    """
    path = Path(path)
    fmt = _format(path, fmt)
    table = _read_table(path, fmt)
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


def _read_table(path: Path, fmt: str) -> pa.Table:
    try:
        with open(path, "rb"):
            pass
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
        return pq.read_table(path) if fmt == "parquet" else _read_csv(path)
    except (pa.ArrowException, OSError) as exc:
        raise MeterReplyError(f"cannot be read as {fmt}: {exc}", probe=str(path)) from None


def _read_csv(path: Path) -> pa.Table:
    bad = []

    def invalid(row) -> str:
        bad.append(row)
        return "error"

    try:
        return pcsv.read_csv(
            path,
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


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _iso_ms(text: str) -> int:
    """ms since the epoch of an ISO 8601 time; a time without a zone is taken as UTC."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
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
