"""Small thread-safe LRU maps for the hot path's caches of series tables.

A rack's driver sends the same series table with every batch: the codec, the publisher and the
store each keep what they derived from a table (its bytes, how it splits by topic, its store ids)
for the tables seen last, keyed by the table's bytes (:class:`Recent`) or by the very object
(:class:`ByIdentity`)."""

from __future__ import annotations

import threading
from collections import OrderedDict


class Recent:
    """An LRU map of at most ``size`` entries; threads reading and writing at once never see half
    an update."""

    def __init__(self, size: int) -> None:
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            got = self._d.get(key)
            if got is not None:
                self._d.move_to_end(key)
            return got

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


class ByIdentity:
    """An LRU map keyed by an object's identity (``id``), not its value: no hashing of a table of
    thousands of Series.  The object is kept with its value, so that its id is not reused while
    the entry lives; a table mutated in place keeps its entry (tables are tuples: they are not)."""

    def __init__(self, size: int) -> None:
        self._recent = Recent(size)

    def get(self, obj):
        got = self._recent.get(id(obj))
        return got[1] if got is not None and got[0] is obj else None

    def put(self, obj, value) -> None:
        self._recent.put(id(obj), (obj, value))

    def __len__(self) -> int:
        return len(self._recent)
