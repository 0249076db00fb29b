"""Crash at full ingest rate: ``kill -9`` of the store while the drivers publish as fast as it ingests.

A ``--role drivers`` process (dummy bursts: 2,000 probes x 50 samples every 0.1 s, 1 M
samples/s offered -- what the store sustains on a 2-core machine while it also flushes, rolls
up and merges; bench/e2e.py offers 2 M/s, which the log takes but the flushes do not keep up
with) publishes on an ipc bus to a ``--role store,api`` process with a 0.5 s flush interval.
The store process is killed three times, each at another moment of its maintenance: a segment
being written, a segment written whose log files are not deleted yet, a rollup file being
written (if a moment does not come within 30 s, it is killed anyway, and the test fails once
its other checks have run).  It is started again on the same folder; the drivers process is never restarted.
After each restart, once samples measured after it have arrived, the drivers process is
paused (SIGSTOP) until the store has flushed the outage's backlog, so that rounds do not pile
up samples.  In one round the store stays down until the drivers' outbox overflows its backlog.

How "acknowledged" is known exactly: while the store runs, the test hard-links every
write-ahead-log file as it appears, so the links keep every record the store wrote (a flush
deletes only the store's own names).  ``handle()`` returns -- and the batch is acknowledged --
only once the record is written, so:

(a) the acknowledged count read from /api/v1/health just before a kill is at most the samples
    in that process's records, and every (series, time) of every record is in the final store;
(b) after each kill, before the restart: every segment and rollup file reads whole; the log
    has at most a torn last record (a large ``writev`` that ``kill -9`` interrupted); the
    restarted store reports no corrupt record, no other problem, and removed the temporary files;
(c) each restarted store receives samples measured after it started, from the same drivers
    process; the outbox reports dropped samples when its backlog overflows, and never more
    than are missing from the outage.

Printed (``pytest -s``): the moments hit, restart times, and the bus messages that were in
flight at each kill (sent, never logged, never acknowledged), which the restarted store counts as
lost through its bus ledger (checked: exactly those, or one more when the kill fell between a log
record and its ledger line).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from procs import Wattsight, free_port

from wattsight.config import StoreConfig
from wattsight.consumers.store import Store
from wattsight.consumers.store.segment import Segment
from wattsight.consumers.store.wal import Problem, replay

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import dummy_rack_config

pytestmark = pytest.mark.slow

PROBES, BURST, PERIOD, PREFIX = 2000, 50, 0.1, "node-"  # 1 M samples/s offered
FLUSH_INTERVAL = 0.5
ACKED_PER_ROUND = 1_000_000  # samples acknowledged at full rate before a kill is armed
MOMENT_WAIT = 30.0  # s to wait for the moment of a kill (~60 flushes), then kill anyway and fail at the end
LONG_OUTAGE = 2  # the round whose store stays down until the drivers' outbox drops samples
SEG = re.compile(r"^(\.tmp-)?(\d{12})-(\d{12})\.parquet$")
WAL = re.compile(r"^(\d{12})\.wal$")
#: The moments of the store's maintenance at which it is killed, one per round.
MOMENTS = ("segment-being-written", "segment-done-log-not-deleted", "rollup-being-written")
T_BITS = 41  # ms since 1970 fit in 41 bits until 2039: a sample is (series << 41) | t


def config(tmp: Path) -> Path:
    bus = f"ipc://{tmp}/bus"
    if len(bus) > 100:  # an ipc path longer than sun_path
        bus = f"tcp://127.0.0.1:{free_port()}"
    return dummy_rack_config(tmp / "crash.toml", site="crash", endpoint=bus,
                             secret="a-test-secret-of-enough-length-0123456789", store=tmp / "store",
                             count=PROBES, burst=BURST, period=PERIOD, flush_interval=FLUSH_INTERVAL)


class Watcher(threading.Thread):
    """Polls the store folder every 5 ms: hard-links each log file, and kills the store at a moment."""

    def __init__(self, store: Path, links: Path) -> None:
        super().__init__(name="store-watcher", daemon=True)
        self.wal, self.segments, self.links = store / "wal", store / "segments", links
        self.linked: dict[int, Path] = {}
        self.vanished: list[int] = []  # log files deleted before the watcher saw them
        self.lock = threading.Lock()
        self.target = None  # (moment, Wattsight) to kill at that moment
        self.killed_at: tuple[str, float] | None = None
        self.done = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sweep()
            time.sleep(0.005)

    def sweep(self) -> None:
        with self.lock:
            self._link_logs()
            if self.target is not None:
                moment, proc = self.target
                if self._at(moment):
                    proc.kill9()
                    self.killed_at, self.target = (moment, time.time()), None
                    self.done.set()

    def _link_logs(self) -> set[int]:
        numbers = set()
        for name in _listdir(self.wal):
            if (m := WAL.match(name)) is None:
                continue
            n = int(m[1])
            numbers.add(n)
            if n not in self.linked:
                try:
                    os.link(self.wal / name, self.links / name)
                except FileNotFoundError:
                    self.vanished.append(n)
                    continue
                self.linked[n] = self.links / name
        return numbers

    def _at(self, moment: str) -> bool:
        names = _listdir(self.segments)
        done = [(int(m[2]), int(m[3])) for m in map(SEG.match, names) if m and not m[1]]
        temp = [(int(m[2]), int(m[3])) for m in map(SEG.match, names) if m and m[1]]
        if moment == "segment-being-written":
            return bool(temp)
        if moment == "segment-done-log-not-deleted":  # the log listed after the segments: both are there
            wal = {int(m[1]) for m in map(WAL.match, _listdir(self.wal)) if m}
            return any(lo <= n <= hi for lo, hi in done for n in wal)
        if moment == "rollup-being-written":
            rollups = self.segments.parent / "rollups"
            return any(name.startswith(".tmp-") for d in (rollups, *(rollups / x for x in ("1m", "5m", "1h", "1d")))
                       for name in _listdir(d))
        if moment == "merge-being-written":
            return any(lo <= a and b <= hi and (a, b) != (lo, hi) for lo, hi in temp for a, b in done)
        return True  # "now"

    def arm(self, moment: str, proc: Wattsight) -> None:
        with self.lock:
            self.done.clear()
            self.killed_at, self.target = None, (moment, proc)

    def kill_now(self, proc: Wattsight) -> None:
        self.arm("now", proc)
        self.done.wait(30)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


class Samples:
    """(series, t) of samples as sorted unique int64 codes; series numbered by (probe, metric)."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}

    def code(self, keys, sid: np.ndarray, t: np.ndarray) -> np.ndarray:
        lut = np.asarray([self.ids.setdefault(k, len(self.ids)) for k in keys], np.int64)
        assert t.min(initial=1 << T_BITS) >= 0 and t.max(initial=0) < (1 << T_BITS)
        return (lut[sid] << T_BITS) | t

    def describe(self, codes: np.ndarray) -> list[str]:
        names = {v: k for k, v in self.ids.items()}
        return [f"{names[int(c) >> T_BITS]} t={int(c) & ((1 << T_BITS) - 1)}" for c in codes[:5]]


