"""``wattsight import``: Parquet, CSV, HDF5 exports and Kwapi dumps into the store, idempotently.

Every chunk read is cut down to the samples the store does not hold yet: a (probe, metric,
time) seen earlier in the file, or already stored, is a duplicate and is skipped, whatever its
value (the first one wins; those whose value differs are counted apart).  Importing the same
file twice therefore leaves the store as it was, and an import stopped half-way can simply be
run again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..sample import Batch
from . import kwapi, tables
from .stores import config_probe_ids, open_writer, store_config

FORMATS = ("auto", "parquet", "csv", "hdf5", "kwapi-hdf5", "rrd")
FLUSH_ROWS = 2_000_000  # samples imported between store flushes: bounds the embedded store's memory


@dataclass
class Counts:
    """What one file (or all of them) gave."""

    read: int = 0
    imported: int = 0
    dup_file: int = 0
    dup_stored: int = 0
    conflicts: int = 0
    series: set = field(default_factory=set)

    def add(self, other: Counts) -> None:
        for name in ("read", "imported", "dup_file", "dup_stored", "conflicts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.series |= other.series

    def line(self, what: str, seconds: float) -> str:
        diff = f", {self.conflicts:,} of them with another value (the stored one kept)" if self.conflicts else ""
        return (f"wattsight: {what}: {self.read:,} samples read, {self.imported:,} imported, "
                f"{self.dup_file + self.dup_stored:,} duplicates skipped ({self.dup_file:,} within the file, "
                f"{self.dup_stored:,} already stored{diff}), {len(self.series)} series, in {seconds:.1f} s")


def import_files(args) -> int:
    """The import verb; returns the exit code."""
    began = time.monotonic()
    files = expand(args.files)
    store_cfg, cfg = store_config(args)
    names = [n.strip() for n in (args.names or "").split(",") if n.strip()] + config_probe_ids(cfg)
    kinds = {path: detect(path, args.format) for path in files}  # before opening the store
    notes: list[str] = []
    total = Counts()
    store = open_writer(store_cfg)
    from .progress import bar

    try:
        with bar(args.quiet) as progress:
            for path in files:
                t0 = time.monotonic()
                rows, batches = open_file(path, kinds[path], args, names, notes)
                job = progress.add_task(f"import {path.name}", total=rows, where="")
                counts = Counts()
                for batch in batches:
                    one = store_new(store, batch)
                    counts.add(one)
                    progress.update(job, advance=one.read, where=f"{one.imported:,} new")
                    if counts.imported // FLUSH_ROWS != (counts.imported - one.imported) // FLUSH_ROWS:
                        store.flush()
                progress.update(job, total=counts.read, completed=counts.read)
                if not args.quiet and len(files) > 1:
                    progress.console.print(counts.line(f"{path} ({kinds[path]})", time.monotonic() - t0),
                                           highlight=False, soft_wrap=True)
                total.add(counts)
    finally:
        store.close()
    if not args.quiet:
        for note in notes:
            print(f"wattsight: note: {note}", file=sys.stderr)
        what = f"{files[0]} ({kinds[files[0]]})" if len(files) == 1 else f"{len(files)} files"
        print(total.line(what, time.monotonic() - began), file=sys.stderr)
    return 0


def expand(paths: list[str]) -> list[Path]:
    """The files named; a folder stands for the files in it (Kwapi's rrd_dir or hdf5_dir)."""
    out: list[Path] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError("no such file or folder", file=name)
    if not out:
        raise ConfigError("no file to import in " + ", ".join(paths))
    return out


def detect(path: Path, fmt: str | None) -> str:
    """The format of ``path``: as given, else from its first bytes (and, for HDF5, its layout)."""
    if fmt and fmt != "auto":
        return fmt
    with path.open("rb") as f:
        head = f.read(512)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        from .hdf5 import is_wattsight

        if is_wattsight(path):
            return "hdf5"
        if kwapi.is_kwapi_hdf5(path):
            return "kwapi-hdf5"
        raise ConfigError("an HDF5 file in neither wattsight's export layout nor kwapi-g5k's", file=str(path),
                          hint="docs/export-import.md describes both")
    if head[:4] == b"RRD\x00":
        return "rrd"
    if path.suffix.lower() == ".csv" or head.split(b"\n", 1)[0].lstrip(b"\xef\xbb\xbf").startswith(b"probe,"):
        return "csv"
    raise ConfigError("cannot tell the format of this file", file=str(path),
                      expected=f"--format one of {', '.join(FORMATS[1:])}")


def open_file(path: Path, fmt: str, args, names: list[str], notes: list[str]
              ) -> tuple[int | None, Iterator[Batch]]:
    if fmt == "parquet":
        return tables.read_parquet(path, args.site)
    if fmt == "csv":
        return tables.read_csv(path, args.site)
    if fmt == "hdf5":
        from .hdf5 import read_hdf5

        return read_hdf5(path, args.site)
    if fmt == "kwapi-hdf5":
        return kwapi.read_kwapi_hdf5(path, args.metric, notes)
    return kwapi.read_rrd(path, names, args.site, args.metric)


def store_new(store, batch: Batch) -> Counts:
    """Store the samples of ``batch`` that neither come earlier in it nor are stored; count them."""
    counts = Counts(read=len(batch), series=set(batch.series))
    if not len(batch):
        return counts
    index = {key: i for i, key in enumerate(dict.fromkeys(s.key for s in batch.series))}
    keys = list(index)
    kid = np.asarray([index[s.key] for s in batch.series], np.int64)[batch.sidx]
    t, v = batch.t, batch.v
    order = np.lexsort((np.arange(len(t)), t, kid))  # by key, then time, then position: first wins
    keep = np.ones(len(t), bool)
    again = (kid[order[1:]] == kid[order[:-1]]) & (t[order[1:]] == t[order[:-1]])
    keep[order[1:][again]] = False
    counts.dup_file = int(again.sum())
    stored = store.read(keys, int(t.min()), int(t.max()))
    bounds = np.searchsorted(kid[order], np.arange(len(keys) + 1))
    for j, key in enumerate(keys):
        st, sv = stored[key]
        if not len(st):
            continue
        rows = order[bounds[j]:bounds[j + 1]]
        pos = np.minimum(np.searchsorted(st, t[rows]), len(st) - 1)
        hit = (st[pos] == t[rows]) & keep[rows]
        counts.dup_stored += int(hit.sum())
        same = (sv[pos] == v[rows]) | (np.isnan(sv[pos]) & np.isnan(v[rows]))
        counts.conflicts += int((hit & ~same).sum())
        keep[rows[hit]] = False
    counts.imported = int(keep.sum())
    if counts.imported:
        store.handle(batch if counts.imported == len(batch) else batch.select(keep))
    return counts
