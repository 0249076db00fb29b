"""The SQLite file shared by two processes: writes from both interleave and none is lost."""

from __future__ import annotations

import subprocess
import sys

from wattsight.recordings.db import RecordingsDB

WRITER = """
import sys
from wattsight.recordings.db import RecordingsDB
db = RecordingsDB(sys.argv[1])
for i in range(int(sys.argv[3])):
    db.add_step(sys.argv[2], f"child-{i}", 1_700_000_100_000, None)
    db.put_job({"id": f"child-{i}", "nodes": ["n1"], "start_ms": 1_700_000_000_000})
"""


def test_two_processes_write_to_one_file(tmp_path):
    path = tmp_path / "recordings.sqlite"
    db = RecordingsDB(path)
    rid = db.create_recording("shared", {}, 1_700_000_000_000, None, {}, [])[0]["id"]
    n = 150
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), rid, str(n)], stderr=subprocess.PIPE,
                             text=True)
    for i in range(n):
        db.add_step(rid, f"parent-{i}", 1_700_000_100_000, None)
        db.put_job({"id": f"parent-{i}", "nodes": ["n1"], "start_ms": 1_700_000_000_000})
    assert child.wait(timeout=120) == 0, child.stderr.read()
    steps = db.recording(rid)["steps"]
    assert len(steps) == 2 * n and len({s["seq"] for s in steps}) == 2 * n
    assert sum(s["end_ms"] is None for s in steps) == 1  # each step closed the one before, across processes
    assert len(db.jobs(limit=1000)) == 2 * n
    db.close()
    reopened = RecordingsDB(path)
    assert len(reopened.recording(rid)["steps"]) == 2 * n
    reopened.close()
