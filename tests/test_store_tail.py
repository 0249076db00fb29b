"""The tail's select(): rows of the asked series and times, in write order, without looking at the
rows of chunks whose time or store id range holds nothing asked."""

from __future__ import annotations

import numpy as np
import pytest

from wattsight.consumers.store.tail import Chunk, Tail, select


def brute(chunks: list[Chunk], wanted: np.ndarray, start: int, end: int):
    sid = np.concatenate([c.sid for c in chunks])
    t = np.concatenate([c.t for c in chunks])
    v = np.concatenate([c.v for c in chunks])
    keep = wanted[sid] & (t >= start) & (t <= end)
    return sid[keep], t[keep], v[keep]


@pytest.mark.parametrize("seed", range(5))
def test_select_equals_a_scan_of_every_row(seed):
    rng = np.random.default_rng(seed)
    tail = Tail()
    for _ in range(60):  # batches of a few series each (one driver), some of all of them
        lo = int(rng.integers(0, 90))
        width = 100 - lo if rng.random() < 0.1 else int(rng.integers(1, 10))
        n = int(rng.integers(1, 300))
        tail.append(rng.integers(lo, lo + width, n), rng.integers(0, 10_000, n), rng.random(n))
    for _ in range(20):
        wanted = rng.random(100) < rng.choice([0.01, 0.1, 0.5])
        start, end = sorted(rng.integers(0, 10_000, 2).tolist())
        got, want = select(tail.chunks, wanted, start, end), brute(tail.chunks, wanted, start, end)
        for g, w in zip(got, want):
            assert np.array_equal(g, w)


def test_a_chunk_whose_ids_hold_nothing_asked_is_not_read():
    asked = Chunk.of(np.array([1, 2]), np.array([10, 20]), np.array([1.0, 2.0]))
    # its rows would raise if looked at: ids beyond `wanted`; its range says 5..9
    other = Chunk(np.array([10**6]), np.array([15]), np.array([3.0]), 15, 15, 5, 9)
    wanted = np.zeros(10, bool)
    wanted[[2, 4]] = True
    sid, t, v = select([asked, other], wanted, 0, 100)
    assert sid.tolist() == [2] and t.tolist() == [20] and v.tolist() == [2.0]
    wanted[7] = True
    with pytest.raises(IndexError):
        select([asked, other], wanted, 0, 100)
