"""``wattsight export``: samples of the store to a Parquet, CSV or HDF5 file, in bounded memory.

The selected series are read series by series (a group of series per read, or one series in
time windows when it alone is big), at most about ``tables.CHUNK`` samples at a time, and
written as they come: rows are ordered by probe, metric, then time.  The file is written under
a temporary name and renamed when complete, so an interrupted export leaves no partial file.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, QueryError
from ..sample import Batch, Series, now_ms
from . import tables
from .stores import SeriesInfo, open_reader, store_config

FORMATS = ("parquet", "csv", "hdf5")
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".h5": "hdf5", ".hdf5": "hdf5"}
END_OF_TIME = 253_402_300_799_999


@dataclass(frozen=True)
class Task:
    """One read: some keys over [start, end] (ms, inclusive), about ``rows`` samples."""

    keys: list[tuple[str, str]]
    start: int
    end: int
    rows: float


def export(args) -> int:
    """The export verb; returns the exit code."""
    began = time.monotonic()
    fmt = output_format(args.output, args.format)
    start, end = time_range(args.start, args.end)
    store_cfg, _ = store_config(args)
    src = open_reader(store_cfg)
    try:
        chosen = select(src.series(), args.probes, args.metrics, args.all)
        tasks = plan(chosen, start, end, tables.CHUNK)
        meta = {"wattsight_export": 1, "from_ms": start, "to_ms": end + 1, "probes": args.probes or "*",
                "metrics": args.metrics or "*", "exported_at_ms": now_ms()}
        n, first, last = write_file(src, chosen, tasks, fmt, args.output, meta, quiet=args.quiet)
    finally:
        src.close()
    where = "standard output" if args.output == "-" else f"{args.output} ({_size(args.output)})"
    span = f", {_iso(first)} to {_iso(last)}" if n else ""
    if not args.quiet:
        print(f"wattsight: exported {n:,} samples of {len(chosen)} series{span} to {where} as {fmt} "
              f"in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return 0


def output_format(output: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    found = SUFFIXES.get(Path(output).suffix.lower())
    if found is None:
        raise ConfigError(f"cannot tell the format from the name {output!r}", key="--format",
                          expected=f"one of {', '.join(FORMATS)}, or a name ending in {', '.join(SUFFIXES)}")
    return found


def time_range(start: str | None, end: str | None) -> tuple[int, int]:
    """[from, to) as inclusive ms bounds; no --from: the first sample, no --to: the last."""
    from ..consumers.api.params import parse_time_ms

    now = now_ms()
    try:
        lo = parse_time_ms(start, now, name="--from") if start else 0
        hi = parse_time_ms(end, now, name="--to") - 1 if end else END_OF_TIME
    except QueryError as exc:
        raise ConfigError(str(exc)) from None
    if lo > hi:
        raise ConfigError(f"--from {start} is not before --to {end}", key="--from")
    return lo, hi


def select(infos: list[SeriesInfo], probes: str | None, metrics: str | None, every: bool) -> dict:
    """{(probe, metric): Series} of the stored series the options name (the latest of a key's series)."""
    chosen: dict[tuple[str, str], SeriesInfo] = {}
    for info in infos:
        old = chosen.get(info.series.key)
        if old is None or info.last_t >= old.last_t:
            chosen[info.series.key] = info
    stored_probes = sorted({k[0] for k in chosen})
    if not every:
        patterns = [p.strip() for p in (probes or "").split(",") if p.strip()]
        for pat in patterns:
            if not fnmatch.filter(stored_probes, pat):
                near = difflib.get_close_matches(pat, stored_probes, n=3)
                raise ConfigError(f"no stored series for probe {pat!r}", key="--probes",
                                  hint=f"did you mean {', '.join(near)}?" if near else
                                  f"the store holds {len(stored_probes)} probe(s); --all exports every one")
        chosen = {k: i for k, i in chosen.items() if any(fnmatch.fnmatchcase(k[0], p) for p in patterns)}
    if metrics:
        wanted = [m.strip() for m in metrics.split(",") if m.strip()]
        have = {k[1] for k in chosen}
        unknown = [m for m in wanted if m not in have]
        if unknown:
            raise ConfigError(f"no stored series of metric {', '.join(unknown)} for these probes", key="--metrics",
                              expected=f"some of {', '.join(sorted(have)) or '(none stored)'}")
        chosen = {k: i for k, i in chosen.items() if k[1] in wanted}
    if not chosen:
        raise ConfigError("nothing to export: the store holds no series", hint="check -c or --store")
    return dict(sorted(chosen.items()))


def plan(chosen: dict, start: int, end: int, chunk: int) -> list[Task]:
    """Reads of about ``chunk`` samples or fewer: keys grouped, a big series cut in time windows."""
    tasks: list[Task] = []
    group: list[tuple[str, str]] = []
    est = 0.0
    for key, info in chosen.items():
        lo, hi = max(start, info.first_t), min(end, info.last_t)
        if lo > hi:
            continue
        rows = info.count * (hi - lo + 1) / max(info.last_t - info.first_t + 1, 1)
        if group and (est + rows > chunk):
            tasks.append(Task(group, start, end, est))
            group, est = [], 0.0
        if rows > chunk:
            pieces = math.ceil(rows / chunk)
            edges = np.linspace(lo, hi + 1, pieces + 1).astype(np.int64)
            tasks += [Task([key], int(a), int(b) - 1, rows / pieces) for a, b in itertools.pairwise(edges)]
            continue
        group.append(key)
        est += rows
    if group:
        tasks.append(Task(group, start, end, est))
    return tasks


def chunks(src, chosen: dict, tasks: list[Task]) -> Iterator[tuple[Task, Batch]]:
    """(task, batch) for each read, the batch's rows ordered by key then time."""
    for task in tasks:
        data = src.read(task.keys, task.start, task.end)
        series: list[Series] = []
        sidx, ts, vs = [], [], []
        for key in task.keys:
            t, v = data[key]
            if len(t):
                sidx.append(np.full(len(t), len(series), np.uint32))
                series.append(chosen[key].series)
                ts.append(t)
                vs.append(v)
        if series:
            yield task, Batch(tuple(series), np.concatenate(sidx), np.concatenate(ts), np.concatenate(vs))


def write_file(src, chosen: dict, tasks: list[Task], fmt: str, output: str, meta: dict, *, quiet: bool
               ) -> tuple[int, int, int]:
    """Write the tasks' samples; returns (samples, first time, last time)."""
    from .progress import bar

    stdout = output == "-"
    if stdout and fmt != "csv":
        raise ConfigError(f"{fmt} cannot be written to standard output", key="-o", hint="give a file name")
    final = Path(output)
    tmp = None if stdout else final.with_name(f".{final.name}.tmp-{os.getpid()}")
    writer = _writer(fmt, tmp, meta)
    n, first, last = 0, END_OF_TIME, 0
    try:
        with bar(quiet) as progress:
            job = progress.add_task(f"export {final.name}", total=sum(t.rows for t in tasks) or None, where="")
            for done, (task, batch) in enumerate(chunks(src, chosen, tasks), 1):
                writer.write(batch)
                n += len(batch)
                first, last = min(first, int(batch.t.min())), max(last, int(batch.t.max()))
                progress.update(job, advance=len(batch), where=f"{task.keys[-1][0]}/{task.keys[-1][1]} "
                                f"to {_iso(int(batch.t.max()))}, read {done}/{len(tasks)}")
            progress.update(job, total=n, completed=n)
        writer.close()
        if tmp is not None:
            os.replace(tmp, final)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    return n, first, last


def _writer(fmt: str, path: Path | None, meta: dict):
    if fmt == "parquet":
        return tables.ParquetWriter(path, meta)
    if fmt == "csv":
        return tables.CsvWriter(path, meta)
    from .hdf5 import Hdf5Writer

    return Hdf5Writer(path, meta)


def _iso(ms: int) -> str:
    from ..consumers.api.params import iso

    return iso(ms)


def _size(path: str) -> str:
    size = Path(path).stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size:,} bytes"
