"""The PostgreSQL store on the server of this machine: COPY, partitions, rollups, schemas, views, reconnects.

Each test works in a fresh schema of the test database (dropped afterwards); without a reachable
server every test here is skipped, saying why (WATTSIGHT_TEST_PG_DSN picks another server).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from store_contract import ALL, CHECKS, KEY, PG_DSN, POWER, T0, PgBackend, batches, bits, one, pdu_trace

from wattsight.errors import SampleError, StoreError
from wattsight.sample import Batch, Series

DOC = Path(__file__).resolve().parents[1] / "docs/consumers/postgresql.md"
LEVELS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}


@pytest.fixture
def pg():
    made = PgBackend()
    yield made
    made.cleanup()


@pytest.fixture
def queued():
    made = PgBackend(ack="queued", batch_rows=5_000, backlog_rows=50_000)
    yield made
    made.cleanup()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_contract_with_queued_acks(queued, check):
    check(queued)


def sql(backend, query: str, *params) -> list[tuple]:
    return backend.admin.execute(query.replace("S.", f'"{backend.schema}".'), params).fetchall()


def test_batches_go_in_by_copy_and_a_batch_sent_again_replaces_itself(pg):
    store = pg.open()
    b = one(POWER, T0 + np.arange(1000) * 1000, np.round(np.linspace(100, 200, 1000), 1))
    store.handle(b)
    st = store.stats()
    assert (st["fast"], st["upserts"], st["rows"]) == (1, 0, 1000)
    rows = sql(pg, "SELECT t, v FROM S.samples ORDER BY t")
    assert [r[1] for r in rows] == b.v.tolist()
    assert rows[0][0] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC) and rows[-1][0].second == 999 % 60
    store.handle(b.rows(990, 1000))  # the last ten again: the COPY hits the key, the upsert path runs
    st = store.stats()
    assert (st["fast"], st["upserts"], st["replaced"], st["samples_total"]) == (1, 1, 10, 1000)
    assert sql(pg, "SELECT n FROM S.series") == [(1000,)]


def test_partitions_are_created_for_the_data_and_ahead_of_the_clock(pg):
    now = T0 + 40 * 86_400_000  # 2026-02-10
    from wattsight.consumers.pgstore import PgStore, PgStoreConfig

    store = PgStore(PgStoreConfig(dsn=PG_DSN, schema=pg.schema, partition="day"), clock=lambda: now)
    pg.stores.append(store)
    store.handle(one(POWER, [T0, T0 + 86_400_000 + 5, T0 + 2 * 86_400_000], [1.0, 2.0, 3.0]))
    names = {r[0] for r in sql(pg, "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
                                   "ON c.oid = i.inhrelid WHERE i.inhparent = 'S.samples'::regclass")}
    assert names == {"samples_d20260101", "samples_d20260102", "samples_d20260103", "samples_d20260210",
                     "samples_d20260211"}
    assert sql(pg, "SELECT count(*) FROM S.samples_d20260102") == [(1,)]
    store.handle(one(POWER, [now - 1], [4.0]))  # 2026-02-09: a day of its own, made on the way
    assert store.stats()["partitions"] == 6
    with pytest.raises(SampleError, match="years 1..9999"):
        store.handle(one(POWER, [2**62], [1.0]))


def test_a_partition_dropped_for_retention_is_made_again_when_late_data_needs_it(pg):
    store = pg.open(partition="day")
    store.handle(one(POWER, [T0, T0 + 86_400_000], [1.0, 2.0]))
    pg.admin.execute(f'DROP TABLE "{pg.schema}".samples_d20260101')  # retention, by an administrator
    assert store.read([KEY], *ALL)[KEY][1].tolist() == [2.0]
    store.handle(one(POWER, [T0 + 5], [3.0]))  # the first try fails (no partition), the second makes it
    assert store.read([KEY], *ALL)[KEY][1].tolist() == [3.0, 2.0]
    assert store.stats()["write_errors"] == 1


def expected_rollups(trace: Batch, size: int) -> dict:
    """(probe, metric, bucket ms) -> (n, min, max, sum, last) computed straight from the trace."""
    out = {}
    for j, s in enumerate(trace.series):
        t, v = trace.t[trace.sidx == j], trace.v[trace.sidx == j]
        b = t // size * size
        for bucket in np.unique(b):
            pick = b == bucket
            out[(s.probe, s.metric, int(bucket))] = (int(pick.sum()), v[pick].min(), v[pick].max(),
                                                     v[pick].sum(), v[pick][-1])
    return out


def test_rollups_match_numpy_through_copies_and_upserts(pg):
    trace = pdu_trace(3, 7300, seed=4)  # 2 h 1 min 40 s: buckets cut across batches
    store = pg.open()
    pieces = batches(trace, 1777)
    for b in pieces:
        store.handle(b)
    store.handle(pieces[2])  # sent again: its buckets are recomputed from the samples
    store.handle(pieces[3])
    assert store.stats()["upserts"] == 2
    for name, size in LEVELS.items():
        want = expected_rollups(trace, size)
        rows = sql(pg, "SELECT se.probe, se.metric, (extract(epoch FROM r.bucket) * 1000)::int8, r.n, "
                       f"r.vmin, r.vmax, r.vsum, r.last_v FROM S.rollup_{name} r "
                       "JOIN S.series se ON se.id = r.series_id")
        got = {(p, m, b): (n, lo, hi, total, last) for p, m, b, n, lo, hi, total, last in rows}
        assert got.keys() == want.keys(), name
        for key, (n, lo, hi, total, last) in want.items():
            g = got[key]
            assert (g[0], g[1], g[2], g[4]) == (n, lo, hi, last), (name, key)
            assert g[3] == pytest.approx(total, rel=1e-12), (name, key)
    keys = [s.key for s in trace.series[:4]]
    # aligned on hours: the 1 h table answers; one second later: the samples
    for first, last, step in ((T0, T0 + 7_200_000 - 1, 3_600_000), (T0 + 1000, T0 + 7_200_000, 600_000)):
        got = store.buckets(keys, first, last, step)
        for j, key in enumerate(keys):
            pick = (trace.sidx == j) & (trace.t >= first) & (trace.t <= last)
            t, v = trace.t[pick], trace.v[pick]
            edges = (t - first) // step
            assert got[key]["t"].tolist() == (first + np.unique(edges) * step).tolist()
            assert got[key]["n"].tolist() == np.bincount(edges)[np.unique(edges)].tolist()
            assert got[key]["max"].tolist() == [v[edges == e].max() for e in np.unique(edges)]
            assert got[key]["last"].tolist() == [v[edges == e][-1] for e in np.unique(edges)]
            means = [v[edges == e].mean() for e in np.unique(edges)]
            assert got[key]["avg"] == pytest.approx(means, rel=1e-12)


def test_rollups_follow_sql_rules_for_nan_and_infinities(pg):
    odd = Series("t.odd-1", "ratio", "1")
    store = pg.open()
    t = T0 + np.arange(12) * 10_000  # two minutes
    v = np.array([1.0, np.nan, 3.0, -np.inf, 2.0, 0.5, np.nan, np.nan, np.inf, 7.0, -0.0, 4.0])
    store.handle(one(odd, t[:5], v[:5]))
    store.handle(one(odd, t[5:], v[5:]))
    fast = sql(pg, "SELECT bucket, n, vmin, vmax, vsum, last_v FROM S.rollup_1m ORDER BY bucket")
    store.handle(one(odd, t[3:4], v[3:4]))  # the same again: recomputed by SQL over the samples
    assert store.stats()["upserts"] == 1
    recomputed = sql(pg, "SELECT bucket, n, vmin, vmax, vsum, last_v FROM S.rollup_1m ORDER BY bucket")
    truth = sql(pg, "SELECT date_bin('1 minute', t, '2000-01-01 00:00:00+00') AS b, count(*), min(v), "
                    "max(v), sum(v), (array_agg(v ORDER BY t DESC))[1] FROM S.samples GROUP BY b ORDER BY b")
    for rows in (fast, recomputed):
        assert np.array_equal(bits(np.array([r[2:] for r in rows])), bits(np.array([r[2:] for r in truth])))
        assert [r[:2] for r in rows] == [r[:2] for r in truth]


def test_two_stores_in_one_database_stay_apart(pg):
    other = PgBackend()
    try:
        a, b = pg.open(), other.open()
        a.handle(one(POWER, T0 + np.arange(10) * 1000, np.arange(10.0)))
        b.handle(one(POWER, T0 + np.arange(5) * 1000, -np.arange(5.0)))
        b.handle(one(Series("t.only-b", "power", "W"), [T0], [1.0]))
        assert a.read([KEY], *ALL)[KEY][1].tolist() == list(range(10))
        assert b.read([KEY], *ALL)[KEY][1].tolist() == [0, -1, -2, -3, -4]
        assert [i.series.probe for i in a.series()] == ["t.pdu-1"]
        assert sorted(i.series.probe for i in b.series()) == ["t.only-b", "t.pdu-1"]
        assert a.stats()["samples_total"] == 10 and b.stats()["samples_total"] == 6
    finally:
        other.cleanup()


def grafana(query: str, schema: str) -> str:
    """A Grafana query with its macros expanded as the PostgreSQL data source does."""
    frm, to = "'2026-01-01T00:00:00Z'", "'2026-01-01T02:00:00Z'"
    group = r"date_bin('60 seconds', \1, '2000-01-01 00:00:00+00')"
    query = re.sub(r"\$__timeGroupAlias\((\w+), *\$__interval\)", group + " AS time", query)
    query = re.sub(r"\$__timeGroup\((\w+), *\$__interval\)", group, query)
    query = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN {frm} AND {to}", query)
    query = query.replace("$__timeFrom()", frm).replace("$__timeTo()", to)
    query = query.replace("${probe:sqlstring}", "'bench.pdu-0'")
    query = query.replace("$probe", "'bench.pdu-0','bench.pdu-1'")
    return query.replace("wattsight.", f'"{schema}".')


def test_grafana_views_answer_the_documented_queries(pg):
    trace = pdu_trace(2, 3600, seed=6)
    store = pg.open()
    for b in batches(trace, 5000):
        store.handle(b)
    power = trace.select(np.array([s.metric == "power" for s in trace.series])[trace.sidx])
    rows = sql(pg, "SELECT time, probe, value FROM S.power WHERE probe = 'bench.pdu-1' ORDER BY time")
    pick = power.sidx == [s.probe for s in power.series].index("bench.pdu-1")
    assert [r[2] for r in rows] == power.v[pick].tolist()
    hourly = sql(pg, "SELECT probe, samples, avg, min, max FROM S.power_1h ORDER BY probe")
    assert [r[1] for r in hourly] == [int((power.sidx == j).sum()) for j in range(2)]
    assert hourly[0][2] == pytest.approx(power.v[power.sidx == 0].mean(), rel=1e-12)
    summary = sql(pg, "SELECT probe, metric, samples FROM S.series_summary ORDER BY probe, metric")
    assert len(summary) == 8 and sum(r[2] for r in summary) == len(trace)
    queries = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(queries) >= 4
    for query in queries:
        got = pg.admin.execute(grafana(query, pg.schema)).fetchall()
        assert got, query


def terminate(pg) -> int:
    """Kill every server process of this store's connections, as an administrator or a failover would."""
    return len(sql(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                   f"wattsight:{pg.schema}"))