def unique(codes: np.ndarray) -> np.ndarray:
    """Sorted unique codes (a sort: np.unique's hash table is far slower on tens of millions)."""
    codes = np.sort(codes)
    keep = np.ones(len(codes), bool)
    np.not_equal(codes[1:], codes[:-1], out=keep[1:])
    return codes[keep]


def not_in(wanted: np.ndarray, sorted_codes: np.ndarray) -> np.ndarray:
    """The codes of ``wanted`` missing from ``sorted_codes``."""
    at = np.minimum(np.searchsorted(sorted_codes, wanted), max(len(sorted_codes) - 1, 0))
    found = sorted_codes[at] == wanted if len(sorted_codes) else np.zeros(len(wanted), bool)
    return wanted[~found]


def read_log(path: Path, samples: Samples) -> tuple[int, int, np.ndarray, list[Problem]]:
    """(records, rows, sample codes, problems) of one write-ahead-log file."""
    records, rows, codes, problems = 0, 0, [], []
    for item in replay(path):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        records += 1
        rows += len(item)
        codes.append(samples.code([s.key for s in item.series], item.sidx.astype(np.int64), item.t))
    return records, rows, (unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64)), problems


def check_files(store: Path) -> dict:
    """Every segment and rollup file of a killed store reads whole; what was found."""
    found = {"segments": 0, "segment_rows": 0, "rollup_files": 0, "temp_files": []}
    for p in sorted((store / "segments").glob("*.parquet")):
        if p.name.startswith(".tmp-"):
            found["temp_files"].append(p.name)
            continue
        seg = Segment.open(p)
        sid, t, _ = seg.read_all()
        assert len(t) == seg.rows == int(seg.count.sum()), p
        assert np.all(np.diff(sid) >= 0), p
        found["segments"] += 1
        found["segment_rows"] += seg.rows
    rollups = store / "rollups"
    for p in sorted(rollups.rglob("*")) if rollups.is_dir() else []:
        if p.name.startswith(".tmp-"):
            found["temp_files"].append(str(p.relative_to(store)))
        elif p.suffix == ".parquet":
            pq.read_table(p)
            found["rollup_files"] += 1
        elif p.suffix == ".json":
            import json

            json.loads(p.read_text())  # STATE.json: written whole, then renamed
    return found


