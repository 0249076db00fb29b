"""PgStore: the embedded store's interface over a schema of a PostgreSQL database.

::

    handle(batch) --ack "commit"--> one transaction: COPY (binary, from numpy) + rollups + summary
                  --ack "queued"--> bounded backlog --writer thread--> the same, many batches at once
    read(keys, start, end) <-- binary COPY out of samples (+ the backlog not yet written)
    series() <-- <schema>.series (summaries kept in each transaction) (+ the backlog)
    buckets(keys, start, end, step) <-- the coarsest rollup table that fits, else the samples

Tables, partitions and views: schema.py; writing: ingest.py and rollup.py; reading: read.py.
docs/consumers/postgresql.md tells the whole story, the guarantees and the measured figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Self

import numpy as np

from ...errors import MissingDependency, SampleError, StoreError
from ...sample import Batch, Series, now_ms
from ...timeseries import merge_parts
from ..store.tail import Chunk, Registry, SeriesInfo, batch_columns, select
from . import read as rd
from .config import PgStoreConfig
from .ingest import Writer
from .rollup import per_series
from .schema import MAX_MS, MIN_MS, open_layout

try:
    import psycopg
except ImportError:  # an extra: the embedded store needs nothing of it
    psycopg = None

log = logging.getLogger("wattsight.pgstore")
Key = tuple[str, str]


class _Pool:
    """A few idle connections, handed to one thread at a time (autocommit; explicit transactions)."""

    def __init__(self, cfg: PgStoreConfig, size: int = 4) -> None:
        self.cfg, self.size = cfg, size
        self._idle: list = []
        self._lock = threading.Lock()

    def connect(self):
        kw = {"autocommit": True, "connect_timeout": max(1, round(self.cfg.connect_timeout)),
                  "application_name": f"wattsight:{self.cfg.schema_name}"[:63], "options": "-c timezone=UTC"}
        if self.cfg.password_file is not None:
            kw["password"] = self.cfg.password_file.read_text().strip()
        return psycopg.connect(self.cfg.dsn, **kw)

    @contextmanager
    def connection(self) -> Iterator:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.connect()
        try:
            yield conn
        finally:
            healthy = not conn.closed and not conn.broken and \
                conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with self._lock:
                if healthy and len(self._idle) < self.size:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def clear(self) -> None:
        """Close the idle connections (after the server dropped one, the others are suspect too)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def where(cfg: PgStoreConfig) -> str:
    """The database and schema, for messages: host, port and database name, never a password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(cfg.dsn)
    except psycopg.ProgrammingError:
        return f"postgresql schema {cfg.schema_name!r} (unparsable dsn)"
    host = info.get("host", "localhost")
    return f"postgresql://{host}:{info.get('port', 5432)}/{info.get('dbname', '')} schema {cfg.schema_name!r}"


class PgStore:
    """``handle()`` batches into PostgreSQL; ``read()``, ``series()``, ``buckets()`` them back."""

    SUMMARY_TTL = 1.0  # seconds series() may answer from its last query when this store wrote nothing since

    def __init__(self, config, *, clock: Callable[[], int] = now_ms) -> None:
        if psycopg is None:
            raise MissingDependency("psycopg", "postgresql", "the PostgreSQL store")
        cfg = config if isinstance(config, PgStoreConfig) else getattr(config, "postgresql", None)
        if not isinstance(cfg, PgStoreConfig):
            raise StoreError("the PostgreSQL store needs a [store.postgresql] section (dsn, schema, ...)")
        self.config, self.clock, self.where = cfg, clock, where(cfg)
        self._pool = _Pool(cfg)
        try:
            with self._pool.connection() as conn:
                self.layout = open_layout(conn, cfg.schema_name, cfg.partition, cfg.rollups, cfg.timescaledb,
                                          cfg.compress_after_days)
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.where}: cannot connect ({_first_line(exc)}); check that the server runs "
                             "and the dsn, user and password of [store.postgresql]") from exc
        except psycopg.Error as exc:  # e.g. no right to create the schema
            self._pool.clear()
            raise StoreError(f"{self.where}: cannot open the schema ({_first_line(exc)})") from exc
        self._lock = threading.Lock()  # local series table, backlog, counters
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # one group at a time: the writer's id map
        self._registry = Registry()  # local series ids; only its series table is used here
        self._series: list[Series] = self._registry.series
        self._writer = Writer(self.layout, self._series)
        self._pending: list[Chunk] = []  # queued, not taken by the writer yet
        self._inflight: list[Chunk] = []  # taken, being written
        self._backlog = 0  # samples in both
        self._n = {"batches_total": 0, "samples_written": 0, "reconnects": 0, "write_errors": 0,
                   "dropped_samples": 0}
        self._problems: list[str] = []
        self._generation = 0  # groups committed by this store
        self._summary: tuple[float, int, list[SeriesInfo]] | None = None
        self._last_commit_ms: int | None = None
        self._closed = False
        self._abort = threading.Event()
        self._thread = None
        if cfg.ack == "queued":
            self._thread = threading.Thread(target=self._run, name="pgstore-writer", daemon=True)
            self._thread.start()

    # -- writing -------------------------------------------------------------------------
    def handle(self, batch: Batch, raw: bytes | None = None) -> None:
        """Store ``batch``: returns once it is committed ("commit") or queued ("queued").

        ``raw`` (the bus message), when given, only spares hashing a series table seen before.
        """
        if not len(batch):
            return
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.where}: the store is closed; a batch of {len(batch)} samples "
                                 "was not stored (open a new PgStore)")
            sid, t, v = batch_columns(batch, self._registry.id_map(batch.series, raw))  # checks sidx; copies
        chunk = Chunk.of(sid, t, v)
        if chunk.tmin < MIN_MS or chunk.tmax > MAX_MS:
            raise SampleError(f"a batch of {len(batch)} samples has times outside the years 1..9999 "
                              f"({chunk.tmin}..{chunk.tmax} ms): not stored")
        if self.config.ack == "commit":
            self._write([chunk], deadline=time.monotonic() + self.config.write_timeout)
        else:
            self._enqueue(chunk)

    def _write(self, chunks: list[Chunk], deadline: float | None) -> None:
        """One group in one transaction; reconnects and retries while the server is unreachable.

        ``deadline`` None: retry until it works or the store is aborted (the queued writer).
        A group is idempotent (a sample written twice replaces itself), so a commit whose
        acknowledgement was lost is simply written again.
        """
        sid, t, v = (np.concatenate([getattr(c, f) for c in chunks]) for f in ("sid", "t", "v"))
        pause, failures = 0.05, 0
        while True:
            try:
                with self._write_lock, self._pool.connection() as conn:
                    self._writer.write(conn, sid, t, v, ahead_ms=self.clock(), reload=failures > 0)
                break
            except psycopg.OperationalError as exc:  # the server went away, or the connection did
                self._pool.clear()
                with self._lock:
                    self._n["reconnects"] += 1
                if (deadline is not None and time.monotonic() + pause > deadline) or self._abort.is_set():
                    raise StoreError(f"{self.where}: {len(t)} samples not stored: {_first_line(exc)} "
                                     "(the server did not come back in write_timeout)") from exc
                log.warning("%s: %s; retrying in %.1f s", self.where, _first_line(exc), pause)
            except psycopg.Error as exc:  # anything else: not transient, do not loop on it
                failures += 1
                with self._lock:
                    self._n["write_errors"] += 1
                if failures >= (2 if deadline is not None else 3):
                    raise StoreError(f"{self.where}: {len(t)} samples not stored: "
                                     f"{_first_line(exc)}") from exc
                log.warning("%s: %s; retrying in %.1f s", self.where, _first_line(exc), pause)
            self._abort.wait(pause)
            pause = min(pause * 2, 5.0)
        with self._lock:
            self._n["batches_total"] += len(chunks)
            self._n["samples_written"] += len(t)
            self._generation += 1
            self._last_commit_ms = self.clock()

    def _enqueue(self, chunk: Chunk) -> None:
        deadline = time.monotonic() + self.config.write_timeout
        with self._cond:
            while self._backlog and self._backlog + len(chunk.t) > self.config.backlog_rows:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(f"{self.where}: the backlog holds {self._backlog} samples and "
                                     f"PostgreSQL took none for {self.config.write_timeout:g} s; a batch of "
                                     f"{len(chunk.t)} samples was not stored")
                self._cond.wait(left)
            self._pending.append(chunk)
            self._backlog += len(chunk.t)
            self._cond.notify_all()

    def _run(self) -> None:
        """The writer thread ("queued"): queued batches, up to batch_rows a transaction."""
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending or self._abort.is_set():
                    return
                take, rows = [], 0
                limit = self.config.batch_rows
                while self._pending and (not take or rows + len(self._pending[0].t) <= limit):
                    take.append(self._pending.pop(0))
                    rows += len(take[-1].t)
                self._inflight = take
            try:
                self._write(take, deadline=None)
            except StoreError as exc:  # not a lost connection: the group is dropped, loudly
                log.error("%s; dropped", exc)
                with self._lock:
                    self._n["dropped_samples"] += rows
                    self._problems.append(str(exc))
            except Exception:  # this thread's boundary: a bug must not stop every later write
                log.exception("%s: writing %d samples failed; dropped", self.where, rows)
                with self._lock:
                    self._n["dropped_samples"] += rows
            with self._cond:
                self._inflight = []
                self._backlog -= rows
                self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every queued batch is in PostgreSQL ("commit": they already are)."""
        deadline = time.monotonic() + self.config.write_timeout
        with self._cond:
            while self._backlog:
                left = deadline - time.monotonic()
                if left <= 0 or (self._thread is not None and not self._thread.is_alive()):
                    raise StoreError(f"{self.where}: {self._backlog} samples still queued after "
                                     f"{self.config.write_timeout:g} s (is the server reachable?)")
                self._cond.wait(min(left, 0.5))

    def compact(self) -> int:
        """Refresh the planner's statistics (PostgreSQL merges nothing: autovacuum reclaims space); 0."""
        tables = ["samples"] + ([f"rollup_{n}" for n in ("1m", "1h", "1d")]
                                if self.layout.rollups and not self.layout.timescale else [])
        self._query(lambda conn: conn.execute("ANALYZE " + ", ".join(self.layout.q(t) for t in tables)))
        return 0

    def close(self) -> None:
        """Write what is queued (up to write_timeout), stop the writer and close the connections."""
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        try:
            if self._thread is not None:
                self.flush()
        finally:
            self._abort.set()  # a writer still retrying gives up: what it held is reported lost
            if self._thread is not None:
                self._thread.join()
            with self._lock:
                if self._backlog:  # flush() raised: these never reached the server
                    self._n["dropped_samples"] += self._backlog
                    self._problems.append(f"{self._backlog} queued samples dropped at close")
            self._pool.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------
    def _query(self, fn):
        """``fn(conn)`` on a pooled connection, again on a new one if the server dropped it."""
        for attempt in (0, 1):
            try:
                with self._pool.connection() as conn:
                    return fn(conn)
            except psycopg.OperationalError as exc:
                self._pool.clear()
                if attempt:
                    raise StoreError(f"{self.where}: {_first_line(exc)}") from exc

    def _overlay(self) -> list[Chunk]:
        """Batches handled but not committed yet (queued mode), oldest first."""
        with self._lock:
            return [*self._inflight, *self._pending]

    def read(self, keys: list[Key], start_ms: int, end_ms: int) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
        """Per (probe, metric): times (int64 ms, ascending, unique) and values in [start, end]."""
        keys = list(dict.fromkeys(tuple(k) for k in keys))
        overlay = self._overlay()  # before the query: a group committed meanwhile is then in one or both
        parts = self._query(lambda conn: rd.read_raw(conn, self.layout, keys, start_ms, end_ms))
        if overlay:
            wanted = {key: j for j, key in enumerate(keys)}
            with self._lock:
                code = np.fromiter((wanted.get(s.key, -1) for s in self._series), np.int64, len(self._series))
            sid, t, v = select(overlay, code >= 0, start_ms, end_ms)
            for j, key in enumerate(keys):
                pick = code[sid] == j
                if pick.any():
                    parts[key].append((t[pick], v[pick]))
        return {k: merge_parts(p) for k, p in parts.items()}

    def buckets(self, keys: list[Key], start_ms: int, end_ms: int, step_ms: int) -> dict[Key, dict]:
        """Per key, buckets of ``step_ms`` from ``start_ms``: t, n, min, avg, max, last (committed
        samples; from the rollups when the step and range fall on their buckets)."""
        keys = list(dict.fromkeys(tuple(k) for k in keys))
        return self._query(lambda conn: rd.buckets(conn, self.layout, keys, start_ms, end_ms, step_ms))

    def series(self) -> list[SeriesInfo]:
        """Every series with its count, first/last time and latest value (committed + queued).

        ``count`` is the number of distinct samples stored (a sample sent again replaces itself),
        plus the queued samples. Other processes' writes show within ``SUMMARY_TTL`` s.
        """
        with self._lock:
            gen, cached = self._generation, self._summary
        if cached is None or cached[1] != gen or time.monotonic() - cached[0] > self.SUMMARY_TTL:
            cached = (time.monotonic(), gen, self._query(lambda conn: rd.summaries(conn, self.layout)))
            with self._lock:
                self._summary = cached
        infos = cached[2]
        overlay = self._overlay()
        if not overlay:
            return list(infos)
        sid, t, v = (np.concatenate([getattr(c, f) for c in overlay]) for f in ("sid", "t", "v"))
        ids, n, first, last, last_v = per_series(sid, t, v, np.ones(len(t), np.int64))
        out = {i.series: i for i in infos}
        for k, local in enumerate(ids.tolist()):
            s = self._series[local]
            new = SeriesInfo(s, int(n[k]), int(first[k]), int(last[k]), float(last_v[k]))
            old = out.get(s)
            out[s] = new if old is None else SeriesInfo(
                s, old.count + new.count, min(old.first_t, new.first_t), max(old.last_t, new.last_t),
                new.last_v if new.last_t >= old.last_t else old.last_v)
        return list(out.values())

    def stats(self) -> dict:
        """Counters and sizes (samples_total, series, bytes_on_disk, backlog_samples, reconnects, ...)."""
        with self._lock:
            out = dict(self._n, backlog_samples=self._backlog, last_commit_ms=self._last_commit_ms,
                       problems=list(self._problems))
        lay = self.layout
        out.update(self._writer.n, backend="postgresql", where=self.where, ack=self.config.ack,
                   timescaledb=lay.timescale, rollups=lay.rollups, partition=lay.partition,
                   partitions=len(lay.partitions))
        try:
            infos = self.series()
            size = self._query(lambda conn: rd.disk_bytes(conn, lay))
        except StoreError as exc:  # stats are for monitoring: say the server is away, do not fail
            out.update(error=str(exc), samples_total=None, series=None, bytes_on_disk=None)
            return out
        total = sum(i.count for i in infos)
        out.update(series=len(infos), samples_total=total, bytes_on_disk=size,
                   bytes_per_sample=size / total if total else None)
        return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
