"""The store's receive path at full rate: a series table sent again costs nothing, every sample of a
gappy rack arrives through the real bus into the store, rollup cells with gaps, and the flushes
too large for any merge written in the cold format at once."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from store_contract import open_embedded, pdu_trace

from wattsight.bus import Publisher, Subscriber, topic_of
from wattsight.codec import decode_batch, encode_batch
from wattsight.consumers.store import residual, segment
from wattsight.consumers.store.rollup import GAP_FLOOR_MS, NO_GAP, from_raw, step_amount
from wattsight.consumers.store.tail import Registry
from wattsight.errors import MessageRefused
from wattsight.sample import Batch, Series

KEY = b"k" * 32
T0 = 1_767_225_600_000
_port = itertools.count(0)


def rack_series(n: int) -> tuple[Series, ...]:
    return tuple(Series(f"r.node-{i}", "power", "W") for i in range(n))


def test_a_table_sent_again_decodes_to_the_same_series_and_read_only_columns():
    table = rack_series(300)
    rng = np.random.default_rng(0)
    first = Batch(table, rng.integers(0, 300, 1000).astype(np.uint32), T0 + np.arange(1000), rng.random(1000))
    second = Batch(table, rng.integers(0, 300, 7).astype(np.uint32), T0 + np.arange(7), rng.random(7))
    a, b = decode_batch(encode_batch(first)), decode_batch(encode_batch(second))
    assert a.series is b.series and a.series == table
    for got, sent in ((a, first), (b, second)):
        assert np.array_equal(got.sidx, sent.sidx) and np.array_equal(got.t, sent.t)
        assert np.array_equal(got.v.view(np.int64), sent.v.view(np.int64))
        assert not got.t.flags.writeable and not got.v.flags.writeable  # views of the message bytes
        assert got.t.flags.aligned and got.v.flags.aligned
    other = decode_batch(encode_batch(Batch(table[1:], np.zeros(1, np.uint32), np.array([T0]), np.array([1.0]))))
    assert other.series == table[1:] and other.series[other.sidx[0]] == table[1]


@pytest.mark.parametrize("bad", [
    b"",
    b"\x86\xa1f\x02",
    encode_batch(Batch.of_series(Series("a.b", "power", "W"), [T0], [1.0]))[:-3],
    encode_batch(Batch.of_series(Series("a.b", "power", "W"), [T0], [1.0])) + b"\x00",
    encode_batch(Batch.of_series(Series("a.b", "power", "W"), [T0], [1.0])).replace(b"\xa1v\xc4\x08", b"\xa1v\xc4\x07"),
])
def test_malformed_payloads_are_refused_as_malformed(bad):
    with pytest.raises(MessageRefused) as err:
        decode_batch(bad)
    assert err.value.cause == "malformed"


def test_a_damaged_payload_is_refused_or_decodes_to_whole_columns():
    good = encode_batch(Batch(rack_series(40), np.arange(200, dtype=np.uint32) % 40, T0 + np.arange(200),
                              np.arange(200.0)))
    rng = np.random.default_rng(1)
    refused = 0
    for _ in range(3000):
        bad = bytearray(good)
        for at in rng.integers(0, len(bad), int(rng.integers(1, 4))):
            bad[at] = int(rng.integers(0, 256))
        try:
            got = decode_batch(bytes(bad))
        except MessageRefused as exc:
            refused += 1
            assert exc.cause == "malformed"
            continue
        assert len(got.sidx) == len(got.t) == len(got.v) and int(got.sidx.max()) < len(got.series)
    assert refused > 100


def test_the_registry_maps_a_table_seen_before_without_looking_it_up_again():
    reg = Registry()
    table = rack_series(100)
    ids = reg.id_map(table)
    assert ids.tolist() == list(range(100)) and reg.id_map(table) is ids
    assert reg.id_map(tuple(table)).tolist() == ids.tolist()  # an equal table: the same ids
    more = reg.id_map((Series("r.new-1", "power", "W"), *table[:20]))
    assert more.tolist() == [100, *range(20)] and len(reg) == 101
    with pytest.raises(ValueError):
        ids[0] = 5  # shared between batches: nobody may change it


def test_each_topic_gets_its_whole_share_of_the_table_and_every_sample_arrives(tmp_path):
    endpoint = f"ipc://{tmp_path}/ingest-{next(_port)}"
    pub, sub = Publisher(endpoint, KEY), Subscriber(endpoint, KEY)
    time.sleep(0.2)
    trace = pdu_trace(12, 900, seed=3)  # gaps: most slices use only some of each topic's series
    now = int(time.time() * 1000)
    trace = Batch(trace.series, trace.sidx, trace.t - trace.t.min() + now, trace.v)
    pieces = [trace.rows(i, i + 700) for i in range(0, len(trace), 700)]
    for piece in pieces:
        pub.publish(piece)
    got: dict[bytes, list[Batch]] = {}
    while (item := sub.recv(1000)) is not None:
        batch, raw = item
        assert raw == encode_batch(batch)
        got.setdefault(topic_of(batch.series[0].site, batch.series[0].metric), []).append(batch)
    assert sub.stats()["lost"] == 0 and len(got) == 4
    for topic, parts in got.items():
        assert len({id(b.series) for b in parts}) == 1  # one table per topic, decoded once
        assert {topic_of(s.site, s.metric) for s in parts[0].series} == {topic}
    sent = sorted((s.key, t, v) for s, t, v in zip((trace.series[i] for i in trace.sidx.tolist()),
                                                  trace.t.tolist(), trace.v.tolist()))
    back = sorted((b.series[i].key, t, v) for parts in got.values() for b in parts
                  for i, t, v in zip(b.sidx.tolist(), b.t.tolist(), b.v.tolist()))
    assert back == sent
    pub.close()
    sub.close()


def test_a_rack_through_the_bus_is_stored_whole(tmp_path):
    endpoint = f"ipc://{tmp_path}/ingest-{next(_port)}"
    pub, sub = Publisher(endpoint, KEY, batch_max=500), Subscriber(endpoint, KEY)
    time.sleep(0.2)
    trace = pdu_trace(10, 1800, seed=5)
    now = int(time.time() * 1000)
    trace = Batch(trace.series, trace.sidx, trace.t - trace.t.min() + now, trace.v)
    store = open_embedded(tmp_path / "s")
    for i in range(0, len(trace), 3000):
        pub.publish(trace.rows(i, i + 3000))
    for n in itertools.count():
        if (item := sub.recv(500)) is None:
            break
        store.handle(*item)
        if n % 50 == 49:
            store.flush()
    assert sub.stats()["lost"] == 0
    keys = sorted({s.key for s in trace.series})
    got = store.read(keys, 0, 2**62)
    for j, s in enumerate(trace.series):
        rows = trace.sidx == j
        t, v = got[s.key]
        assert np.array_equal(t, trace.t[rows]) and np.array_equal(v, trace.v[rows]), s
    assert store.stats()["samples_total"] == len(trace)
    store.close()
    pub.close()
    sub.close()


def reference_cells(kid, t, v, size, counter, wrap) -> dict[str, list]:
    """from_raw's columns computed cell by cell with Python loops."""
    out: dict[str, list] = {c: [] for c in ("kid", "b", "n", "first_t", "last_t", "acc_ms", "max_dt", "gap_ms",
                                            "gap_dt_min", "short_max", "sum", "acc", "gap_acc")}
    ok = np.isfinite(v)
    kid, t, v = kid[ok], t[ok], v[ok]
    cell = list(zip(kid.tolist(), (t // size * size).tolist()))
    for (k, b), rows in itertools.groupby(range(len(t)), key=lambda i: cell[i]):
        rows = list(rows)
        dts = [int(t[i + 1] - t[i]) for i in rows[:-1]]
        amounts = [float(step_amount(t[i:i + 1], v[i:i + 1], t[i + 1:i + 2], v[i + 1:i + 2],
                                     counter[[k]], wrap[[k]])[0]) for i in rows[:-1]]
        gaps = [(d, a) for d, a in zip(dts, amounts) if d > GAP_FLOOR_MS]
        out["kid"].append(k)
        out["b"].append(b)
        out["n"].append(len(rows))
        out["first_t"].append(int(t[rows[0]]))
        out["last_t"].append(int(t[rows[-1]]))
        out["acc_ms"].append(sum(dts))
        out["max_dt"].append(max(dts, default=0))
        out["gap_ms"].append(sum(d for d, _ in gaps))
        out["gap_dt_min"].append(min((d for d, _ in gaps), default=NO_GAP))
        out["short_max"].append(max((d for d in dts if d <= GAP_FLOOR_MS), default=0))
        out["sum"].append(float(v[rows].sum()))
        out["acc"].append(sum(amounts))
        out["gap_acc"].append(sum(a for _, a in gaps))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_cells_with_gaps_wraps_and_resets_equal_a_loop_over_each_cell(seed):
    rng = np.random.default_rng(seed)
    nk = 5
    counter = np.array([False, True, True, False, True])
    wrap = np.array([np.nan, 1000.0, np.nan, np.nan, 50.0])
    parts = []
    for k in range(nk):
        step = rng.choice([1000, 3000, 7000, 20_000], 400, p=[0.7, 0.15, 0.1, 0.05])  # some inner gaps
        t = T0 + np.cumsum(step) + rng.integers(0, 300, 400)
        v = np.mod(np.cumsum(rng.uniform(0, 30, 400)), 1000.0) if counter[k] else rng.uniform(0, 400, 400)
        v[rng.integers(0, 400, 4)] = np.nan
        parts.append((np.full(400, k), t, v))
    kid, t, v = (np.concatenate(c) for c in zip(*parts))
    for size in (60_000, 300_000):
        got = from_raw(kid, t, v, size, counter, wrap)
        want = reference_cells(kid, t, v, size, counter, wrap)
        assert any(g != NO_GAP for g in want["gap_dt_min"]) and any(want["short_max"])
        for c in ("kid", "b", "n", "first_t", "last_t", "acc_ms", "max_dt", "gap_ms", "gap_dt_min", "short_max"):
            assert got[c].tolist() == want[c], (size, c)
        for c in ("sum", "acc", "gap_acc"):
            assert got[c] == pytest.approx(np.array(want[c]), rel=1e-12, abs=1e-9), (size, c)


def test_a_flush_too_large_for_any_merge_is_written_cold_at_once(tmp_path):
    store = open_embedded(tmp_path / "s")
    store.MERGE_MAX_ROWS = 8 * 1000  # a flush of more than 1,000 rows: no merge takes it
    trace = pdu_trace(3, 200, seed=2)  # 2,400 samples less the gaps
    assert len(trace) > 1000
    small = Batch.of_series(Series("r.small-1", "power", "W"), T0 + np.arange(10) * 1000, np.arange(10.0))
    store.handle(small)
    store.flush()
    store.handle(trace)
    store.flush()
    hot, cold = store._segments
    assert hot.fmt == min(segment.HOT_FORMAT, segment.FORMAT) and cold.fmt == segment.FORMAT
    assert set(cold.mode.tolist()) <= {residual.RAW, residual.DELTA}  # quick: its day's tier rewrites it
    assert store.compact() == 0 and store.stats()["recompressions"] == 0
    store.close()
    with open_embedded(tmp_path / "s") as again:
        assert_reads_back(again, trace)


def test_handle_waits_for_a_flush_when_the_tail_is_full_and_loses_nothing(tmp_path):
    """A store that receives faster than it flushes holds the bus back instead of filling the memory."""
    import threading

    store = open_embedded(tmp_path / "s")
    store.FLUSH_ROWS, store.TAIL_FLUSHES = 100, 2
    s = Series("r.node-1", "power", "W")

    def batch(i: int) -> Batch:
        return Batch.of_series(s, T0 + np.arange(i * 50, i * 50 + 50) * 1000, np.full(50, float(i)))

    with store._maintenance:  # the flush thread cannot take the tail meanwhile
        for i in range(4):
            store.handle(batch(i))  # 200 rows: the tail is full
        waiting = threading.Thread(target=store.handle, args=(batch(4),))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and store.stats()["tail_samples"] == 200
    waiting.join(60)
    assert not waiting.is_alive() and store.stats()["ingest_waits"] == 1
    t, v = store.read([s.key], 0, 2**62)[s.key]
    assert np.array_equal(t, T0 + np.arange(250) * 1000) and np.array_equal(v, np.repeat(np.arange(5.0), 50))
    store.close()


def test_quick_flushes_are_encoded_in_full_by_their_day_tier(tmp_path):
    store = open_embedded(tmp_path / "s")
    store.MERGE_MAX_ROWS = 8 * 1000  # every flush below is full: no merge but the day's tier takes it
    trace = pdu_trace(3, 900, seed=4)
    for k in range(3):
        part = (trace.t >= T0 + k * 300_000) & (trace.t < T0 + (k + 1) * 300_000)
        store.handle(Batch(trace.series, trace.sidx[part], trace.t[part], trace.v[part]))
        store.flush()
    assert all(set(s.mode.tolist()) <= {residual.RAW, residual.DELTA} for s in store._segments)
    assert store.compact(whole_days=True) == 1
    tier = store._segments[0]
    assert len(store._segments) == 1 and tier.hi - tier.lo + 1 == 3 and {residual.DICT, residual.PARTNER} & set(tier.mode.tolist())
    assert_reads_back(store, trace)
    store.close()


def assert_reads_back(store, trace: Batch) -> None:
    """Every series of ``trace`` reads back from ``store`` exactly."""
    got = store.read(sorted({s.key for s in trace.series}), 0, 2**62)
    for j, s in enumerate(trace.series):
        rows = trace.sidx == j
        assert np.array_equal(got[s.key][0], trace.t[rows]) and np.array_equal(got[s.key][1], trace.v[rows])
