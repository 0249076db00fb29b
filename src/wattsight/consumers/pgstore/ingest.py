"""Writing groups of samples into PostgreSQL: binary COPY built with numpy, rollups, series summaries.

One group (one batch, or several queued ones) is one transaction::

    series ids          unknown series inserted first (own transaction: a series row without
                        samples is harmless, n = 0)
    partitions          created before, in their own short transactions (CREATE ... PARTITION OF
                        locks the parent table: never for the duration of a COPY)
    BEGIN
      SAVEPOINT; COPY samples FROM STDIN (FORMAT BINARY)      fast path: every (series, t) is new
        on a unique violation (a sample sent again): ROLLBACK TO SAVEPOINT, then the upsert path:
        COPY into a temporary table (deduplicated, last written kept), count the rows already
        stored, INSERT ... ON CONFLICT (series_id, t) DO UPDATE SET v
      rollups           fast path: aggregates of the group (numpy) merged into 1m/1h/1d by upsert;
                        upsert path: the touched buckets recomputed from the samples (1m) and
                        from the finer rollup (1h, 1d): exact whatever was replaced
      series summary    n, first/last time and last value, updated from the group
    COMMIT

Rows are encoded in PostgreSQL's binary COPY format straight from the numpy columns (a packed
record array, big-endian), so no Python object is made per sample; values keep every bit.
"""

from __future__ import annotations

import weakref

import numpy as np

from .schema import (
    EPOCH_MS,
    ORIGIN,
    ROLLUP_COLUMNS,
    ROLLUPS,
    Layout,
    ensure_partitions,
    load_partitions,
    needed_partitions,
)

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
_TRAILER = b"\xff\xff"
_WIDTH = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float8": ">f8", "timestamptz": ">i8"}
_STAGE = "wattsight_stage"  # temporary tables, one set per connection
_ROLLUP_STAGE = "wattsight_rollup_stage"


def to_pg_time(t_ms: np.ndarray) -> np.ndarray:
    """ms since 1970 -> PostgreSQL's µs since 2000 (what binary timestamptz holds)."""
    return (np.asarray(t_ms, np.int64) - EPOCH_MS) * 1000


def copy_dtype(types: list[str]) -> np.dtype:
    """The packed record of one binary COPY row: field count, then (length, value) per column."""
    fields = [("nfields", ">i2")]
    for i, typ in enumerate(types):
        fields += [(f"len{i}", ">i4"), (f"c{i}", _WIDTH[typ])]
    return np.dtype(fields)


def encode_copy(types: list[str], columns: list[np.ndarray]) -> bytes:
    """A whole binary COPY stream (header, rows, trailer) from equal-length numpy columns."""
    dtype = copy_dtype(types)
    rows = np.empty(len(columns[0]), dtype)
    rows["nfields"] = len(types)
    for i, (typ, col) in enumerate(zip(types, columns)):
        rows[f"len{i}"] = np.dtype(_WIDTH[typ]).itemsize
        rows[f"c{i}"] = to_pg_time(col) if typ == "timestamptz" else col
    return b"".join((_SIGNATURE, rows.tobytes(), _TRAILER))


SAMPLE_TYPES = ["int4", "timestamptz", "float8"]
ROLLUP_TYPES = ["int2", "int4", "timestamptz", "int8", "float8", "float8", "float8", "timestamptz", "float8"]


