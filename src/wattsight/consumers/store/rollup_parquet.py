"""One rollup partition as a Parquet file: cells of one level and time span, for many keys.

A file holds the columns of :data:`rollup.COLUMNS`, ``kid`` being an index into the list of
``[probe, metric, kind]`` in the file's key-value metadata (``wattsight.rollup.keys``): each
process numbers keys as it meets them, so the file names them.  Rows are sorted by (kid, b) as
the writing process numbered the keys.

Written with integers as deltas and floats split in byte streams (their exponent and high bytes
repeat from cell to cell), zstd 3, no dictionaries and no Arrow schema blob (it repeated the
keys' metadata): a 1 min partition of 1,000 probes is 35 % smaller than with Parquet's
defaults, and 4x faster to write -- partitions are written at every flush.

Rows are cut in row groups of about :data:`GROUP_ROWS` rows, between keys, the first (file) kid
of each group listed in the metadata (``wattsight.rollup.groups``): a read of some keys decodes
only the groups holding them (:func:`load_keys`; a week of 100 probes of 1,000 reads 2 or 3 of
the 18 groups of each day's 5 min cells).  Files written before (one row group, Parquet's
defaults, or before the gap columns existed) read as well, whole.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import StoreError
from . import rollup as ru

KEYS_META = b"wattsight.rollup.keys"
GROUPS_META = b"wattsight.rollup.groups"
#: Rows of a row group, about (groups are cut between keys): 18 groups of 57 probes in a day of
#: 5 min cells of 1,000 probes, 4 in an hour of 1 min cells, 1 or 2 in the coarser levels.
GROUP_ROWS = 16_384
WRITE_OPTIONS = {"use_dictionary": False, "store_schema": False, "column_encoding": {
    c: "BYTE_STREAM_SPLIT" if dt is np.float64 else "DELTA_BINARY_PACKED" for c, dt in ru.COLUMNS.items()}}
#: Threads loading the partitions of a read (1: in the reading thread, one after the other)
LOAD_THREADS = 2
#: kid_of(key, kind) -> this process's number of the key (registered if new)
KidOf = Callable[[tuple[str, str], str], int]
#: lut_of(the file's KEYS_META) -> this process's number of each of the file's keys (registered if new)
LutOf = Callable[[bytes], np.ndarray]


def load(path: Path, kid_of: KidOf, columns: Iterable[str] | None = None) -> ru.Cells:
    """The cells of the file at ``path`` (all columns, or ``columns`` plus kid and b), keys numbered
    by ``kid_of``.  Rows stay as written: grouped by key, b ascending in each, the keys in the
    writer's order (this process may number them otherwise; sorting every row cost more than
    reading the file, so readers order what they take)."""
    def lut_of(names: bytes) -> np.ndarray:
        return np.asarray([kid_of((a, b), kind) for a, b, kind in json.loads(names)], np.int64)
    return load_keys(path, lut_of, None, columns)[0]


def load_keys(path: Path, lut_of: LutOf, want: np.ndarray | None,
              columns: Iterable[str] | None = None) -> tuple[ru.Cells, np.ndarray | None]:
    """As :func:`load`, the keys numbered by ``lut_of`` (a reader of many partitions keeps the
    numbers of the keys' list that they share), and only the row groups holding the keys ``want``
    (bool by kid; None: every key) when the file is written in groups.  Returns the cells (whole
    keys: a key is in one group) and ``missing``, bool by kid: the keys of the file whose rows were
    not read (None when every row was)."""
    want_cols = list(ru.COLUMNS) if columns is None else ["kid", "b", *(c for c in columns if c not in ("kid", "b"))]
    try:
        f = pq.ParquetFile(path)
        have = set(f.schema_arrow.names)
        meta = f.metadata.metadata or {}
        firsts = np.asarray(json.loads(meta.get(GROUPS_META, b"[0]")), np.int64)
        if len(firsts) != f.metadata.num_row_groups or (len(firsts) and firsts[0] != 0):
            firsts = np.zeros(min(f.metadata.num_row_groups, 1), np.int64)  # read whole
        lut = lut_of(meta[KEYS_META])
        groups = _groups(firsts, lut, want)
        needed = set(want_cols) | ({"max_dt"} if "short_max" in want_cols else set())
        read = [c for c in ru.COLUMNS if c in have and c in needed]
        table = f.read(columns=read) if groups is None else f.read_row_groups(groups.tolist(), columns=read)
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"{path}: cannot read rollup partition: {exc}. Delete it and its "
                         "STATE.json to rebuild the rollups from the raw samples") from exc
    n = table.num_rows
    cells = {}
    for c in want_cols:
        if c == "kid":
            cells[c] = lut[table.column("kid").to_numpy()] if len(lut) else np.zeros(0, np.int64)
        elif c in have:  # no copy: cells are never changed in place (copy on write)
            cells[c] = np.asarray(table.column(c).to_numpy(), ru.COLUMNS[c])
        elif c == "short_max":  # written before the gap columns
            cells[c] = np.asarray(table.column("max_dt").to_numpy(), np.int64).copy()
        else:
            cells[c] = np.full(n, ru.OLD_GAP_COLUMNS[c], ru.COLUMNS[c])
    if groups is None:
        return cells, None
    unread = np.ones(len(firsts), bool)
    unread[groups] = False
    missing = np.zeros(int(lut.max()) + 1 if len(lut) else 0, bool)
    missing[lut[unread[np.searchsorted(firsts, np.arange(len(lut)), "right") - 1]]] = True
    return cells, missing


def grouped(path: Path) -> bool:
    """The file at ``path`` is in row groups as :func:`write` cuts them (or small enough for one,
    or unreadable: left as it is, its reads say so)."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException):
        return True
    return GROUPS_META in (meta.metadata or {}) or meta.num_rows <= GROUP_ROWS


def _groups(firsts: np.ndarray, lut: np.ndarray, want: np.ndarray | None) -> np.ndarray | None:
    """The row groups holding the keys ``want`` (None: read every group)."""
    if want is None or len(firsts) < 2:
        return None
    inside = lut < len(want)  # keys registered by this file's load are not wanted
    asked = np.zeros(len(lut), bool)
    asked[inside] = want[lut[inside]]
    groups = np.unique(np.searchsorted(firsts, np.flatnonzero(asked), "right") - 1)
    return None if len(groups) == len(firsts) else groups


def write(path: Path, cells: ru.Cells, names: list[list[str]], local: np.ndarray) -> None:
    """Durably write ``cells`` (``local``: each row's index into ``names``, [probe, metric, kind],
    rows grouped by it in ascending order, as (kid, b) sorts them) under a temporary name, fsynced,
    then renamed over ``path``; in row groups of about :data:`GROUP_ROWS` rows cut between keys."""
    if len(local) > 1 and np.any(local[1:] < local[:-1]):
        order = np.argsort(local, kind="stable")
        cells, local = ru.take(cells, order), local[order]
    cols = {"kid": pa.array(local.astype(np.int32))}
    cols.update({c: pa.array(cells[c]) for c in ru.COLUMNS if c != "kid"})
    table = pa.table(cols)
    starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]]) if len(local) else np.zeros(0, np.int64)
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, np.arange(0, len(local), GROUP_ROWS)),
                                       len(starts) - 1)]).tolist() if len(local) else []
    bounds = [*cuts, len(local)]
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        with pq.ParquetWriter(f, table.schema, compression="zstd", compression_level=3, **WRITE_OPTIONS) as w:
            for a, b in pairwise(bounds):
                w.write_table(table.slice(a, b - a), row_group_size=b - a)
            w.add_key_value_metadata({KEYS_META: json.dumps(names),
                                      GROUPS_META: json.dumps(local[cuts].tolist())})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ahead(load: Callable[[int], ru.Cells | None], starts: list[int], todo: list[int]):
    """(p, load(p)) for ``starts`` in order, ``load`` of those in ``todo`` (in the order of
    ``starts``) but the first run on LOAD_THREADS threads a few ahead: Parquet decodes without
    the GIL, so the 7 partitions of a week of 5 min cells load in about half the time on 2 cores.
    The first is loaded alone: keys new to the process are numbered in its order, as one by one."""
    rest, running, started = iter(todo[1:]), {}, not todo
    for p in starts:
        cells = running.pop(p).result() if p in running else load(p)
        started = started or p == todo[0]
        while started and LOAD_THREADS > 1 and len(running) < 2 * LOAD_THREADS and (q := next(rest, None)) is not None:
            running[q] = _loader().submit(load, q)
        yield p, cells


def _loader() -> ThreadPoolExecutor:
    """The threads that load partitions (see :func:`ahead`), started at the first use."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="wattsight-rollup-load")
        return _LOADER


_LOADER: ThreadPoolExecutor | None = None
_LOADER_LOCK = threading.Lock()
