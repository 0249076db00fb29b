"""Retention and compaction of the embedded store: exactly the old raw samples go, rollups stay,
ingest and reads go on during a pass, kill -9 during a pass loses nothing and corrupts nothing,
and /api/v1/storage shows disk use and oldest/newest per metric."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from wattsight.config import ApiConfig, StoreConfig
from wattsight.consumers.api import ApiContext, create_app
from wattsight.consumers.store import Store
from wattsight.consumers.store import retention as rt
from wattsight.consumers.store.segment import Segment
from wattsight.sample import Batch, Series, Topology

DAY = 86_400_000
T0 = 1_767_225_600_000
NOW = T0 + 10 * DAY
POWER = Series("t.pdu-1", "power", "W")
TEMP = Series("t.pdu-1", "temperature", "Cel")
NET = Series("t.sw-1", "network_in", "B", "counter")
RULES = rt.RetentionConfig(raw={"power": "7d", "network_in": "3d"}, rollups={"1m": "5d"})


def fill(store: Store, days: int = 10, step_s: int = 60) -> dict[Series, tuple[np.ndarray, np.ndarray]]:
    """``days`` of samples every ``step_s`` s, one flush per day (one segment each)."""
    sent = {s: ([], []) for s in (POWER, TEMP, NET)}
    per_day = DAY // (step_s * 1000)
    for d in range(days):
        t = T0 + d * DAY + np.arange(per_day, dtype=np.int64) * step_s * 1000
        for i, s in enumerate((POWER, TEMP, NET)):
            v = np.round(100.0 + 10 * i + np.sin(t / 1e7) * 5, 1) if s is not NET else (t - T0) / 1000.0
            store.handle(Batch.of_series(s, t, v))
            sent[s][0].append(t)
            sent[s][1].append(v)
        store.flush()
    return {s: (np.concatenate(a), np.concatenate(b)) for s, (a, b) in sent.items()}


def open_store(path: Path) -> Store:
    return Store(StoreConfig(path=path, flush_interval=3600), clock=lambda: NOW, retention=RULES)


def test_rules_parse_and_refuse_bad_durations():
    assert RULES.raw_ms("power") == 7 * DAY and RULES.raw_ms("temperature") is None
    assert rt.RetentionConfig(raw={"*": "12h"}).raw_ms("anything") == 12 * 3_600_000
    assert rt.RetentionConfig(raw={"*": "2y", "power": "forever"}).raw_ms("power") is None
    for bad in ("7 days", "-1d", "0d", "soon"):
        with pytest.raises(ValueError):
            rt.RetentionConfig(raw={"power": bad})
    with pytest.raises(ValueError):
        rt.RetentionConfig(rollups={"10m": "1d"})


def test_retention_drops_exactly_the_old_raw_samples_and_keeps_rollups(tmp_path):
    store = open_store(tmp_path / "s")
    sent = fill(store)
    energy_before = store.energy([POWER.key], T0, NOW, 120_000)[POWER.key]
    buckets_before = store.buckets([POWER.key], T0, NOW - 1, DAY)[POWER.key]
    done = store.apply_retention()
    assert done["dropped"] == int((sent[POWER][0] < NOW - 7 * DAY).sum() + (sent[NET][0] < NOW - 3 * DAY).sum())
    for again in (store, None):
        if again is None:
            store.close()
            again = open_store(tmp_path / "s")
        got = again.read([POWER.key, TEMP.key, NET.key], 0, 2**62)
        for s, keep_ms in ((POWER, 7 * DAY), (TEMP, None), (NET, 3 * DAY)):
            t, v = sent[s]
            keep = t >= NOW - keep_ms if keep_ms else np.ones(len(t), bool)
            assert np.array_equal(got[s.key][0], t[keep]) and np.array_equal(got[s.key][1], v[keep]), s
        infos = {i.series: i for i in again.series()}
        assert infos[POWER].first_t == int(sent[POWER][0][sent[POWER][0] >= NOW - 7 * DAY][0])
        assert infos[POWER].count == int((sent[POWER][0] >= NOW - 7 * DAY).sum())
        # the 1 h and 1 d cells outlive the raw samples: whole days still answer from them
        b = again.buckets([POWER.key], T0, NOW - 1, DAY)[POWER.key]
        assert b["n"].tolist() == buckets_before["n"].tolist() and b["max"].tolist() == buckets_before["max"].tolist()
        e = again.energy([POWER.key], T0, NOW, 120_000)[POWER.key]
        assert e.covered_ms == energy_before.covered_ms and e.joules == pytest.approx(energy_before.joules)
        # 1 min cells older than 5 days are gone
        assert min(again._rollups.files["1m"]) >= NOW - 5 * DAY - 3_600_000
    assert again.apply_retention()["dropped"] == 0  # nothing more to do
    u = again.usage()
    assert u["metrics"]["power"]["oldest_ms"] == int(sent[POWER][0][sent[POWER][0] >= NOW - 7 * DAY][0])
    assert u["metrics"]["temperature"]["oldest_ms"] == T0 and u["metrics"]["power"]["raw_retention_ms"] == 7 * DAY
    assert u["bytes_on_disk"] == u["segment_bytes"] + u["wal_bytes"] + u["rollup_bytes"] > 0
    again.close()


def test_ingest_and_reads_go_on_while_a_segment_is_rewritten(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s")
    sent = fill(store, days=9)
    inside, release = threading.Event(), threading.Event()
    real = rt.write_prepared

    def paused(*args, **kw):  # the pass stops in the middle of its first rewrite
        inside.set()
        assert release.wait(60)
        return real(*args, **kw)

    monkeypatch.setattr(rt, "write_prepared", paused)
    result = {}
    job = threading.Thread(target=lambda: result.update(store.apply_retention()))
    job.start()
    assert inside.wait(60)
    late = T0 + 9 * DAY + np.arange(100) * 1000
    store.handle(Batch.of_series(POWER, late, np.full(100, 7.0)))  # ingest during the pass
    t, _ = store.read([POWER.key], 0, 2**62)[POWER.key]  # a read during the pass: everything still there
    assert np.array_equal(t, np.union1d(sent[POWER][0], late))
    release.set()
    job.join()
    t, v = store.read([POWER.key], 0, 2**62)[POWER.key]
    assert t[0] >= NOW - 7 * DAY and np.array_equal(t[-100:], late) and v[-1] == 7.0
    assert result["rewritten"] >= 1
    store.close()


CHILD = r"""
import sys, numpy as np
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_store_retention as T
from wattsight.consumers.store import retention as rt
store = T.open_store(Path(sys.argv[1]))
sent = T.fill(store, days=9)
mode = sys.argv[2]
if mode == "pause":  # stop for good once the new file is written, before it replaces the old one
    real_replace = rt.write_prepared.__globals__["os"].replace
    def replace(src, dst):
        if str(src).endswith(".parquet") and "segments" in str(src):
            print("REWRITING", flush=True)
            sys.stdin.read()
        real_replace(src, dst)
    rt.write_prepared.__globals__["os"].replace = replace
    store.apply_retention()
