"""The live stream reads what is new since each probe's last sample sent, not minutes of every probe.

A real store (3 minutes of 1 Hz history, flushed to a segment, then new samples in memory) behind a
wrapper that counts what each read returns.  One probe went silent 100 s ago and one counter is
sampled every 30 s: read from the stream's oldest sample, they would make every poll read ~100
samples of each live probe again.
"""

from __future__ import annotations

import numpy as np
import pytest

from wattsight.config import StoreConfig
from wattsight.consumers.store import Store
from wattsight.sample import Batch, Series
from wattsight.web import live

NOW = 1_700_000_180_000  # ms: the end of the stored history
LIVE = [Series(f"r.node-{i}", "power", "W") for i in range(4)]
QUIET = Series("r.quiet", "power", "W")  # its meter stopped answering 100 s ago
SLOW = Series("r.sw", "network_in", "B", "counter")  # polled every 30 s (last 20 s ago), 1000 B/s


class Counting:
    """The store, with each read's (keys, start, rows returned) kept."""

    def __init__(self, store) -> None:
        self.store, self.reads = store, []

    def read(self, keys, start_ms, end_ms):
        got = self.store.read(keys, start_ms, end_ms)
        self.reads.append((list(keys), start_ms, {k: len(got[k][0]) if k in got else 0 for k in keys}))
        return got

    def rows(self) -> int:
        return sum(sum(r.values()) for _, _, r in self.reads)


@pytest.fixture
def store(tmp_path):
    s = Store(StoreConfig(path=tmp_path / "store"), clock=lambda: NOW)
    t = NOW - 180_000 + np.arange(181, dtype=np.int64) * 1000
    for i, series in enumerate(LIVE):
        s.handle(Batch.of_series(series, t, 100.0 + i + np.arange(len(t)) % 7))
    quiet = t[t <= NOW - 100_000]
    s.handle(Batch.of_series(QUIET, quiet, np.full(len(quiet), 80.0)))
    slow = t[10::30]  # the last at NOW - 20 s
    s.handle(Batch.of_series(SLOW, slow, 1e6 + (slow - t[0]) * 1.0))  # 1000 B/s: 1 B per ms
    s.flush()  # the history in a segment; what follows stays in memory
    yield s
    s.close()


def feed_of(store, keys) -> live.Feed:
    """A stream from now on (each key from its last sample), as GET /api/v1/live starts one."""
    last = {s.key: s_last for s, s_last in ((s, i.last_t) for i in store.series() for s in [i.series])}
    tracks = [(k, k == SLOW.key, last[k]) for k in keys]
    return live.Feed(Counting(store), lambda: tracks)


def new_samples(store, t: int, late: dict[int, int] | None = None) -> None:
    """One sample of each live probe at ``t`` (probe i ``late[i]`` ms earlier), as a runner's tick stores them."""
    for i, series in enumerate(LIVE):
        store.handle(Batch.of_series(series, [t - (late or {}).get(i, 0)], [150.0 + t % 7 + i]))


def sent(event: dict) -> int:
    return sum(v is not None for vs in event["probes"].values() for v in vs)


def test_each_poll_reads_only_the_samples_it_sends(store):
    feed = feed_of(store, [s.key for s in [*LIVE, QUIET, SLOW]])
    for t in (NOW + 1000, NOW + 2000):
        new_samples(store, t)
        feed.store.reads.clear()
        event = feed.poll()
        assert event["t"] == [t] and set(event["probes"]) == {s.probe for s in LIVE}
        assert [event["probes"][s.probe] for s in LIVE] == [store.read([s.key], t, t)[s.key][1].tolist()
                                                             for s in LIVE]
        assert sent(event) == len(LIVE) and feed.store.rows() == len(LIVE)  # nothing read twice
    feed.store.reads.clear()
    assert feed.poll() is None and feed.store.rows() == 0  # nothing new: nothing read


def test_a_probe_a_little_behind_costs_its_group_at_most_that_span_again(store):
    feed = feed_of(store, [s.key for s in [*LIVE, QUIET, SLOW]])
    new_samples(store, NOW + 1000, {3: 400})  # probe 3 measured 0.4 s before the others
    assert sent(feed.poll()) == len(LIVE)
    new_samples(store, NOW + 2000, {3: 400})
    feed.store.reads.clear()
    assert sent(feed.poll()) == len(LIVE)
    # read from probe 3's last sample: the others' sample of 0.4 s later comes again, once each
    assert feed.store.rows() == 2 * len(LIVE) - 1


def test_a_counter_read_on_its_own_still_streams_its_rate(store):
    feed = feed_of(store, [LIVE[0].key, SLOW.key])
    store.handle(Batch.of_series(LIVE[0], [NOW + 1000], [150.0]))
    store.handle(Batch.of_series(SLOW, [NOW + 10_000], [1e6 + 160_000 * 1.0 + 75_000]))  # 2500 B/s meanwhile
    feed.store.reads.clear()
    event = feed.poll()
    assert event["t"] == [NOW + 1000, NOW + 10_000]
    assert event["probes"] == {LIVE[0].probe: [150.0, None], SLOW.probe: [None, 2500.0]}
    assert feed.store.rows() == 2  # the counter's previous sample (30 s back) is remembered, not read again


def test_the_windows_group_probes_by_how_far_behind_they_are(store):
    feed = feed_of(store, [s.key for s in [*LIVE, QUIET, SLOW]])
    windows = feed.windows()
    starts = {k: lo for lo, ks in windows for k in ks}
    assert set(starts) == set(feed.keys) and len(windows) == 3  # live probes, the counter, the silent one
    for s in LIVE:
        assert starts[s.key] == NOW + 1
    assert starts[SLOW.key] == NOW - 20_000 + 1
    assert starts[QUIET.key] == NOW - 100_000 + 1
