"""docs/recordings.md: its tested curl block runs against a real ``wattsight run --demo``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from procs import Wattsight, free_port
from recorder_helpers import analytic, interpolation_bound, run_tested_block, wait_started

pytestmark = pytest.mark.slow
DOC = Path(__file__).parent.parent / "docs" / "recordings.md"


def test_the_curl_example_records_two_steps(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    ws = Wattsight(["--demo", "--data-dir", str(tmp_path / "data")], tmp_path, listen=listen)
    try:
        wait_started(ws)
        done = run_tested_block(DOC, ws.url)
        assert done.returncode == 0, done.stderr
        printed = ast.literal_eval(done.stdout.strip().splitlines()[-1])
        recs = ws.get("/api/v1/recordings", scenario="web-benchmark")["recordings"]
        assert len(recs) == 1 and recs[0]["metadata"] == {"commit": "4f2a9c1"} and not recs[0]["running"]
        report = ws.get(f"/api/v1/recordings/{recs[0]['id']}/report")
    finally:
        ws.stop()
    assert [s["name"] for s in report["steps"]] == ["warm-up", "load"]
    load = report["steps"][1]
    assert printed == load["energy"] and printed["coverage"] == pytest.approx(1.0)
    assert set(load["nodes"]) == {"demo.node-1", "demo.node-2"}
    # the demo pattern's exact energy of the two nodes' probes over the step (the curl times fall between
    # samples: interpolation_bound says how far off that may make it)
    exact = analytic(["demo.node-1", "demo.node-2"], load["from"], load["to"])
    assert printed["joules"] == pytest.approx(exact, abs=interpolation_bound(2))
