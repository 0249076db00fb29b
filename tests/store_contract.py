"""The store contract: what every store backend does, whatever keeps the samples.

Each check takes a backend: ``backend.open()`` opens the store, and opens it again (the same
folder, the same PostgreSQL schema) when called after ``close()`` -- or without it, as after a
crash.  tests/test_store_contract.py runs every check on the embedded store and on PostgreSQL;
tests/test_store_pg.py runs them again on PostgreSQL with ``ack = "queued"``.

What the backends may do differently, and the checks therefore allow:

- ``SeriesInfo.count`` after a sample was sent again: the embedded store counts samples
  *received* (until a merge puts both copies in one segment), PostgreSQL the samples *stored*;
  both are at least the number of distinct (series, t) and at most the number received.
- a backend whose ``durable_ack`` is false ("queued") has the batches that ``flush()`` returned
  for after a crash, not every one ``handle()`` returned for.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from wattsight import energy
from wattsight.errors import SampleError, StoreError
from wattsight.sample import Batch, Series, counter_range, wrapping_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import batches, pdu_trace

T0 = 1_767_225_600_000
POWER = Series("t.pdu-1", "power", "W")
KEY = POWER.key
ALL = (0, 2**62)
PG_DSN = os.environ.get("WATTSIGHT_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")


def one(series: Series, t, v) -> Batch:
    return Batch.of_series(series, np.asarray(t, np.int64), np.asarray(v, np.float64))


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64).view(np.int64)


def as_lists(got) -> list[list]:
    return [a.tolist() for a in got]


def assert_energy_as_raw(store, series, start: int, end: int, gap: int) -> None:
    """``store.energy()`` of ``series`` over [start, end] equals ``energy.integrate`` (gauges) or
    ``energy.counter_increase`` (counters) on the samples ``store.read()`` returns."""
    keys = [s.key for s in series]
    fast = store.energy(keys, start, end, gap)
    raw = store.read(keys, start - gap, end + gap)
    for s in series:
        if s.kind == "gauge":
            want = energy.integrate(*raw[s.key], start, end, gap)
        else:
            want = energy.counter_increase(*raw[s.key], start, end, gap, counter_range(s.kind))
        got = fast[s.key]
        assert got.covered_ms == want.covered_ms, (s, start, end, gap)
        assert got.joules == pytest.approx(want.joules, rel=1e-9, abs=1e-6), (s, start, end, gap)


# -- backends -----------------------------------------------------------------------------------


def open_embedded(path: Path, **kw):
    """An embedded Store on ``path`` that flushes when told (``flush_interval`` 1 h unless given)."""
    from wattsight.config import StoreConfig
    from wattsight.consumers.store import Store

    return Store(StoreConfig(path=path, flush_interval=kw.pop("flush_interval", 3600), **kw))


class EmbeddedBackend:
    name, durable_ack = "embedded", True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stores: list = []

    def open(self):
        self.stores.append(open_embedded(self.path))
        return self.stores[-1]

    def abandon(self, store) -> None:
        """Leave ``store`` open and never close it, as a crash would (the kernel keeps no lock in-process)."""
        self.stores.remove(store)

    def cleanup(self) -> None:
        for s in self.stores:
            s.close()


def pg_connect_or_skip():
    """A connection to the test server, or pytest.skip naming why there is none."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'psycopg[binary]'")
    try:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_DSN!r} (set WATTSIGHT_TEST_PG_DSN): "
                    f"{str(exc).strip().splitlines()[0]}")


class PgBackend:
    """A fresh schema of the test database, dropped by cleanup()."""

    name = "postgresql"

    def __init__(self, **config) -> None:
        self.admin = pg_connect_or_skip()
        self.schema = f"ws_test_{uuid.uuid4().hex[:12]}"
        self.config = config
        self.durable_ack = config.get("ack", "commit") == "commit"
        self.stores: list = []

    def open(self, **overrides):
        from wattsight.consumers.pgstore import PgStore, PgStoreConfig

        cfg = PgStoreConfig(dsn=PG_DSN, schema=overrides.pop("schema", self.schema),
                            **{**self.config, **overrides})
        self.stores.append(PgStore(cfg))
        return self.stores[-1]

    def abandon(self, store) -> None:
        """A crash: the store is closed at cleanup only (its connections are the server's to drop)."""

    def cleanup(self) -> None:
        try:
            for s in self.stores:
                s.close()
        finally:
            self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            self.admin.close()


def crash(backend, store) -> None:
    """What a crash keeps: everything acknowledged, or what flush() returned for ("queued")."""
    if not backend.durable_ack:
        store.flush()
    backend.abandon(store)


# -- the checks ---------------------------------------------------------------------------------


