"""Recordings, their steps and jobs, kept in one SQLite file (WAL mode).

One connection per :class:`RecordingsDB`, shared by FastAPI's worker threads under a lock;
every write that reads first (a step closes the open one) runs in one ``BEGIN IMMEDIATE``
transaction, so two API processes on the same file stay consistent too.  Times are int ms
since the epoch in the caller's clock; :mod:`.rules` decides what a write may do, this
module only stores.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..sample import now_ms
from . import rules
from .errors import NotFound

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY, scenario TEXT NOT NULL, environment TEXT NOT NULL, start_ms INTEGER NOT NULL,
    end_ms INTEGER, clock_offset_ms INTEGER, metadata TEXT NOT NULL, warnings TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS recordings_scenario ON recordings (scenario, start_ms);
CREATE TABLE IF NOT EXISTS steps (
    recording_id TEXT NOT NULL REFERENCES recordings (id), seq INTEGER NOT NULL, name TEXT NOT NULL,
    start_ms INTEGER NOT NULL, end_ms INTEGER, end_explicit INTEGER NOT NULL DEFAULT 0,
    clock_offset_ms INTEGER, PRIMARY KEY (recording_id, name));
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, name TEXT, user TEXT, nodes TEXT NOT NULL, start_ms INTEGER NOT NULL,
    end_ms INTEGER, state TEXT, source TEXT, metadata TEXT NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_start ON jobs (start_ms);
"""


