"""How long a sample takes to become readable at a given ingest rate (``bench/store_scale.py --rate``).

The sender follows each piece it publishes with a sample of :data:`CLOCK` holding the time it
sent the piece (:func:`clock_batch`); the store's process reads that series back every 10 ms with
``Store.read()``, as a query would (:func:`watch`), and :func:`emit_freshness` prints p50, p99 and
max of the lags.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from bench.common import emit
from wattsight.sample import Batch, Series

#: After each piece, the time it was sent (s since the epoch), read back by :func:`watch`.
CLOCK = Series("bench.clock", "sent_at", "s")


def clock_batch(at: int) -> Batch:
    """The clock sample for a piece, at trace time ``at`` (distinct for each: equal ones would collapse)."""
    return Batch.of_series(CLOCK, [at], [time.time()])


def watch(store, stop: threading.Event, lags: list[tuple[float, float]], every: float = 0.01) -> None:
    """Read :data:`CLOCK`'s newest samples from ``store`` every ``every`` s until ``stop`` (then once
    more); for each, (the time it was sent, its lag: when it was first read back less that time)."""
    key, after, last = CLOCK.key, -1, False
    while not last:
        last = stop.wait(every)
        t, v = store.read([key], after + 1, 2**62).get(key, (np.empty(0, np.int64), None))
        if len(t):
            now = time.time()
            lags.extend(zip(v.tolist(), (now - v).tolist()))
            after = int(t[-1])


def emit_freshness(run: str, lags: list[tuple[float, float]], sent: int, rate: float, csv: str | None) -> None:
    """The ``freshness_p99`` figure (p50 and max rounded as the value is), and ``csv`` (each clock
    sample's sending time from the first, and lag) when given."""
    ms = np.asarray([lag for _, lag in lags]) * 1e3
    if csv:
        with open(csv, "w") as f:
            f.write("sent_s,lag_ms\n")
            f.writelines(f"{when - lags[0][0]:.3f},{lag * 1e3:.1f}\n" for when, lag in lags)
    emit("freshness_p99", float(np.percentile(ms, 99)) if len(ms) else float("nan"), "ms", "store", run=run,
         p50=round(float(np.percentile(ms, 50)), 4) if len(ms) else None,
         max=round(float(ms.max()), 4) if len(ms) else None, samples=len(ms), sent=sent, offered_rate=rate,
         note="time from a piece's sending (sender process) to its clock sample's first read back by "
         "Store.read() in this process, polled every 10 ms: the bus, decode, WAL, tail; at the offered rate")
