"""A store whose flushes fail (a full disk) holds ingest back at a bounded memory, and loses nothing."""

from __future__ import annotations

import threading
import time

import numpy as np
from store_contract import open_embedded

import wattsight.consumers.store as store_module
from wattsight.sample import Batch, Series

T0 = 1_767_225_600_000


def test_failing_flushes_hold_ingest_back_instead_of_filling_the_memory(tmp_path, monkeypatch):
    store = open_embedded(tmp_path / "s", flush_interval=0.05)
    store.FLUSH_ROWS, store.TAIL_FLUSHES = 100, 2
    s = Series("r.node-1", "power", "W")
    real_write = store_module.write_prepared
    failing = threading.Event()
    failing.set()
    tries = []

    def write(*a, **k):
        if failing.is_set():
            tries.append(1)
            raise OSError(28, "No space left on device")
        return real_write(*a, **k)

    monkeypatch.setattr(store_module, "write_prepared", write)
    sent = []

    def feed():
        for i in range(40):  # 40 x 50 rows: 10 times what the store may hold
            store.handle(Batch.of_series(s, T0 + np.arange(i * 50, i * 50 + 50) * 1000, np.full(50, float(i))))
            sent.append(i)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    deadline = time.monotonic() + 60
    while len(tries) < 10 and time.monotonic() < deadline:  # ten failed flushes, each a chance to let more in
        time.sleep(0.01)
    assert len(tries) >= 10
    held = store.stats()["tail_samples"]
    assert feeder.is_alive() and held <= 2 * store.TAIL_FLUSHES * store.FLUSH_ROWS + 50, (held, len(sent))
    assert store.stats()["flush_errors"] >= 10
    failing.clear()  # space again: everything is written, the feeder goes on
    feeder.join(60)
    assert not feeder.is_alive() and len(sent) == 40
    store.flush()
    t, v = store.read([s.key], 0, 2**62)[s.key]
    assert np.array_equal(t, T0 + np.arange(2000) * 1000) and np.array_equal(v, np.repeat(np.arange(40.0), 50))
    store.close()