class RecordingsDB:
    """The recordings and jobs database at ``path`` (created with its folder on first use)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], int] = now_ms) -> None:
        self.path, self.clock = Path(path), clock
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                         timeout=10.0)
            self._conn.row_factory = sqlite3.Row
            deadline = time.monotonic() + 15.0
            while True:  # another process opening the same file at once may hold the lock briefly
                try:
                    self._setup()
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the recordings database {str(self.path)!r}: {exc}; check the "
                             "folder is writable or set [recorder] database") from None

    def _setup(self) -> None:
        """WAL mode and the schema; SQLite does not wait for the lock a journal-mode change needs."""
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: recordings database of schema {version}, newer than this "
                             f"wattsight knows ({SCHEMA_VERSION}); upgrade wattsight")
        self._conn.executescript(SCHEMA)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), rolled back if anything raises."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"recordings database {self.path}: {exc}") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- recordings -------------------------------------------------------------------------
    def create_recording(self, scenario: str, environment: dict, start_ms: int, offset_ms: int | None,
                         metadata: dict, warnings: list[str]) -> tuple[dict, bool]:
        """A new running recording: (it, True); or (the stored one, False) for an identical retry: same
        scenario, start (ms), environment and metadata (a client whose answer was lost sends it again)."""
        env, meta = json.dumps(environment), json.dumps(metadata)
        with self._tx() as c:
            same = c.execute("SELECT id FROM recordings WHERE scenario = ? AND start_ms = ? AND environment = ? "
                             "AND metadata = ?", (scenario, int(start_ms), env, meta)).fetchone()
            if same is None:
                rid = secrets.token_hex(6)
                c.execute("INSERT INTO recordings VALUES (?,?,?,?,?,?,?,?,?)",
                          (rid, scenario, env, int(start_ms), None, offset_ms, meta, json.dumps(warnings),
                           self.clock()))
        return (self.recording(rid), True) if same is None else (self.recording(same[0]), False)

    def recording(self, rid: str) -> dict:
        """A recording with its steps; NotFound if there is none."""
        row = self._all("SELECT * FROM recordings WHERE id = ?", (rid,))
        if not row:
            raise NotFound(f"no recording {rid!r}; GET /api/v1/recordings lists them")
        steps = self._all("SELECT * FROM steps WHERE recording_id = ? ORDER BY seq", (rid,))
        return _recording(row[0], [_step(s) for s in steps])

    def recordings(self, scenario: str | None = None, limit: int = 100) -> list[dict]:
        """The latest recordings first (of one scenario when given), without their steps."""
        where, args = ("WHERE scenario = ?", (scenario,)) if scenario else ("", ())
        rows = self._all(f"SELECT * FROM recordings {where} ORDER BY start_ms DESC, created_ms DESC LIMIT ?",
                         (*args, int(limit)))
        return [_recording(r, None) for r in rows]

    def add_step(self, rid: str, name: str, t_ms: int, offset_ms: int | None,
                 warnings: list[str] = ()) -> tuple[dict, bool]:
        """Start step ``name`` at ``t_ms`` (closing the open one there): (the step, whether it is new)."""
        with self._tx() as c:
            rec = self._row(c, rid)
            steps = [_step(s) for s in c.execute(
                "SELECT * FROM steps WHERE recording_id = ? ORDER BY seq", (rid,))]
            existing = rules.check_new_step(_recording(rec, steps), name, t_ms)
            if existing is not None:
                return existing, False
            c.execute("UPDATE steps SET end_ms = ? WHERE recording_id = ? AND end_ms IS NULL", (t_ms, rid))
            c.execute("INSERT INTO steps VALUES (?,?,?,?,?,?,?)",
                      (rid, len(steps), name, int(t_ms), None, 0, offset_ms))
            self._warn(c, rec, warnings)
            row = c.execute("SELECT * FROM steps WHERE recording_id = ? AND name = ?", (rid, name)).fetchone()
        return _step(row), True

    def end_step(self, rid: str, name: str, t_ms: int, warnings: list[str] = ()) -> tuple[dict, bool]:
        """End step ``name`` at ``t_ms``: (the step, whether it changed)."""
        with self._tx() as c:
            rec = self._row(c, rid)
            row = c.execute("SELECT * FROM steps WHERE recording_id = ? AND name = ?", (rid, name)).fetchone()
            if row is None:
                names = [r[0] for r in c.execute("SELECT name FROM steps WHERE recording_id = ? ORDER BY seq",
                                                 (rid,))]
                raise NotFound(f"recording {rid!r} has no step {name!r} (it has: "
                               f"{', '.join(map(repr, names)) or 'no step yet'})")
            step = _step(row)
            if not rules.check_step_end(step, t_ms):
                return step, False
            c.execute("UPDATE steps SET end_ms = ?, end_explicit = 1 WHERE recording_id = ? AND name = ?",
                      (int(t_ms), rid, name))
            self._warn(c, rec, warnings)
            row = c.execute("SELECT * FROM steps WHERE recording_id = ? AND name = ?", (rid, name)).fetchone()
        return _step(row), True

    def stop(self, rid: str, t_ms: int, warnings: list[str] = ()) -> tuple[dict, bool]:
        """Stop the recording at ``t_ms``, closing its open step: (the recording, whether it changed)."""
        with self._tx() as c:
            rec = self._row(c, rid)
            steps = [_step(s) for s in c.execute(
                "SELECT * FROM steps WHERE recording_id = ? ORDER BY seq", (rid,))]
            if not rules.check_stop(_recording(rec, steps), t_ms):
                return _recording(rec, steps), False
            c.execute("UPDATE steps SET end_ms = ? WHERE recording_id = ? AND end_ms IS NULL", (t_ms, rid))
            c.execute("UPDATE recordings SET end_ms = ? WHERE id = ?", (int(t_ms), rid))
            self._warn(c, rec, warnings)
        return self.recording(rid), True

    @staticmethod
    def _row(c: sqlite3.Connection, rid: str) -> sqlite3.Row:
        row = c.execute("SELECT * FROM recordings WHERE id = ?", (rid,)).fetchone()
        if row is None:
            raise NotFound(f"no recording {rid!r}; GET /api/v1/recordings lists them")
        return row

    @staticmethod
    def _warn(c: sqlite3.Connection, rec: sqlite3.Row, warnings: list[str]) -> None:
        if warnings:
            kept = json.loads(rec["warnings"]) + list(warnings)
            c.execute("UPDATE recordings SET warnings = ? WHERE id = ?", (json.dumps(kept[-50:]), rec["id"]))

    # -- jobs -------------------------------------------------------------------------------
    def put_job(self, job: dict) -> tuple[dict, bool]:
        """Register or update a job (by id): (the job, whether it is new)."""
        with self._tx() as c:
            new = c.execute("SELECT 1 FROM jobs WHERE id = ?", (job["id"],)).fetchone() is None
            c.execute("INSERT OR REPLACE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (job["id"], job.get("name"), job.get("user"), json.dumps(list(job["nodes"])),
                       int(job["start_ms"]), job.get("end_ms"), job.get("state"), job.get("source"),
                       json.dumps(job.get("metadata") or {}), self.clock()))
        return self.job(job["id"]), new

    def job(self, jid: str) -> dict:
        """A job; NotFound if there is none."""
        row = self._all("SELECT * FROM jobs WHERE id = ?", (jid,))
        if not row:
            raise NotFound(f"no job {jid!r}; register it with POST /api/v1/jobs "
                           "(or `wattsight jobs import`), GET /api/v1/jobs lists them")
        return _job(row[0])

    def jobs(self, user: str | None = None, limit: int = 100) -> list[dict]:
        """The latest jobs first (of one user when given)."""
        where, args = ("WHERE user = ?", (user,)) if user else ("", ())
        rows = self._all(f"SELECT * FROM jobs {where} ORDER BY start_ms DESC LIMIT ?", (*args, int(limit)))
        return [_job(r) for r in rows]


def _recording(row: sqlite3.Row, steps: list[dict] | None) -> dict[str, Any]:
    out = {"id": row["id"], "scenario": row["scenario"], "environment": json.loads(row["environment"]),
           "start_ms": row["start_ms"], "end_ms": row["end_ms"], "clock_offset_ms": row["clock_offset_ms"],
           "metadata": json.loads(row["metadata"]), "warnings": json.loads(row["warnings"]),
           "created_ms": row["created_ms"]}
    if steps is not None:
        out["steps"] = steps
    return out


def _step(row: sqlite3.Row) -> dict[str, Any]:
    return {"name": row["name"], "seq": row["seq"], "start_ms": row["start_ms"], "end_ms": row["end_ms"],
            "end_explicit": bool(row["end_explicit"]), "clock_offset_ms": row["clock_offset_ms"]}


def _job(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "user": row["user"], "nodes": json.loads(row["nodes"]),
            "start_ms": row["start_ms"], "end_ms": row["end_ms"], "state": row["state"],
            "source": row["source"], "metadata": json.loads(row["metadata"]), "updated_ms": row["updated_ms"]}
