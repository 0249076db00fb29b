"""The sorts a flush and a merge do, by their shortcuts (a radix sort of the ranks; a merge's rows
taken block by block), give what a full sort by (rank, t), last written winning, gives."""

from __future__ import annotations

import numpy as np
import pytest

from wattsight.consumers.store.compaction import merge_parts
from wattsight.consumers.store.sorting import sort_ranked
from wattsight.sample import Series


def reference(rank: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """By (rank, t, write order), the last row of each (rank, t) kept."""
    order = np.lexsort((np.arange(len(t)), t, rank))
    r, ts = rank[order], t[order]
    last = np.ones(len(t), bool)
    last[:-1] = (r[1:] != r[:-1]) | (ts[1:] != ts[:-1])
    keep = order[last]
    return keep, np.bincount(rank[keep], minlength=int(rank.max()) + 1), t[keep]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("case", ["in_order", "duplicates", "out_of_order", "one_row", "one_rank"])
@pytest.mark.parametrize("dtype", [np.uint16, np.int64])
def test_sort_ranked_matches_a_full_sort(case, dtype):
    rng = np.random.default_rng(7)
    ns, steps = 50, 40
    rank = np.tile(rng.permutation(ns), steps)
    t = np.repeat(np.arange(steps, dtype=np.int64) * 1000, ns)
    if case == "duplicates":
        t[rng.choice(len(t), 300)] -= 1000
        t[t < 0] = 0
    elif case == "out_of_order":
        t = rng.integers(0, 5000, len(t))
    elif case == "one_row":
        rank, t = rank[:1], t[:1]
    elif case == "one_rank":
        rank, t = np.zeros(30, np.int64), np.repeat(np.arange(10), 3)
    want = reference(rank, t)
    assert same(sort_ranked(rank.astype(dtype), t), want)
    assert same(sort_ranked(rank.astype(dtype), t, int(rank.max()) + 1), want)


def part(names: list[str], t: list[np.ndarray], v: list[np.ndarray]) -> tuple:
    series = [Series("t.p", n, "W", "gauge") for n in names]
    return (series, np.asarray([len(x) for x in t], np.int64), np.zeros(len(names), np.int8),
            np.concatenate(t), np.concatenate(v))


@pytest.mark.parametrize("overlap", [False, True])
def test_merge_parts_takes_later_parts_rows_and_sorts_by_name_then_t(overlap):
    a = part(["b", "a"], [np.arange(0, 5), np.arange(10, 13)], [np.arange(5) + 100, np.arange(3) + 200])
    later_b = np.arange(3, 8) if overlap else np.arange(5, 10)  # overlap: t 3, 4 written again
    b = part(["c", "b"], [np.arange(2), later_b], [np.arange(2) + 300, np.arange(5) + 400])
    got = merge_parts([a, b])
    assert [s.metric for s in got.series] == ["a", "b", "c"]
    assert got.count.tolist() == [3, 8 if overlap else 10, 2]
    b_t = np.arange(8) if overlap else np.arange(10)
    b_v = np.concatenate([np.arange(3) + 100, np.arange(5) + 400]) if overlap else \
        np.concatenate([np.arange(5) + 100, np.arange(5) + 400])
    assert got.t.tolist() == [10, 11, 12, *b_t.tolist(), 0, 1]
    assert got.ints.tolist() == [200, 201, 202, *b_v.tolist(), 300, 301]


def test_merge_parts_sorts_a_part_older_than_the_one_before():
    a = part(["a"], [np.arange(10, 15)], [np.arange(5)])
    b = part(["a"], [np.arange(0, 3)], [np.arange(3) + 50])
    got = merge_parts([a, b])
    assert got.t.tolist() == [0, 1, 2, 10, 11, 12, 13, 14]
    assert got.ints.tolist() == [50, 51, 52, 0, 1, 2, 3, 4]
