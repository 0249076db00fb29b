"""Merges run in a thread of their own: a long merge (a day's tier at 1,000 probes takes minutes)
does not hold flushes back, and its result and the segments flushed meanwhile are all kept."""

from __future__ import annotations

import threading

import numpy as np
from store_contract import ALL, KEY, POWER, T0, one
from store_contract import open_embedded as open_store

from wattsight.consumers.store import background


def test_flushes_go_on_while_a_merge_is_written(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s")
    store.MERGE_FANOUT = 2
    for k in range(2):
        store.handle(one(POWER, T0 + k * 10_000 + np.arange(5) * 1000, np.arange(5) + 10 * k))
        store.flush()
    inside, release = threading.Event(), threading.Event()
    real = background._merge

    def slow(store_, run):  # the merge stops half-way until the flushes below are done
        inside.set()
        assert release.wait(60), "the test did not release the merge"
        return real(store_, run)
    monkeypatch.setattr(background, "_merge", slow)
    merges = []
    job = threading.Thread(target=lambda: merges.append(store.compact()))
    job.start()
    assert inside.wait(60), "the merge did not start"
    for k in range(2, 5):  # flushes meanwhile: each done while the merge waits
        store.handle(one(POWER, T0 + k * 10_000 + np.arange(5) * 1000, np.arange(5) + 10 * k))
        done = threading.Thread(target=store.flush)
        done.start()
        done.join(60)
        assert not done.is_alive(), "a flush waited for the merge"
    assert store.stats()["flushes"] == 5 and job.is_alive()
    release.set()
    job.join(60)
    assert merges and merges[0] >= 1
    t, v = store.read([KEY], *ALL)[KEY]
    assert len(t) == 25 and v.tolist() == [10 * k + i for k in range(5) for i in range(5)]
    his = [s.hi for s in store._segments]
    assert his == sorted(his) and store._segments[0].lo == min(s.lo for s in store._segments)
    store.close()
    with open_store(tmp_path / "s") as again:  # what is on disk reads the same
        assert again.read([KEY], *ALL)[KEY][1].tolist() == v.tolist()


def test_the_merge_thread_merges_after_background_flushes(tmp_path):
    store = open_store(tmp_path / "s")
    store.MERGE_FANOUT = 2
    for k in range(4):
        store.handle(one(POWER, T0 + k * 10_000 + np.arange(5) * 1000, np.arange(5.0)))
        store._wake.set()  # as at flush_interval: the flush thread flushes, then wakes the merge thread
        for _ in range(600):
            if store.stats()["flushes"] > k:
                break
            threading.Event().wait(0.05)
    for _ in range(600):
        if store.stats()["merges"] >= 1:
            break
        threading.Event().wait(0.05)
    assert store.stats()["merges"] >= 1
    assert len(store.read([KEY], *ALL)[KEY][0]) == 20
    store.close()


def test_a_retention_rebuild_waits_for_a_flush_in_progress(tmp_path, monkeypatch):
    """A flush's rows are in its new segment and still in memory until it ends: the registry rebuilt
    by a retention pass (merge thread) meanwhile must not count them twice."""
    import wattsight.consumers.store as st
    from wattsight.consumers.store import retention as rt

    store = open_store(tmp_path / "s")
    store.handle(one(POWER, T0 + np.arange(100) * 1000, np.ones(100)))
    inside, release = threading.Event(), threading.Event()
    real = st.roll

    def paused(*args):  # the flush has added its segment, its rows are still frozen in memory
        inside.set()
        assert release.wait(60), "the test did not release the flush"
        return real(*args)
    monkeypatch.setattr(st, "roll", paused)
    flush = threading.Thread(target=store.flush)
    flush.start()
    assert inside.wait(60), "the flush did not start"
    rebuild = threading.Thread(target=rt.rebuild_registry, args=(store,))
    rebuild.start()
    rebuild.join(0.5)  # it waits for the flush (an upper bound for the test's pace, not a figure)
    release.set()
    flush.join(60)
    rebuild.join(60)
    assert store.stats()["samples_total"] == 100 and store.series()[0].count == 100
    store.close()
