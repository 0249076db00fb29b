"""The PostgreSQL store's tables, partitions, rollups and views, all inside the store's own schema.

::

    <schema>.meta          key -> value: format, partition, timescaledb, rollups (fixed at creation)
    <schema>.series        id, probe, metric, unit, kind, provenance (unique), and a summary kept in
                           the same transaction as the samples: n, first_ms, last_ms, last_v
    <schema>.samples       series_id int4, t timestamptz, v float8; PRIMARY KEY (series_id, t) --
                           Kwollect's (device, timestamp) index, unique so a sample sent again
                           replaces the stored one; RANGE-partitioned on t (samples_d20260101 or
                           samples_m202601), or a TimescaleDB hypertable
    <schema>.rollup_1m/1h/1d  series_id, bucket, n, vmin, vmax, vsum, last_t, last_v (avg = vsum/n):
                           tables kept by the writer, or TimescaleDB continuous aggregates
    <schema>.metrics, power, energy, power_1m/1h/1d, metrics_1m/1h/1d, series_summary: views for
                           Grafana's PostgreSQL data source (docs/consumers/postgresql.md)

Identifiers are put into SQL text directly: the schema name was checked against
``[a-z_][a-z0-9_]*`` by the configuration, and every other name here is a constant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ...errors import StoreError

log = logging.getLogger("wattsight.pgstore")

FORMAT = "1"
EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch
MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # years 1 to 9999: what the store accepts
DAY_MS = 86_400_000
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"  # aligned to minutes, hours and UTC days

#: rollup table suffix -> (bucket in ms, PostgreSQL interval, the finer table it is computed from)
ROLLUPS = {"1m": (60_000, "1 minute", None), "1h": (3_600_000, "1 hour", "1m"), "1d": (DAY_MS, "1 day", "1h")}
ROLLUP_COLUMNS = "series_id, bucket, n, vmin, vmax, vsum, last_t, last_v"


@dataclass
class Layout:
    """What one store's schema holds: fixed when it was created, read back at every start."""

    schema: str
    partition: str  # "day" | "month"
    timescale: bool
    rollups: bool
    partitions: set[str] = field(default_factory=set)  # native partitions known to exist

    def q(self, name: str) -> str:
        """``"<schema>".name``."""
        return f'"{self.schema}".{name}'


def open_layout(conn, schema: str, partition: str, rollups: bool, timescale: str,
                compress_days: int = 7) -> Layout:
    """The schema's layout, creating its objects first if it has none (once, under an advisory lock).

    An existing schema is only read (a user allowed to SELECT can open it, e.g. for the API alone).
    """
    meta = _meta(conn, schema)
    if meta is None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"wattsight:{schema}",))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".meta '
                         "(key text PRIMARY KEY, value text NOT NULL)")
            meta = _meta(conn, schema)
            if not meta:  # nobody made it meanwhile
                available = conn.execute("SELECT count(*) FROM pg_available_extensions "
                                         "WHERE name = 'timescaledb'").fetchone()[0] > 0
                meta = {"format": FORMAT, "partition": partition, "rollups": "yes" if rollups else "no",
                        "timescaledb": "yes" if available and timescale == "auto" else "no"}
                _create(conn, _layout(schema, meta), compress_days)
                _views(conn, _layout(schema, meta))
                conn.cursor().executemany(f'INSERT INTO "{schema}".meta VALUES (%s, %s)', list(meta.items()))
    if meta.get("format") != FORMAT:
        raise StoreError(f"schema {schema!r}: format {meta.get('format')!r} is not this wattsight's "
                         f"({FORMAT!r}); use another schema or the matching version")
    layout = _layout(schema, meta)
    if (layout.partition, layout.rollups) != (partition, rollups):
        log.warning("schema %s was created with partition=%s rollups=%s; those stay (the configuration "
                    "asks for %s and %s)", schema, layout.partition, layout.rollups, partition, rollups)
    load_partitions(conn, layout)
    return layout


def load_partitions(conn, lay: Layout) -> None:
    """Read which partitions exist (at start, and after a write failed: one may have been dropped)."""
    if not lay.timescale:
        lay.partitions = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass", (lay.q("samples"),)).fetchall()}


def _meta(conn, schema: str) -> dict | None:
    """The schema's meta table as a dict, or None if there is no such table."""
    if conn.execute("SELECT to_regclass(%s)", (f'"{schema}".meta',)).fetchone()[0] is None:
        return None
    return dict(conn.execute(f'SELECT key, value FROM "{schema}".meta').fetchall())


def _layout(schema: str, meta: dict) -> Layout:
    return Layout(schema, meta["partition"], meta["timescaledb"] == "yes", meta["rollups"] == "yes")


def _create(conn, lay: Layout, compress_days: int) -> None:
    q = lay.q
    conn.execute(f"""CREATE TABLE {q('series')} (
        id serial PRIMARY KEY, probe text NOT NULL, metric text NOT NULL, unit text NOT NULL,
        kind text NOT NULL, provenance text NOT NULL,
        n bigint NOT NULL DEFAULT 0, first_ms bigint, last_ms bigint, last_v float8,
        UNIQUE (probe, metric, unit, kind, provenance))""")
    # no foreign key to series: COPY would look each row's series up; the writer creates series first
    by = "" if lay.timescale else " PARTITION BY RANGE (t)"
    conn.execute(f"""CREATE TABLE {q('samples')} (series_id int4 NOT NULL, t timestamptz NOT NULL,
        v float8 NOT NULL, PRIMARY KEY (series_id, t)){by}""")
    if lay.timescale:
        _timescale(conn, lay, compress_days)
    elif lay.rollups:
        for name in ROLLUPS:
            conn.execute(f"""CREATE TABLE {q('rollup_' + name)} (series_id int4 NOT NULL,
                bucket timestamptz NOT NULL, n bigint NOT NULL, vmin float8, vmax float8, vsum float8,
                last_t timestamptz NOT NULL, last_v float8, PRIMARY KEY (series_id, bucket))""")


