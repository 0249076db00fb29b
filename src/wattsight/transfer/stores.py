"""The store an export reads and an import writes: the embedded one or PostgreSQL.

An export never writes.  On the embedded store it reads a :class:`Snapshot` of the folder's
files without taking the ``LOCK``: segments are immutable and replaced by rename, the write-ahead
log is only appended to, so this works while a running wattsight holds the store, and sees
every batch that process has acknowledged.  An import opens the store for writing, so an
embedded store must not be open in a running wattsight (its ``LOCK`` refuses a second writer);
a PostgreSQL store can take an import while wattsight runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..config import StoreConfig
from ..consumers.store.segment import Segment
from ..consumers.store.tail import Registry, SeriesInfo, Tail, batch_columns, select
from ..consumers.store.wal import Problem, replay, wal_files
from ..errors import StoreError
from ..timeseries import merge_parts

log = logging.getLogger("wattsight.transfer")
Key = tuple[str, str]


def store_config(args) -> tuple[StoreConfig, object]:
    """([store] section, whole config or None) from -c/$WATTSIGHT_CONFIG and --store."""
    from .. import config

    path = args.config or os.environ.get("WATTSIGHT_CONFIG")
    cfg = config.load(path) if path else None
    store = cfg.store if cfg else StoreConfig()
    if args.store:
        store = StoreConfig(path=Path(args.store), flush_interval=store.flush_interval)
    return store, cfg


def open_reader(store: StoreConfig):
    """What an export reads: a Snapshot of the embedded store, or a PgStore."""
    if store.backend == "postgresql":
        from ..app import open_store

        return open_store(store)
    return Snapshot(store.path)


def open_writer(store: StoreConfig):
    """What an import writes: the store itself (the embedded one refuses if a process holds it)."""
    from ..app import open_store

    if store.backend == "embedded" and not Path(store.path).is_dir():
        Path(store.path).mkdir(parents=True)
    try:
        return open_store(store)
    except StoreError as exc:
        if "open in another process" in str(exc):
            raise StoreError(f"{exc}. An import writes the store: stop wattsight while importing into "
                             "the embedded store (exports work while it runs)") from None
        raise


class Snapshot:
    """A read-only view of an embedded store folder: its segments and its log, as they are now.

    The log files are listed before the segments: a flush in between then gives samples both
    in a segment and in a log file it covers (the log file is skipped), never neither.  A file
    that a flush or merge deletes before it is opened makes the snapshot start again.
    """

    def __init__(self, path: Path, attempts: int = 5) -> None:
        self.path = Path(path)
        if not (self.path / "segments").is_dir() and not (self.path / "wal").is_dir():
            raise StoreError(f"{self.path}: no wattsight store here (no segments/ nor wal/ folder); "
                             "check [store] path in the configuration, or give --store DIR")
        for _ in range(attempts):
            try:
                self._load()
                return
            except FileNotFoundError:
                continue
            except StoreError as exc:
                if not isinstance(exc.__cause__, FileNotFoundError):
                    raise
        raise StoreError(f"{self.path}: the store changed under every one of {attempts} attempts to read it")

    def _load(self) -> None:
        logs = wal_files(self.path / "wal") if (self.path / "wal").is_dir() else []
        segments = [Segment.open(p) for p in sorted((self.path / "segments").glob("*.parquet"))]
        segments = [s for s in segments  # a merge not yet cleaned up: its inputs lie inside its range
                    if not any(o is not s and o.lo <= s.lo and s.hi <= o.hi for o in segments)]
        self._registry, self._tail = Registry(), Tail()
        for seg in segments:
            self._registry.fold(self._registry.id_map(seg.series), seg.count, seg.first_t, seg.last_t, seg.last_v)
        covered = max((s.hi for s in segments), default=0)
        newest = max((n for n, _ in logs), default=None)
        for number, path in logs:
            if number <= covered:
                continue
            for item in replay(path):
                if isinstance(item, Problem):  # a torn record at the end of the live log is a write in progress
                    if not (item.kind == "torn" and number == newest):
                        log.warning("%s", item)
                    continue
                sid, t, v = batch_columns(item, self._registry.id_map(item.series))
                self._tail.append(sid, t, v)
                self._registry.update(sid, t, v)
        self._segments = sorted(segments, key=lambda s: s.hi)

    def series(self) -> list[SeriesInfo]:
        return self._registry.infos()

    def read(self, keys: list[Key], start_ms: int, end_ms: int) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
        """As Store.read: per key, ascending unique times in [start, end], the last written kept."""
        keys = list(dict.fromkeys(tuple(k) for k in keys))
        parts: dict[Key, list] = {k: [] for k in keys}
        for seg in self._segments:
            if seg.overlaps(start_ms, end_ms):
                wanted = [i for k in keys for i in seg.keys.get(k, ())]
                for i, t, v in seg.read(wanted, start_ms, end_ms):
                    parts[seg.series[i].key].append((t, v))
        code = np.full(len(self._registry), -1, np.int64)
        for j, key in enumerate(keys):
            code[self._registry.by_key.get(key, [])] = j
        sid, t, v = select(self._tail.chunks, code >= 0, start_ms, end_ms)
        for j, key in enumerate(keys):
            pick = code[sid] == j
            if pick.any():
                parts[key].append((t[pick], v[pick]))
        return {k: merge_parts(p) for k, p in parts.items()}

    def close(self) -> None:
        self._segments, self._tail = [], Tail()


def config_probe_ids(cfg) -> list[str]:
    """Probe ids a configuration knows ([probes] sections and the drivers' own), for RRD names."""
    if cfg is None:
        return []
    ids = list(cfg.probes)
    from .. import plugins

    for c in cfg.drivers.values():
        try:
            ids += [p.id for p in plugins.load(c.type)(c, site=cfg.site).probes()]
        except Exception as exc:  # noqa: BLE001 -- metadata only; --names gives them otherwise
            log.info("driver %s cannot list its probes here (%s)", c.type, exc)
    return list(dict.fromkeys(ids))

