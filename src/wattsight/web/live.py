"""The live stream: new samples of the selected probes as Server-Sent Events.

Every :data:`POLL_S` the store is asked (in a worker thread) for the samples measured after
the last one sent for each probe, so that a probe whose samples arrive late loses nothing.
Each probe is read from its own last sample on, not from the stream's oldest: probes are read
together by how far behind the newest they are (:data:`BEHIND_MS`), so a probe gone silent or
one sampled every minute costs a read of its own rather than minutes of every probe's samples.
Each event carries one shared time axis and, per probe, its values on it (``null`` where
it has no sample at that time)::

    id: 1767225601000
    data: {"metric": "power", "unit": "W", "t": [1767225600000, 1767225601000],
           "probes": {"demo.node-0": [212.5, 213.0], "demo.node-1": [null, 98.2]}}

Counters (network_in, network_out) are sent as rates per second (B/s) from consecutive
samples, unless ``raw``.  A ``: keep-alive`` comment goes out after :data:`KEEPALIVE_S`
without samples.  The event id is the newest time sent: a client that reconnects with
``Last-Event-ID`` (browsers do) or ``since=`` gets what it missed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.to_thread
import numpy as np

from ..consumers.api.catalog import read
from ..consumers.api.params import MAX_MS
from .selection import sample_rates

POLL_S = 0.5
KEEPALIVE_S = 2.0
#: A probe's samples may arrive this late (ms behind the newest sent) and still be sent.
LATE_MS = 120_000
#: Probes this far (ms) behind the newest sent, at most, are read in one window from the oldest of
#: them: a few samples read twice per probe, against one store read per probe (classes grow 4x).
BEHIND_MS = (2_000, 8_000, 32_000, LATE_MS)
#: Probes streamed when none is named, and at most.
DEFAULT_CAP, MAX_PROBES = 200, 1_000
#: The oldest samples a stream sends: ``since`` (or Last-Event-ID) further back starts here
#: (history is /api/v1/series' job).
CATCH_UP_MS = 10 * 60_000
#: Seconds between two looks for probes that joined the selection.
REFRESH_S = 5.0
#: Streams open now in this process (what a test or /health can watch).
OPEN = 0


class Feed:
    """What one client was sent: per key the last time and value, and how to read what is new.

    ``tracks()`` gives the keys to follow as ``(key, is_counter, since_ms)``; it is called at the
    start and every :data:`REFRESH_S` so that probes appearing later join the stream (at most
    ``limit`` keys).
    """

    def __init__(self, store, tracks, *, rate: bool = True, limit: int = MAX_PROBES,
                 clock=time.monotonic, now_ms=None) -> None:
        self.store, self.tracks, self.rate, self.limit, self.clock = store, tracks, rate, limit, clock
        self.now_ms = now_ms  # the server's clock (ms), for the catch-up limit; None: no limit
        self.keys: list[tuple[str, str]] = []
        self.last_t: dict[tuple[str, str], int] = {}
        self.last_v: dict[tuple[str, str], float] = {}
        self.counters: set[tuple[str, str]] = set()
        self.omitted = 0
        self._refreshed = clock()
        self.add(tracks())

    def add(self, tracks) -> None:
        """Follow the keys of ``tracks`` not followed yet (up to ``limit``)."""
        floor = -1 if self.now_ms is None else self.now_ms() - CATCH_UP_MS
        new = [(k, c, max(s, floor)) for k, c, s in tracks if k not in self.last_t]
        room = max(0, self.limit - len(self.keys))
        self.omitted = max(0, len(new) - room)
        new = new[:room]
        for key, counter, since in new:
            self.keys.append(key)
            self.last_t[key] = int(since)
            if counter and self.rate:
                self.counters.add(key)
        counters = [(k, s) for k, c, s in new if k in self.counters]
        if counters:  # the sample at or before ``since``: the first rate needs it
            lo = min(s for _, s in counters) - LATE_MS
            got = read(self.store, [k for k, _ in counters], lo, max(s for _, s in counters))
            for k, since in counters:
                t, v = got[k]
                upto = t <= since
                if upto.any():
                    self.last_v[k] = float(v[upto][-1])
                    self.last_t[k] = int(t[upto][-1])

    def poll(self) -> dict | None:
        """The event of the samples newer than those sent (None when there is none); blocking."""
        if self.clock() - self._refreshed >= REFRESH_S:
            self._refreshed = self.clock()
            self.add(self.tracks())
        if not self.keys:
            return None
        fresh = {}
        for lo, keys in self.windows():
            data = read(self.store, keys, lo, MAX_MS)
            for k in keys:
                t, v = data[k]
                keep = t > self.last_t[k]
                if keep.any():
                    fresh[k] = self._values(k, t[keep], v[keep])
        if not fresh:
            return None
        fresh = {k: fresh[k] for k in self.keys if k in fresh}  # the selection's order, whatever the reads'
        times = np.unique(np.concatenate([t for t, _ in fresh.values()]))
        out = {}
        for (pid, _), (t, v) in fresh.items():
            row: list = [None] * len(times)
            for i, x in zip(np.searchsorted(times, t).tolist(), v.tolist()):
                row[i] = x if math.isfinite(x) else None
            out[pid] = row
        return {"t": times.tolist(), "probes": out}

    def windows(self) -> list[tuple[int, list[tuple[str, str]]]]:
        """``(start_ms, keys)`` of the reads of one poll: each key from just after its last sample sent
        (at most :data:`LATE_MS` behind the newest), keys as far behind in one read (:data:`BEHIND_MS`)."""
        last = np.fromiter((self.last_t[k] for k in self.keys), np.int64, len(self.keys))
        newest = int(last.max())
        start = np.maximum(last, newest - LATE_MS) + 1
        behind = np.searchsorted(BEHIND_MS, newest + 1 - start)  # 0: within 2 s of the newest, ...
        out = []
        for c in np.unique(behind).tolist():
            members = np.flatnonzero(behind == c)
            out.append((int(start[members].min()), [self.keys[i] for i in members.tolist()]))
        return out

    def _values(self, k, t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The new samples of ``k`` (rates for counters), and remember the last one."""
        prev_t, prev_v = self.last_t[k], self.last_v.get(k)
        self.last_t[k] = int(t[-1])
        if k not in self.counters:
            return t, v
        self.last_v[k] = float(v[-1])
        all_t = np.concatenate([[prev_t], t]).astype(np.float64)
        all_v = np.concatenate([[np.nan if prev_v is None else prev_v], v])
        return t, sample_rates(all_t, all_v)  # a reset or wrap: no rate for that sample


async def stream(feed: Feed, head: dict, disconnected: Callable, *, poll_s: float = POLL_S,
                 keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[str]:
    """The SSE text of a feed until the client goes away (``await disconnected()`` is true)."""
    global OPEN
    OPEN += 1
    try:
        yield f"retry: 1000\n: streaming {len(feed.keys)} probes ({feed.omitted} more left out)\n\n"
        quiet_since = time.monotonic()
        while not await disconnected():
            event = await anyio.to_thread.run_sync(feed.poll)
            if event is not None:
                body = json.dumps({**head, **event}, separators=(",", ":"))
                yield f"id: {max(event['t'])}\ndata: {body}\n\n"
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= keepalive_s:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            await anyio.sleep(poll_s)
    finally:
        OPEN -= 1