def lossless_values(n: int) -> dict[str, np.ndarray]:
    """Value columns a store must give back bit for bit: decimal ones, floats, NaN, inf, -0.0."""
    rng = np.random.default_rng(3)
    return {
        "int": rng.integers(-2000, 2000, n).astype(float),
        "tenth": np.round(rng.uniform(0, 800, n), 1),
        "milli": np.round(rng.uniform(-5, 5, n), 3),
        "float": rng.normal(0, 1e3, n),
        "odd": np.resize([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, 1e300, 2.0**60, 1e-7], n),
        "tenth+nan": np.where(np.arange(n) == 7, np.nan, np.round(rng.uniform(0, 9, n), 1)),
        "negzero": np.resize([1.0, -0.0, 2.0], n),
    }


def values_come_back_bit_for_bit(backend):
    n = 300
    values = lossless_values(n)
    store = backend.open()
    for name, v in values.items():
        store.handle(one(Series("t.lossless", name, "W"), T0 + np.arange(n) * 1000, v))
    before = store.read([("t.lossless", k) for k in values], *ALL)
    store.close()
    after = backend.open().read([("t.lossless", k) for k in values], *ALL)
    for name, v in values.items():
        for got in (before, after):
            t, back = got[("t.lossless", name)]
            assert np.array_equal(t, T0 + np.arange(n) * 1000)
            assert np.array_equal(bits(back), bits(v)), name


def reads_select_keys_and_time_ranges(backend):
    t = T0 + np.arange(300) * 1000
    v = np.arange(300) * 0.5
    store = backend.open()
    for lo, hi in ((0, 100), (100, 200), (200, 300)):
        store.handle(one(POWER, t[lo:hi], v[lo:hi]))
        store.flush()
    store.handle(one(Series("t.pdu-2", "power", "W"), t, -v))
    got_t, got_v = store.read([KEY], int(t[50]), int(t[250]))[KEY]
    assert np.array_equal(got_t, t[50:251]) and np.array_equal(got_v, v[50:251])
    assert store.read([KEY], int(t[120]), int(t[120]))[KEY][0].tolist() == [t[120]]
    assert store.read([KEY], int(t[120]) + 1, int(t[121]) - 1)[KEY][0].tolist() == []
    empty = store.read([KEY, ("t.pdu-1", "nothing"), ("t.nobody", "power")], 0, T0 - 1)
    assert all(len(a) == len(b) == 0 for a, b in empty.values()) and len(empty) == 3
    both = store.read([("t.pdu-2", "power"), KEY, KEY], *ALL)
    assert list(both) == [("t.pdu-2", "power"), KEY]
    assert np.array_equal(both[("t.pdu-2", "power")][1], -v) and np.array_equal(both[KEY][1], v)
    assert both[KEY][0].dtype == np.int64 and both[KEY][1].dtype == np.float64


def exact_duplicates_keep_the_last_written(backend):
    store = backend.open()
    store.handle(one(POWER, T0 + np.array([0, 1000, 2000]), [1, 1, 1]))
    store.flush()
    store.handle(one(POWER, [T0 + 1000], [5]))
    assert store.read([KEY], *ALL)[KEY][1].tolist() == [1, 5, 1]
    store.handle(one(POWER, [T0 + 1000, T0 + 2000, T0 + 3000, T0 + 3000], [7, 8, 9, 10]))
    expected = [[T0, T0 + 1000, T0 + 2000, T0 + 3000], [1, 7, 8, 10]]
    assert as_lists(store.read([KEY], *ALL)[KEY]) == expected
    store.flush()
    store.compact()
    assert as_lists(store.read([KEY], *ALL)[KEY]) == expected
    [info] = store.series()
    assert (info.first_t, info.last_t, info.last_v) == (T0, T0 + 3000, 10)
    assert 4 <= info.count <= 8  # distinct samples stored .. samples received
    store.close()
    again = backend.open()
    assert as_lists(again.read([KEY], *ALL)[KEY]) == expected
    assert again.series()[0].last_v == 10


def late_and_backwards_batches_come_back_sorted(backend):
    t = T0 + np.arange(40) * 1000
    store = backend.open()
    store.handle(one(POWER, t[20:], np.arange(20, 40)))
    store.flush()
    store.handle(one(POWER, t[:20], np.arange(20)))  # arrives late, older times
    got_t, got_v = store.read([KEY], *ALL)[KEY]
    assert np.array_equal(got_t, t) and got_v.tolist() == list(range(40))
    store.handle(one(POWER, t[::-1][:5], [0, 1, 2, 3, 4]))  # backwards inside one batch, sent again
    store.flush()
    got_t, got_v = store.read([KEY], *ALL)[KEY]
    assert np.array_equal(got_t, t) and got_v[-5:].tolist() == [4, 3, 2, 1, 0]
    [info] = store.series()
    assert (info.series, info.first_t, info.last_t, info.last_v) == (POWER, int(t[0]), int(t[-1]), 0.0)
    assert 40 <= info.count <= 45


