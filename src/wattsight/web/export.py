"""Export what a graph shows: a zip of data.csv, data.parquet, one PNG per graph and README.txt.

The rows are those of ``/api/v1/series`` for the selection, in long form (one row per probe
and time): raw samples with ``resolution=raw``, else per-bucket aggregates (``auto`` keeps
within :data:`MAX_ROWS` rows in all).  Counters also get their rate per second.  The PNGs
are the stacked summary and one graph per probe (the first :data:`MAX_PNGS`).
"""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np

from .. import __version__
from ..consumers.api.catalog import ENERGY, NET_IN, NET_OUT, POWER, read
from ..consumers.api.params import iso
from ..consumers.api.queries import series_step
from ..errors import QueryError
from ..sample import is_counter
from .graphs import chart
from .graphs_render import render_png
from .selection import Selection, bucket_arrays, rates, sample_rates

MAX_ROWS = 2_000_000
MAX_PNGS = 20
PNG_SIZE = (1000, 400)
BUCKET_COLUMNS = ("samples", "min", "avg", "max", "last")


def keys_of(selection: Selection) -> list[tuple[tuple[str, str], object]]:
    """``((probe, metric), SeriesInfo)`` per probe: the selection's metric, for power a probe's
    energy counter when it has no power series, for ``network`` both directions a probe has."""
    out = []
    for v in selection.views:
        if selection.metric == "network":
            out += [((v.id, m), v.metrics[m]) for m in (NET_IN, NET_OUT) if m in v.metrics]
            continue
        metric = selection.metric if selection.metric != POWER or POWER in v.metrics else ENERGY
        out.append(((v.id, metric), v.metrics[metric]))
    return out


