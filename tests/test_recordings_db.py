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


OPENER = """
import sys, time
from wattsight.recordings.db import RecordingsDB
while time.time() < float(sys.argv[2]):  # every process opens at the same moment
    pass
RecordingsDB(sys.argv[1]).close()
"""


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path):
    """Two ``wattsight run`` whose stores share a folder open one new recordings file together.

    SQLite may refuse the journal-mode change under contention at once, without waiting
    ("database is locked": seen once in test_e2e's two processes on a loaded machine); opening
    retries it.  This test does not provoke that race on demand: it checks that concurrent
    opens of one new file all succeed."""
    import time

    for k in range(3):
        path = tmp_path / f"r{k}.sqlite"
        at = time.time() + 1.5
        children = [subprocess.Popen([sys.executable, "-c", OPENER, str(path), str(at)], stderr=subprocess.PIPE,
                                     text=True) for _ in range(6)]
        for c in children:
            assert c.wait(timeout=120) == 0, c.stderr.read()