def series_summaries_survive_a_crash(backend):
    energy = Series("t.pdu-1", "energy", "J", "counter")
    store = backend.open()
    store.handle(Batch((POWER, energy), np.array([0, 1, 0, 1], np.uint32),
                       np.array([T0, T0, T0 + 1000, T0 + 1000]), np.array([100.0, 5.0, 101.0, 106.0])))
    store.flush()
    store.handle(one(POWER, [T0 + 2000], [99.5]))
    want = store.series()
    assert {i.series.metric: (i.series, i.count, i.first_t, i.last_t, i.last_v) for i in want} == {
        "power": (POWER, 3, T0, T0 + 2000, 99.5), "energy": (energy, 2, T0, T0 + 1000, 106.0)}
    crash(backend, store)
    reopened = backend.open()  # the first store is never closed
    assert sorted(reopened.series(), key=str) == sorted(want, key=str)
    assert reopened.read([KEY], *ALL)[KEY][1].tolist() == [100.0, 101.0, 99.5]


def units_kinds_and_wrapping_counters_are_kept(backend):
    described = [
        Series("t.sw-1", "network_in", "B", wrapping_counter(2**32)),
        Series("t.node-1", "energy", "J", wrapping_counter(262143.328850)),  # RAPL's range
        Series("t.node-1", "power", "W", "gauge", "modelled"),
        Series("t.node-1", "temperature", "Cel", "gauge", "derived"),
        Series("t.pdu-1", "energy", "J", "counter"),
    ]
    store = backend.open()
    for i, s in enumerate(described):
        store.handle(one(s, T0 + np.arange(5) * 1000, np.arange(5) + 10.0 * i))
    renamed = Series("t.node-1", "temperature", "K", "gauge", "derived")  # the unit changed
    store.handle(one(renamed, T0 + np.arange(5, 8) * 1000, [300.0, 301.0, 302.0]))
    for s in (store, None):
        if s is None:
            store.close()
            s = backend.open()
        want = sorted(x.as_tuple() for x in [*described, renamed])
        assert sorted(i.series.as_tuple() for i in s.series()) == want
        t, v = s.read([("t.node-1", "temperature")], *ALL)[("t.node-1", "temperature")]
        assert t.tolist() == (T0 + np.arange(8) * 1000).tolist() and v.tolist()[-3:] == [300, 301, 302]


def reading_while_writing_loses_nothing(backend):
    trace = pdu_trace(6, 900, seed=2)
    pieces = batches(trace, 997)
    store = backend.open()
    done = threading.Event()
    bad_reads, errors = [], []
    key = trace.series[0].key

    def write():
        try:
            for b in pieces:
                store.handle(b)
        except Exception as exc:  # noqa: BLE001 - reported below: a thread's exception is otherwise lost
            errors.append(exc)
        done.set()

    def read_while_writing():
        while not done.is_set():
            t, _ = store.read([key], *ALL)[key]
            if len(t) > 1 and not np.all(np.diff(t) > 0):
                bad_reads.append(t)
            store.series()

    threads = [threading.Thread(target=write), threading.Thread(target=read_while_writing)]
    for th in threads:
        th.start()
    while not done.is_set():
        store.flush()
        store.compact()
        done.wait(0.05)
    for th in threads:
        th.join()
    store.flush()
    assert not errors and not bad_reads
    keys = [s.key for s in trace.series]
    for name in ("live", "reopened"):
        if name == "reopened":
            store.close()
            store = backend.open()
        got = store.read(keys, *ALL)
        for j, k in enumerate(keys):
            assert np.array_equal(got[k][0], trace.t[trace.sidx == j]), (name, k)
            assert np.array_equal(got[k][1], trace.v[trace.sidx == j]), (name, k)
        assert store.stats()["samples_total"] == len(trace), name
        assert {i.series: i.count for i in store.series()} == {
            s: int(np.sum(trace.sidx == j)) for j, s in enumerate(trace.series)}


def a_closed_store_refuses_batches(backend):
    store = backend.open()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.handle(one(POWER, [T0], [1.0]))


def a_malformed_batch_is_refused_and_nothing_else_changes(backend):
    store = backend.open()
    with pytest.raises(SampleError, match="series index 3"):
        store.handle(Batch((POWER,), np.array([0, 3], np.uint32), np.array([T0, T0]), np.zeros(2)))
    store.handle(one(POWER, [T0], [1.0]))
    store.handle(Batch.empty())
    crash(backend, store)
    again = backend.open()
    assert again.read([KEY], *ALL)[KEY][1].tolist() == [1.0]
    assert [(i.series, i.count) for i in again.series()] == [(POWER, 1)]


CHECKS = [values_come_back_bit_for_bit, reads_select_keys_and_time_ranges,
          exact_duplicates_keep_the_last_written, late_and_backwards_batches_come_back_sorted,
          series_summaries_survive_a_crash, units_kinds_and_wrapping_counters_are_kept,
          reading_while_writing_loses_nothing, a_closed_store_refuses_batches,
          a_malformed_batch_is_refused_and_nothing_else_changes]