def table(store, selection: Selection, start_ms: int, end_ms: int, resolution: str, max_points: int):
    """The rows as a ``pyarrow.Table`` and the step in ms (None for raw samples)."""
    import pyarrow as pa

    keys = keys_of(selection)
    per_series = max(1, min(max_points, MAX_ROWS // max(len(keys), 1)))
    limit = per_series if resolution == "auto" else max_points
    step, first = series_step(resolution, start_ms, end_ms, limit)
    cols: dict[str, list] = {}
    if step is None:
        data = read(store, [k for k, _ in keys], start_ms, end_ms)
        _check_rows(sum(len(data[k][0]) for k, _ in keys), resolution)
    else:
        _check_rows(len(keys) * -(-(end_ms - first) // step), resolution)
        data = bucket_arrays(store, [k for k, _ in keys], first - step, end_ms, step)
    for key, info in keys:
        part = _rows(data[key], step, first, is_counter(info.series.kind))
        n = len(part["t_ms"])
        part.update(probe=[key[0]] * n, metric=[key[1]] * n, unit=[info.series.unit] * n)
        for name, values in part.items():
            cols.setdefault(name, []).append(values)
    names = ["t_ms", "probe", "metric", "unit", *(("value",) if step is None else BUCKET_COLUMNS), "rate"]
    arrays = {name: _concat(cols.get(name, []), name) for name in names}
    time = pa.array(arrays["t_ms"], pa.timestamp("ms", tz="UTC"))
    return pa.table({"time": time, **arrays}), step


def _check_rows(n: int, resolution: str) -> None:
    if n > MAX_ROWS:
        raise QueryError(f"resolution={resolution} gives {n} rows, above the {MAX_ROWS} an export holds; "
                         "use resolution=auto, a longer step (e.g. 1m), a shorter range or fewer probes")


def _rows(d, step: int | None, first: int, counter: bool) -> dict[str, np.ndarray]:
    if step is None:
        t, v = d
        r = np.full(len(t), np.nan)
        if counter and len(t) > 1:
            r[1:] = sample_rates(t, v)
        return {"t_ms": t, "value": v, "rate": r}
    t, r = rates(d, step) if counter else (d["t"], np.full(len(d["t"]), np.nan))
    keep = t >= first
    cols = {name: np.asarray(d[name])[keep] for name in ("min", "avg", "max", "last")}
    return {"t_ms": t[keep], "samples": np.asarray(d["n"])[keep], **cols, "rate": r[keep]}


def _concat(parts: list, name: str):
    if name in ("probe", "metric", "unit"):
        return [x for p in parts for x in p]
    dtype = np.int64 if name in ("t_ms", "samples") else np.float64
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def csv_bytes(tbl) -> bytes:
    """The table as CSV: ``time`` in ISO 8601 UTC, numbers as written, empty cells for NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    iso_time = pa.array([iso(t) for t in tbl.column("t_ms").to_pylist()], pa.string())
    out = tbl.set_column(0, "time", iso_time)
    for i, name in enumerate(out.column_names):
        col = out.column(i)
        if pa.types.is_floating(col.type):
            out = out.set_column(i, name, pc.if_else(pc.is_nan(col), None, col))
    buf = io.BytesIO()
    pacsv.write_csv(out, buf)
    return buf.getvalue()


def parquet_bytes(tbl) -> bytes:
    """The table as Parquet (zstd), NaN stored as null."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for i, name in enumerate(tbl.column_names):
        col = tbl.column(i)
        if pa.types.is_floating(col.type):
            tbl = tbl.set_column(i, name, pc.if_else(pc.is_nan(col), None, col))
    buf = io.BytesIO()
    pq.write_table(tbl, buf, compression="zstd")
    return buf.getvalue()


def png_name(probe: str) -> str:
    """A file name for a probe's graph (ids may hold '/' and other characters)."""
    return "probe-" + re.sub(r"[^A-Za-z0-9._-]", "_", probe) + ".png"


def export_zip(store, selection: Selection, start_ms: int, end_ms: int, *, resolution: str, max_points: int,
               query: str, made_ms: int) -> bytes:
    """The archive's bytes (see the module doc); ``query`` is written into README.txt."""
    tbl, step = table(store, selection, start_ms, end_ms, resolution, max_points)
    width, height = PNG_SIZE
    pngs = {"summary.png": render_png(chart(store, selection, start_ms, end_ms, width), width, height)}
    for view in selection.views[:MAX_PNGS]:
        pngs[png_name(view.id)] = render_png(chart(store, selection, start_ms, end_ms, width, probe=view),
                                             width, height)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.txt", readme(selection, start_ms, end_ms, step, tbl.num_rows, query, list(pngs),
                                          made_ms))
        z.writestr("data.csv", csv_bytes(tbl))
        z.writestr("data.parquet", parquet_bytes(tbl))
        for name, png in pngs.items():
            z.writestr(name, png, compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
    return buf.getvalue()


def readme(selection: Selection, start_ms: int, end_ms: int, step: int | None, rows: int, query: str,
           pngs: list[str], made_ms: int) -> str:
    """README.txt: what was asked, what each file and column holds."""
    kind = "raw samples, one row per sample" if step is None else f"buckets of {step / 1000:g} s"
    values = ("value      the sample's value, in unit" if step is None else
              "samples    how many samples the bucket holds (empty buckets are left out: gaps, not zeros)\n"
              "  min, avg, max, last  of the bucket's samples (avg: plain mean), in unit")
    omitted = len(selection.views) - min(len(selection.views), MAX_PNGS)
    metric = "network (network_in and network_out)" if selection.metric == "network" else selection.metric
    skipped = "".join(f"\n  {s['probe']}: {s['reason']}" for s in selection.skipped) or " none"
    return f"""wattsight export (version {__version__}), made {iso(made_ms)}

Query: {query}
Range: {iso(start_ms)} to {iso(end_ms)} (UTC)
Metric: {metric}; {len(selection.views)} probes; {rows} rows, {kind}.
Named but without {selection.metric} data (left out):{skipped}

Files
  data.csv      the rows below; time in ISO 8601 UTC, empty cells where there is no value
  data.parquet  the same rows (time as timestamp[ms, UTC]; read with pandas, polars, duckdb, ...)
  summary.png   the selection stacked (network: in above the axis, out below)
  probe-*.png   one graph per probe ({len(pngs) - 1} drawn{f', {omitted} more not drawn' if omitted else ''})
  README.txt    this file

Columns (one row per probe and time)
  time       measurement time (raw) or bucket start, UTC
  t_ms       the same, in milliseconds since 1970-01-01T00:00:00Z
  probe      probe id
  metric     power (W), energy (J counter: for probes with no power series), network_in /
             network_out (bytes counters)
  unit       the unit of the values
  {values}
  rate       counters only: increase per second (W for energy, B/s for network), empty after a
             reset, a wrap or a gap
"""