def _timescale(conn, lay: Layout, compress_days: int) -> None:
    """Hypertable, compression and continuous aggregates.  NOT tested here: no TimescaleDB on the
    machine the tests run on (the native path is what CI exercises)."""
    q, chunk = lay.q, "1 day" if lay.partition == "day" else "30 days"
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute("SELECT create_hypertable(%s, 't', chunk_time_interval => %s::interval, "
                 "if_not_exists => true)", (q("samples"), chunk))
    conn.execute(f"ALTER TABLE {q('samples')} SET (timescaledb.compress, "
                 "timescaledb.compress_segmentby = 'series_id', timescaledb.compress_orderby = 't')")
    conn.execute("SELECT add_compression_policy(%s, make_interval(days => %s))",
                 (q("samples"), compress_days))
    if not lay.rollups:
        return
    for name, (_, interval, _finer) in ROLLUPS.items():
        conn.execute(f"""CREATE MATERIALIZED VIEW {q('rollup_' + name)}
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT series_id, time_bucket(INTERVAL '{interval}', t) AS bucket, count(*) AS n, min(v) AS vmin,
                   max(v) AS vmax, sum(v) AS vsum, max(t) AS last_t, last(v, t) AS last_v
            FROM {q('samples')} GROUP BY series_id, time_bucket(INTERVAL '{interval}', t) WITH NO DATA""")
        conn.execute("SELECT add_continuous_aggregate_policy(%s, start_offset => NULL, "
                     "end_offset => %s::interval, schedule_interval => %s::interval)",
                     (q("rollup_" + name), interval, interval))


def _views(conn, lay: Layout) -> None:
    """The views Grafana reads (time, probe, value...); docs/consumers/postgresql.md shows queries."""
    q = lay.q
    named = f"FROM {q('samples')} s JOIN {q('series')} se ON se.id = s.series_id"
    conn.execute(f"""CREATE OR REPLACE VIEW {q('metrics')} AS SELECT s.t AS time, se.probe, se.metric,
        se.unit, se.kind, s.v AS value {named}""")
    for metric in ("power", "energy"):
        conn.execute(f"""CREATE OR REPLACE VIEW {q(metric)} AS SELECT s.t AS time, se.probe, s.v AS value
            {named} WHERE se.metric = '{metric}'""")
    conn.execute(f"""CREATE OR REPLACE VIEW {q('series_summary')} AS SELECT probe, metric, unit, kind,
        provenance, n AS samples, to_timestamp(first_ms / 1000.0) AS first, to_timestamp(last_ms / 1000.0)
        AS last, last_v AS last_value FROM {q('series')} WHERE n > 0""")
    if not lay.rollups:
        return
    for name in ROLLUPS:
        cols = ("r.bucket AS time, se.probe, {extra}r.vmin AS min, r.vsum / r.n AS avg, r.vmax AS max, "
                "r.last_v AS last, r.n AS samples")
        src = f"FROM {q('rollup_' + name)} r JOIN {q('series')} se ON se.id = r.series_id"
        conn.execute(f"CREATE OR REPLACE VIEW {q('metrics_' + name)} AS SELECT "
                     f"{cols.format(extra='se.metric, se.unit, ')} {src}")
        conn.execute(f"CREATE OR REPLACE VIEW {q('power_' + name)} AS SELECT {cols.format(extra='')} {src} "
                     "WHERE se.metric = 'power'")


# -- partitions ---------------------------------------------------------------------------------


def partition_of(kind: str, t_ms: np.ndarray) -> np.ndarray:
    """The partition number of each time: UTC days or months since 1970 (int64)."""
    t_ms = np.asarray(t_ms, np.int64)
    if kind == "day":
        return t_ms // DAY_MS
    return t_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def partition_bounds(kind: str, number: int) -> tuple[str, str, str]:
    """(table name, first time, end time) of partition ``number``, times as SQL literals (UTC)."""
    unit = "D" if kind == "day" else "M"
    lo, hi = np.datetime64(int(number), unit), np.datetime64(int(number) + 1, unit)
    first, end = str(lo.astype("datetime64[D]")), str(hi.astype("datetime64[D]"))  # YYYY-MM-DD
    name = "samples_d" + first.replace("-", "") if kind == "day" else "samples_m" + str(lo).replace("-", "")
    return name, f"{first} 00:00:00+00", f"{end} 00:00:00+00"


def needed_partitions(kind: str, t_ms: np.ndarray) -> set[int]:
    """The partition numbers ``t_ms`` falls in (from the range when it spans a few, else every row)."""
    lo, hi = partition_of(kind, np.array([t_ms.min(), t_ms.max()]))
    if hi - lo < 8:
        return set(range(int(lo), int(hi) + 1))
    return set(np.unique(partition_of(kind, t_ms)).tolist())


def ensure_partitions(conn, lay: Layout, numbers: set[int]) -> int:
    """Create the missing partitions among ``numbers`` (each in its own short transaction); how many."""
    made = 0
    for number in sorted(numbers):
        name, lo, hi = partition_bounds(lay.partition, number)
        if name in lay.partitions:
            continue
        with conn.transaction():  # the lock serialises stores of several processes on one schema
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"wattsight:{lay.schema}",))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {lay.q(name)} PARTITION OF {lay.q('samples')} "
                         f"FOR VALUES FROM ('{lo}') TO ('{hi}')")
        lay.partitions.add(name)
        made += 1
    return made