@pytest.mark.parametrize("ack", ["commit", "queued"])
def test_connections_killed_by_the_server_are_reopened_and_nothing_is_lost(pg, ack):
    store = pg.open(ack=ack, batch_rows=2000)
    trace = pdu_trace(4, 600, seed=8)
    pieces = batches(trace, 500)
    for i, b in enumerate(pieces):
        store.handle(b)
        if i % 7 == 3:
            assert terminate(pg) >= 1 or ack == "queued"
        if i % 11 == 5:
            store.read([KEY], *ALL)  # reads go through the pool's dead connections too
    store.flush()
    assert store.stats()["reconnects"] >= 1
    store.close()
    again = pg.open()
    got = again.read([s.key for s in trace.series], *ALL)
    for j, s in enumerate(trace.series):
        assert np.array_equal(got[s.key][1], trace.v[trace.sidx == j]), s.key
    assert again.stats()["samples_total"] == len(trace)


def test_an_unreachable_server_is_named_and_a_commit_gives_up_after_write_timeout(pg):
    from wattsight.consumers.pgstore import PgStore, PgStoreConfig

    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/test schema 'nothing_here': cannot connect"):
        PgStore(PgStoreConfig(dsn="host=127.0.0.1 port=1 user=postgres dbname=test", schema="nothing_here",
                              connect_timeout=1))
    store = pg.open(write_timeout=0.3)
    store.handle(one(POWER, [T0], [1.0]))
    # the server "goes away": its connection is killed and new ones go to a port nobody listens on
    # (the shared server itself is not stopped)
    store._pool.cfg = store._pool.cfg.model_copy(update={"dsn": "host=127.0.0.1 port=1 dbname=test"})
    terminate(pg)
    with pytest.raises(StoreError, match="1 samples not stored"):
        store.handle(one(POWER, [T0 + 1000], [2.0]))
    assert [r[0] for r in sql(pg, "SELECT v FROM S.samples")] == [1.0]