def first_seq(health: dict) -> int | None:
    """The bus sequence number of the first message this store process received (one source, one topic)."""
    sources = list(health["bus"]["inbox"]["sources"].values())
    return sources[0]["first"] if len(sources) == 1 else None


def bus_lost(health: dict) -> int:
    """Messages this store process counts as lost (from the ledger: those sent while it was down)."""
    return health["bus"]["inbox"]["lost"]


def dropped_reported(log: str) -> int:
    """The outbox's total of dropped samples, from the drivers' log ("(N in all)")."""
    totals = [int(n) for n in re.findall(r"\((\d+) in all\)", log)]
    return max(totals, default=0)


def test_kill_9_at_full_rate_loses_no_acknowledged_sample(tmp_path):
    cfg = config(tmp_path)
    store_dir, links = tmp_path / "store", tmp_path / "wal-links"
    links.mkdir()
    listen = f"127.0.0.1:{free_port()}"
    samples = Samples()
    watcher = Watcher(store_dir, links)
    watcher.start()
    T0 = time.time()

    def start_store(n: int) -> Wattsight:
        ws = Wattsight(["-c", str(cfg), "--role", "store,api"], tmp_path, name=f"store-{n}", listen=listen)
        ws.wait_ready(timeout=180)
        return ws

    def health() -> dict:
        return store.get("/api/v1/health")

    def acked() -> int:
        return health()["bus"]["inbox"]["acked_samples"]

    def last_measured() -> float:
        last = store.get(f"/api/v1/probes/crash.{PREFIX}1")["last"]
        return last["power"]["measured_at"] if last else 0.0

    store = start_store(0)
    drivers = Wattsight(["-c", str(cfg), "--role", "drivers"], tmp_path, name="drivers")
    rounds, logged, first_log = [], [], 1
    try:
        drivers.wait_ready()
        for n, moment in enumerate(MOMENTS):
            # at full rate: the drivers publish, the store acknowledges, and flushes
            base = acked()
            store.wait_for(lambda base=base: acked() >= base + ACKED_PER_ROUND, timeout=120,
                           what=f"round {n}: {ACKED_PER_ROUND:,} more samples acknowledged")
            h = health()
            before, first = h["bus"]["inbox"]["acked_samples"], first_seq(h)  # the acked count only grows
            print(f"round {n}: armed at {time.time() - T0:.1f} s")
            watcher.arm(moment, store)
            if not watcher.done.wait(MOMENT_WAIT):  # that moment did not come: kill now (said below)
                watcher.kill_now(store)
            hit, killed_at = watcher.killed_at
            assert drivers.proc.poll() is None, drivers.output()
            dropped_before = dropped_reported(drivers.output())
            watcher.sweep()  # the store is dead: the last log file it created is linked now

            # (b) every segment and rollup file the crash left reads (before the restart changes them)
            found = check_files(store_dir)
            mine = sorted(k for k in watcher.linked if k >= first_log)  # this process's log files
            assert mine and mine == list(range(mine[0], mine[-1] + 1)), (mine, watcher.vanished)
            first_log = mine[-1] + 1

            if n == LONG_OUTAGE:  # the outbox's backlog overflows: the drivers must say what they drop
                drivers.wait_for(lambda since=dropped_before: dropped_reported(drivers.output()) > since,
                                 timeout=120, what=f"round {n}: the drivers report dropped samples")
            t = time.time()
            store = start_store(n + 1)  # the drivers publish on meanwhile
            restarted = time.time()
            st = health()["store"]
            print(f"round {n} at {killed_at - T0:.1f} s: killed at {hit} (wanted {moment}), {found}; restart "
                  f"took {restarted - t:.1f} s: replayed {st['replayed_samples']:,}, torn {st['wal_torn']}, "
                  f"corrupt {st['wal_corrupt']}, temp files {st['temp_files_removed']}")
            assert st["wal_corrupt"] == 0 and st["wal_torn"] <= 1 and st["flush_errors"] == 0, st
            assert len(st["problems"]) == st["wal_torn"], st
            # exactly the segment temp files the crash left (rollup ones are the rollups' to remove)
            assert st["temp_files_removed"] == sum("/" not in f for f in found["temp_files"]), (st, found)

            # (b) the log read through the links: at most a torn last record
            records, rows, problems = 0, 0, []
            for k in mine:
                m, r, c, p = read_log(watcher.linked[k], samples)
                records, rows, problems = records + m, rows + r, problems + [(k, x) for x in p]
                logged.append(c)
            assert all(x.kind == "torn" and k == mine[-1] for k, x in problems), problems
            # (a) every sample acknowledged before the kill is in the log records this process wrote
            assert rows >= before, (rows, before)
            print(f"round {n}: acked {before:,} <= in the log {rows:,}; torn records: {len(problems)}")
            # (c) ingest resumes by itself: samples measured after the restart, from the same drivers
            store.wait_for(lambda since=restarted: last_measured() > since, timeout=120,
                           what=f"round {n}: samples measured after the restart")
            assert drivers.proc.poll() is None, drivers.output()
            h = health()
            again = first_seq(h)
            assert first is not None and again is not None, h["bus"]
            # messages sent to the killed store, never logged: the restarted store counts them as lost
            # from its ledger (one more when the kill fell between the log write and the ledger line)
            in_flight = again - first - records
            print(f"round {n}: {in_flight} bus messages in flight at the kill were lost; the restarted "
                  f"store counts {bus_lost(h)} lost")
            assert in_flight <= bus_lost(h) <= in_flight + 1, (in_flight, h["bus"])
            print(f"round {n}: samples measured after the restart {time.time() - restarted:.1f} s after it")
            rounds.append({"hit": hit, "killed_at": killed_at, "restarted_at": restarted,
                           "dropped": dropped_reported(drivers.output()) - dropped_before})
            if n + 1 < len(MOMENTS):  # the drivers wait while the store flushes the outage's backlog
                os.kill(drivers.proc.pid, signal.SIGSTOP)
                try:
                    store.wait_for(lambda: health()["store"]["tail_samples"] == 0, timeout=180,
                                   what=f"round {n}: the store flushed what it received")
                finally:
                    os.kill(drivers.proc.pid, signal.SIGCONT)
                print(f"round {n}: the store flushed its backlog at {time.time() - T0:.1f} s")
        drivers.stop()
        assert drivers.proc.returncode == 0, drivers.output()
        seen = [-1]

        def quiet() -> bool:  # the same count twice, a second apart: the last batches are in
            seen.append(acked())
            time.sleep(1.0)
            return seen[-1] == seen[-2]

        store.wait_for(quiet, timeout=60, what="the bus quiet after the drivers stopped")
    finally:
        watcher.stop.set()
        watcher.join(5)
        if drivers.proc.poll() is None:
            os.kill(drivers.proc.pid, signal.SIGCONT)
            drivers.stop()
        code = store.stop(timeout=180)
    assert code == 0, store.output()
    for log in [drivers.log, *sorted(tmp_path.glob("store-*.log"))]:  # the killed stores' logs too
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-5000:]
    print(f"stopped at {time.time() - T0:.1f} s")

    # the final store: every sample of every log record is in it
    with Store(StoreConfig(path=store_dir, flush_interval=3600)) as final:
        stats = final.stats()
        keys = [info.series.key for info in final.series()]
        got = final.read(keys, 0, 1 << T_BITS)
    assert stats["wal_corrupt"] == 0 and stats["wal_torn"] == 0 and not stats["problems"], stats
    stored = unique(np.concatenate([samples.code([k], np.zeros(len(t), np.int64), t)
                                    for k, (t, _) in got.items()]))
    del got
    logged = unique(np.concatenate(logged))
    missing = not_in(logged, stored)
    print(f"final at {time.time() - T0:.1f} s: {len(stored):,} samples stored, {len(logged):,} in the logs")
    assert not len(missing), (f"{len(missing):,} samples of the logs are not stored",
                              samples.describe(missing))
    times = unique(stored & ((1 << T_BITS) - 1))  # the dummy bursts: every probe at each time
    for n, r in enumerate(rounds):
        # (c) what is missing around the outage is at least what the outbox reported dropped
        lo, hi = int(r["killed_at"] * 1000) - 2000, int(r["restarted_at"] * 1000)
        held = np.count_nonzero((times > lo) & (times < hi))  # every probe has a sample at each of these
        absent = max(0, round((hi - lo) * BURST / (PERIOD * 1000)) - held) * PROBES  # bursts: evenly spaced
        print(f"round {n}: outage {hi - lo:,} ms: {held:,} sample times stored, {absent:,} samples absent, "
              f"{r['dropped']:,} reported dropped by the drivers")
        assert r["dropped"] <= absent, (n, r, absent)
    # every round was killed at the moment it wanted (a kill "now" proves nothing about that moment)
    assert [r["hit"] for r in rounds] == list(MOMENTS), rounds
    shutil.rmtree(links)  # hundreds of MB of log; kept when the test fails