class Writer:
    """Writes groups for one store; keeps the store-local -> database series id map."""

    def __init__(self, layout: Layout, series: list) -> None:
        self.layout = layout
        self.series = series  # the store's local series table (append-only, shared)
        self.db_ids = np.zeros(0, np.int64)  # local id -> database id (0: not known yet)
        self._staged = weakref.WeakSet()  # connections holding the temporary tables
        self.n = {"groups": 0, "rows": 0, "fast": 0, "upserts": 0, "replaced": 0, "partitions_created": 0}

    def write(self, conn, sid_local: np.ndarray, t: np.ndarray, v: np.ndarray, ahead_ms: int,
              reload: bool = False) -> None:
        """Store one group (rows in write order) in one transaction (``reload``: partitions first)."""
        if reload:  # a try failed: an administrator may have dropped a partition (retention)
            load_partitions(conn, self.layout)
        self._resolve(conn, sid_local)
        sid = self.db_ids[sid_local].astype(np.int32)
        # grouped by series, arrival (time) order kept: the index grows at one place per series, and
        # a series' rows share heap pages, so reading one probe touches ~1/series of the pages
        order = np.argsort(sid, kind="stable")
        sid, t, v = sid[order], t[order], v[order]
        lay = self.layout
        if not lay.timescale:
            span = {"day": 86_400_000, "month": 31 * 86_400_000}[lay.partition]
            wanted = needed_partitions(lay.partition, np.concatenate([t, [ahead_ms, ahead_ms + span]]))
            self.n["partitions_created"] += ensure_partitions(conn, lay, wanted)
        self._temp_tables(conn)
        with conn.transaction():
            try:
                with conn.transaction():  # a savepoint: a unique violation only undoes the COPY
                    self._copy(conn, lay.q("samples") + " (series_id, t, v)", SAMPLE_TYPES, [sid, t, v])
                fast = True
            except _unique_violation():
                fast = False
            if fast:
                added = np.ones(len(sid), np.int64)
                if lay.rollups and not lay.timescale:
                    self._merge_rollups(conn, sid, t, v)
            else:
                sid, t, v, added = self._upsert(conn, sid, t, v)
            self._summaries(conn, sid, t, v, added)
        self.n["groups"] += 1
        self.n["rows"] += len(t)
        self.n["fast" if fast else "upserts"] += 1

    # -- steps ----------------------------------------------------------------------------
    def _resolve(self, conn, sid_local: np.ndarray) -> None:
        """Give every local series of the group its database id (inserting the new ones)."""
        if len(self.db_ids) < len(self.series):
            grow = np.zeros(len(self.series) - len(self.db_ids), np.int64)
            self.db_ids = np.concatenate([self.db_ids, grow])
        missing = np.unique(sid_local[self.db_ids[sid_local] == 0])
        if not len(missing):
            return
        q = self.layout.q("series")
        found = {}
        with conn.transaction():  # ids are kept only once committed: a rolled-back id would orphan samples
            for local in missing.tolist():
                row = self.series[local].as_tuple()
                got = conn.execute(
                    f"INSERT INTO {q} (probe, metric, unit, kind, provenance) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (probe, metric, unit, kind, provenance) DO NOTHING RETURNING id",
                    row).fetchone()
                if got is None:  # already there (written before, or by another store process)
                    got = conn.execute(f"SELECT id FROM {q} WHERE (probe, metric, unit, kind, provenance) = "
                                       "(%s, %s, %s, %s, %s)", row).fetchone()
                found[local] = got[0]
        for local, db_id in found.items():
            self.db_ids[local] = db_id

    def _temp_tables(self, conn) -> None:
        if conn in self._staged:
            return
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (series_id int4, t timestamptz, v float8) "
                     "ON COMMIT DELETE ROWS")
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_ROLLUP_STAGE} (level int2, {_rollup_columns()}) "
                     "ON COMMIT DELETE ROWS")
        self._staged.add(conn)

    @staticmethod
    def _copy(conn, target: str, types: list[str], columns: list[np.ndarray]) -> None:
        with conn.cursor().copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(encode_copy(types, columns))

    def _upsert(self, conn, sid, t, v):
        """The slow path: some (series, t) are stored already (or twice in the group)."""
        order = np.lexsort((t, sid))  # stable: equal keys keep their write order
        sid, t, v = sid[order], t[order], v[order]
        last = np.ones(len(t), bool)
        last[:-1] = (sid[1:] != sid[:-1]) | (t[1:] != t[:-1])
        sid, t, v = sid[last], t[last], v[last]  # the last written of each (series, t)
        q = self.layout.q
        self._copy(conn, _STAGE, SAMPLE_TYPES, [sid, t, v])
        existing = conn.execute(f"SELECT st.series_id, count(*) FROM {_STAGE} st JOIN {q('samples')} sa "
                                "ON sa.series_id = st.series_id AND sa.t = st.t GROUP BY 1").fetchall()
        conn.execute(f"INSERT INTO {q('samples')} (series_id, t, v) SELECT series_id, t, v FROM {_STAGE} "
                     "ON CONFLICT (series_id, t) DO UPDATE SET v = EXCLUDED.v")
        added = np.ones(len(t), np.int64)
        for series_id, count in existing:  # one row of each counts -count: n grows by the new ones only
            added[np.flatnonzero(sid == series_id)[:count]] = 0
            self.n["replaced"] += count
        if self.layout.rollups and not self.layout.timescale:
            self._recompute_rollups(conn)
        return sid, t, v, added

    def _merge_rollups(self, conn, sid, t, v) -> None:
        """Fast path: the group's buckets, aggregated in numpy, merged into the rollup tables."""
        from .rollup import aggregate, coarsen

        cells = aggregate(sid, t, v, ROLLUPS["1m"][0])
        parts = [(0, cells)]
        for level, name in enumerate(("1h", "1d"), start=1):
            cells = coarsen(cells, ROLLUPS[name][0])
            parts.append((level, cells))
        columns = [np.concatenate([np.full(len(c["sid"]), lv, np.int16) for lv, c in parts])]
        for key in ("sid", "bucket", "n", "vmin", "vmax", "vsum", "last_t", "last_v"):
            columns.append(np.concatenate([c[key] for _, c in parts]))
        self._copy(conn, _ROLLUP_STAGE, ROLLUP_TYPES, columns)
        for level, name in enumerate(ROLLUPS):
            conn.execute(f"""INSERT INTO {self.layout.q('rollup_' + name)} AS r ({ROLLUP_COLUMNS})
                SELECT {ROLLUP_COLUMNS} FROM {_ROLLUP_STAGE} WHERE level = {level}
                ON CONFLICT (series_id, bucket) DO UPDATE SET n = r.n + EXCLUDED.n,
                  vmin = LEAST(r.vmin, EXCLUDED.vmin), vmax = GREATEST(r.vmax, EXCLUDED.vmax),
                  vsum = r.vsum + EXCLUDED.vsum,
                  last_v = CASE WHEN EXCLUDED.last_t >= r.last_t THEN EXCLUDED.last_v ELSE r.last_v END,
                  last_t = GREATEST(r.last_t, EXCLUDED.last_t)""")

    def _recompute_rollups(self, conn) -> None:
        """Upsert path: buckets touched by the staged rows, recomputed (1m from samples, then up)."""
        q = self.layout.q
        for name, (_, interval, finer) in ROLLUPS.items():
            if finer is None:
                src, tcol = q("samples"), "t"
                agg = ("count(*), min(x.v), max(x.v), sum(x.v), max(x.t), "
                       "(array_agg(x.v ORDER BY x.t DESC))[1]")
            else:
                src, tcol = q("rollup_" + finer), "bucket"
                agg = ("sum(x.n), min(x.vmin), max(x.vmax), sum(x.vsum), max(x.last_t), "
                       "(array_agg(x.last_v ORDER BY x.last_t DESC))[1]")
            conn.execute(f"""INSERT INTO {q('rollup_' + name)} AS r ({ROLLUP_COLUMNS})
                SELECT c.series_id, c.bucket, {agg}
                FROM (SELECT DISTINCT series_id, date_bin(INTERVAL '{interval}', t, {ORIGIN}) AS bucket
                      FROM {_STAGE}) c
                JOIN {src} x ON x.series_id = c.series_id AND x.{tcol} >= c.bucket
                             AND x.{tcol} < c.bucket + INTERVAL '{interval}'
                GROUP BY c.series_id, c.bucket
                ON CONFLICT (series_id, bucket) DO UPDATE SET n = EXCLUDED.n, vmin = EXCLUDED.vmin,
                  vmax = EXCLUDED.vmax, vsum = EXCLUDED.vsum, last_t = EXCLUDED.last_t,
                  last_v = EXCLUDED.last_v""")

    def _summaries(self, conn, sid, t, v, added) -> None:
        """series.n/first_ms/last_ms/last_v from the group (later writes win ties on last_ms)."""
        from .rollup import per_series

        ids, n, first, last, last_v = per_series(sid, t, v, added)
        conn.execute(f"""UPDATE {self.layout.q('series')} AS se SET n = se.n + d.n,
              first_ms = LEAST(se.first_ms, d.first_ms),
              last_v = CASE WHEN se.last_ms IS NULL OR d.last_ms >= se.last_ms THEN d.last_v
                            ELSE se.last_v END,
              last_ms = GREATEST(se.last_ms, d.last_ms)
            FROM unnest(%s::int4[], %s::int8[], %s::int8[], %s::int8[], %s::float8[]) AS d(id, n, first_ms,
                 last_ms, last_v)
            WHERE se.id = d.id""", (ids.tolist(), n.tolist(), first.tolist(), last.tolist(), last_v.tolist()))


def _rollup_columns() -> str:
    return ("series_id int4, bucket timestamptz, n int8, vmin float8, vmax float8, vsum float8, "
            "last_t timestamptz, last_v float8")


def _unique_violation():
    from psycopg.errors import UniqueViolation

    return UniqueViolation