else:  # passes while ingesting: acknowledged batches are printed, the parent kills at random
    for i in range(10**6):
        t = T.T0 + 9 * T.DAY + i * 1000 + np.arange(10) * 100
        store.handle(T.Batch.of_series(T.TEMP, t, np.full(10, float(i))))
        print("ACK", i, flush=True)
        if i % 7 == 0:
            store.flush()
            store.apply_retention()
"""


@pytest.mark.parametrize("mode", ["pause", "random"])
def test_kill_9_during_compaction_loses_nothing_and_corrupts_nothing(tmp_path, mode):
    path = tmp_path / "s"
    code = CHILD.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), mode], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True)
    acked = -1
    try:
        for line in proc.stdout:
            if line.startswith("REWRITING"):
                break
            if line.startswith("ACK"):
                acked = int(line.split()[1])
                if acked >= 40 + np.random.default_rng().integers(0, 30):
                    break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    if mode == "pause":  # killed with the rewritten file written but not in place yet
        assert list((path / "segments").glob(".tmp-*"))
    for p in (path / "segments").glob("[0-9]*.parquet"):
        Segment.open(p)  # every segment left is whole
    store = open_store(path)
    got = store.read([POWER.key, TEMP.key], 0, 2**62)
    t = got[POWER.key][0]
    want = T0 + np.arange(9 * 1440, dtype=np.int64) * 60_000
    assert set(want[want >= NOW - 7 * DAY].tolist()) <= set(t.tolist())  # kept samples: all there
    assert set(t.tolist()) <= set(want.tolist())
    temp_t = set(got[TEMP.key][0].tolist())
    assert set((T0 + np.arange(9 * 1440) * 60_000).tolist()) <= temp_t  # no rule: all kept
    for i in range(acked + 1):  # every acknowledged batch is there
        assert T0 + 9 * DAY + i * 1000 in temp_t
    assert not list((path / "segments").glob(".tmp-*"))
    store.apply_retention()
    assert store.read([POWER.key], 0, NOW - 7 * DAY - 1)[POWER.key][0].size == 0
    store.close()


def test_storage_route(tmp_path):
    store = open_store(tmp_path / "s")
    fill(store, days=2)
    ctx = ApiContext(store=store, topology=Topology(), config=ApiConfig(), clock=lambda: NOW)
    with TestClient(create_app(ctx)) as client:
        r = client.get("/api/v1/storage")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metrics"]["power"]["oldest"] == T0 / 1000 and body["metrics"]["power"]["samples"] == 2 * 1440
    assert body["metrics"]["power"]["oldest_iso"].startswith("2026-01-01")
    assert set(body["rollups"]) == {"1m", "5m", "1h", "1d"} and body["bytes_on_disk"] > 0
    store.close()