def test_a_store_config_section_is_accepted_as_the_app_passes_it(pg):
    from wattsight.consumers.pgstore import PgStore, PgStoreConfig
    from wattsight.consumers.pgstore.config import SAMPLE

    tomllib = pytest.importorskip("tomllib")
    section = tomllib.loads(SAMPLE)["store"]["postgresql"]
    assert PgStoreConfig(**section).schema_name == "wattsight"
    section = SimpleNamespace(backend="postgresql", postgresql=PgStoreConfig(dsn=PG_DSN, schema=pg.schema))
    store = PgStore(section)
    pg.stores.append(store)
    store.handle(one(POWER, [T0], [1.0]))
    assert store.series()[0].count == 1


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from wattsight.consumers.pgstore import PgStore, PgStoreConfig
    from wattsight.sample import Batch, Series

    store = PgStore(PgStoreConfig(dsn=sys.argv[1], schema=sys.argv[2]))
    power = Series("t.pdu-1", "power", "W")
    i = 0
    while True:
        t = 1_767_225_600_000 + i * 1000 + np.arange(100)
        store.handle(Batch.of_series(power, t, np.full(100, float(i))))
        print(i, flush=True)
        i += 1
""")


@pytest.mark.slow
def test_everything_acknowledged_survives_kill_9(pg):
    child = subprocess.Popen([sys.executable, "-c", WRITER, PG_DSN, pg.schema], stdout=subprocess.PIPE,
                             text=True)
    printed = []
    try:
        for line in child.stdout:
            printed.append(int(line))
            if len(printed) >= 150:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        printed += [int(x) for x in child.stdout.read().split()]
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL and printed == list(range(len(printed)))
    store = pg.open()
    t, v = store.read([KEY], *ALL)[KEY]
    batches_in = sorted(set(v.astype(int).tolist()))
    # every acknowledged batch is there, whole; the one being written when killed may be too
    assert batches_in[:len(printed)] == printed and len(batches_in) - len(printed) in (0, 1)
    assert len(t) == 100 * len(batches_in)


def test_reads_see_queued_batches_before_they_are_written(queued):
    store = queued.open()
    gate = threading.Event()
    write = store._writer.write

    def slow_write(*args, **kw):
        gate.wait(10)
        return write(*args, **kw)

    store._writer.write = slow_write  # the server is slow: batches wait in the backlog
    store.handle(one(POWER, T0 + np.arange(3) * 1000, [1.0, 2.0, 3.0]))
    store.handle(one(POWER, [T0 + 1000], [9.0]))
    assert store.read([KEY], *ALL)[KEY][1].tolist() == [1.0, 9.0, 3.0]
    [info] = store.series()
    assert (info.count, info.last_v) == (4, 3.0) and store.stats()["backlog_samples"] == 4
    assert sql(queued, "SELECT count(*) FROM S.samples") == [(0,)]
    gate.set()
    store.flush()
    assert store.read([KEY], *ALL)[KEY][1].tolist() == [1.0, 9.0, 3.0]
    assert store.series()[0].count == 3 and store.stats()["backlog_samples"] == 0
