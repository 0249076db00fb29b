"""The in-memory side of the store: the series registry and the tail of recent samples.

Both are updated once per batch with numpy only: the batch's series table (a few hundred
entries at most) is mapped to store-wide series ids with one dict lookup per *series*, then
every per-sample step is an array operation.  Neither class locks: the Store holds its lock
around ``append`` and copies references (``Tail.chunks`` is only ever appended to or
replaced) so that reads compute outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from ...errors import SampleError
from ...recent import ByIdentity
from ...sample import Batch, Series

_HEAD = b"\x86\xa1f\x01\xa1s"  # codec.encode_batch: a 6-entry map, "f": 1, then "s": the series table


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What the store knows of one series without reading any file."""

    series: Series
    count: int
    first_t: int
    last_t: int
    last_v: float


class Registry:
    """Store-wide series ids and, per id, count, first/last time and the latest value."""

    def __init__(self) -> None:
        self.series: list[Series] = []
        self.ids: dict[Series, int] = {}
        self.by_key: dict[tuple[str, str], list[int]] = {}
        self.count = np.zeros(0, np.int64)
        self.first_t = np.zeros(0, np.int64)
        self.last_t = np.zeros(0, np.int64)
        self.last_v = np.zeros(0, np.float64)
        self._table: bytes | None = None  # the last large series table seen, as codec bytes
        self._table_ids = np.zeros(0, np.int64)
        self._tuples = ByIdentity(64)  # series table -> its ids

    def __len__(self) -> int:
        return len(self.series)

    def id_map(self, series: tuple[Series, ...] | list[Series], raw: bytes | None = None) -> np.ndarray:
        """Store ids of ``series`` (registering the new ones), as an array indexable by sidx.

        A table seen recently maps without hashing thousands of Series again (the bus sends a
        rack's table with every batch): the very tuple (the codec hands the same tuple back for
        the same table bytes), or else a table of the same bytes as the last large one (``raw``,
        the batch's codec bytes when known, holds it as msgpack right after its 6-byte head)."""
        if isinstance(series, tuple):
            got = self._tuples.get(series)
            if got is not None:
                return got
        if not isinstance(raw, bytes):
            raw = None
        if raw is not None and self._table is not None and raw.startswith(_HEAD) and \
                raw.startswith(self._table, len(_HEAD)) and len(series) == len(self._table_ids):
            out = self._table_ids
        else:
            ids = self.ids
            out = np.fromiter((ids[s] if s in ids else self._add(s) for s in series), np.int64, len(series))
            out.setflags(write=False)
            if raw is not None and len(series) >= 64 and raw.startswith(_HEAD):
                table = msgpack.packb([s.as_tuple() for s in series], use_bin_type=True)  # as codec.encode_batch
                if raw.startswith(table, len(_HEAD)):
                    self._table, self._table_ids = table, out
        if isinstance(series, tuple) and len(series) >= 16:
            self._tuples.put(series, out)
        return out

    def _add(self, s: Series) -> int:
        sid = len(self.series)
        self.series.append(s)
        self.ids[s] = sid
        self.by_key.setdefault(s.key, []).append(sid)
        if sid >= len(self.count):  # grow the arrays by doubling
            grow = max(64, len(self.count))
            self.count = np.concatenate([self.count, np.zeros(grow, np.int64)])
            self.first_t = np.concatenate([self.first_t, np.full(grow, np.iinfo(np.int64).max)])
            self.last_t = np.concatenate([self.last_t, np.full(grow, np.iinfo(np.int64).min)])
            self.last_v = np.concatenate([self.last_v, np.full(grow, np.nan)])
        return sid

    def update(self, sid: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
        """Fold rows (store ids, times, values) in: counts, first/last t, value at the last t."""
        n = len(self.series)
        self.count[:n] += np.bincount(sid, minlength=n)
        np.minimum.at(self.first_t, sid, t)
        np.maximum.at(self.last_t, sid, t)
        rows = np.flatnonzero(t == self.last_t[sid])[::-1]  # at their series' latest time, last first
        ids, last = np.unique(sid[rows], return_index=True)  # the last written of each (few rows)
        self.last_v[ids] = v[rows[last]]

    def fold(self, sid: np.ndarray, count: np.ndarray, first_t: np.ndarray, last_t: np.ndarray,
             last_v: np.ndarray) -> None:
        """Fold per-series summaries in (a segment's, at start), later ones winning ties."""
        self.count[sid] += count
        np.minimum.at(self.first_t, sid, first_t)
        newer = last_t >= self.last_t[sid]
        self.last_t[sid[newer]] = last_t[newer]
        self.last_v[sid[newer]] = last_v[newer]

    def infos(self) -> list[SeriesInfo]:
        n = len(self.series)
        rows = zip(self.series, self.count[:n].tolist(), self.first_t[:n].tolist(),
                   self.last_t[:n].tolist(), self.last_v[:n].tolist())
        return [SeriesInfo(*row) for row in rows if row[1] > 0]


@dataclass(frozen=True, slots=True)
class Chunk:
    """One batch in the tail: store ids, times, values, the time range and the store ids' range
    (a batch of one driver's or one site's series: usually ids allocated together)."""

    sid: np.ndarray
    t: np.ndarray
    v: np.ndarray
    tmin: int
    tmax: int
    sid_lo: int
    sid_hi: int

    @classmethod
    def of(cls, sid: np.ndarray, t: np.ndarray, v: np.ndarray) -> Chunk:
        return cls(sid, t, v, int(t.min()), int(t.max()), int(sid.min()), int(sid.max()))


class Tail:
    """Samples not yet in a segment: a list of per-batch column arrays, joined at flush."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.rows = 0

    def append(self, sid: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
        self.chunks.append(Chunk.of(sid, t, v))
        self.rows += len(t)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(store ids, t, v) of every row, in write order."""
        if not self.chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
        return tuple(np.concatenate([getattr(c, f) for c in self.chunks]) for f in ("sid", "t", "v"))


def select(chunks: list[Chunk], wanted: np.ndarray, start_ms: int, end_ms: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``chunks`` whose store id is flagged in ``wanted`` and t in [start, end], in write order.

    A chunk whose time range or store id range holds nothing asked is skipped without looking at
    its rows: reading a few series from a tail of 30 M rows (a flush interval at 3 M samples/s) is
    not a scan of the whole tail."""
    flagged = np.concatenate([[0], np.cumsum(wanted, dtype=np.int64)])  # flagged ids below each id
    parts = []
    for c in chunks:
        if c.tmax < start_ms or c.tmin > end_ms or flagged[c.sid_hi + 1] == flagged[c.sid_lo]:
            continue
        mask = wanted[c.sid] & (c.t >= start_ms) & (c.t <= end_ms)
        if mask.any():
            parts.append((c.sid[mask], c.t[mask], c.v[mask]))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return tuple(np.concatenate(cols) for cols in zip(*parts))


def batch_columns(batch: Batch, id_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(store ids, t, v) of a batch, given the store ids of its series table."""
    if len(batch.sidx) and int(batch.sidx.max()) >= len(id_map):
        raise SampleError(f"batch of {len(batch)} samples: series index {int(batch.sidx.max())} "
                          f"beyond its series table of {len(id_map)}")
    # copies: the caller may reuse its arrays once handle() returned (not bytes, as from the bus)
    return id_map[batch.sidx], _frozen(batch.t, np.int64), _frozen(batch.v, np.float64)


def _frozen(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` itself when nobody can change it (a read-only view of ``bytes``), else a copy."""
    if a.dtype == dtype and not a.flags.writeable and isinstance(a.base, bytes):
        return a
    return np.array(a, dtype)
