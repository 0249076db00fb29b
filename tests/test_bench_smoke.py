"""The benchmarks run, and the end-to-end path beats the Kwapi-style baseline by 10x in the same run.

A ratio of two rates measured side by side, never a time: the machine is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_e2e_beats_the_kwapi_style_baseline_tenfold_with_nothing_lost():
    out = subprocess.run([sys.executable, str(BENCH / "e2e.py"), "--quick", "--only", "e2e,kwapi"],
                         capture_output=True, text=True, timeout=300, cwd=BENCH, check=False)
    assert out.returncode == 0, out.stderr
    figures = {f["figure"]: f for f in map(json.loads, filter(None, out.stdout.splitlines()))}
    e2e = figures["e2e_rate"]
    assert e2e["lost_batches"] == 0 and e2e["refused"] == {}
    assert figures["e2e_vs_kwapi"]["value"] >= 10, figures


def test_store_tier_bench_runs_and_reports_memory_time_and_bytes(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "store_tier.py"), "--probes", "30", "--hours", "3",
                          "--flush-interval", "0.2", "--store", str(tmp_path / "store")],
                         capture_output=True, text=True, timeout=300, cwd=BENCH, check=False)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines() if x]
    got = {(f["figure"], f.get("note", "")[:6]): f for f in lines}
    assert got[("tier_peak_rss", "ru_max")]["value"] >= got[("tier_peak_rss", "ru_max")]["open_rss"] > 0
    before, after = got[("bytes_per_sample", "before")], got[("bytes_per_sample", "after ")]
    assert 0 < after["value"] < 4 and after["segments"] <= before["segments"]
    assert got[("ingest_rate", "handle")]["value"] > 0


def test_store_scale_at_an_offered_rate_reads_back_every_clock_sample(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "store_scale.py"), "--only-runs", "--runs", "20x0.02",
                          "--rate", "200000"], capture_output=True, text=True, timeout=300, cwd=BENCH, check=False)
    assert out.returncode == 0, out.stderr
    got = {f["figure"]: f for f in map(json.loads, filter(None, out.stdout.splitlines()))}
    ingest, fresh = got["ingest_rate"], got["freshness_p99"]
    assert ingest["stored"] == ingest["sent"] and ingest["lost_batches"] == 0 and ingest["run"] == "20x0.02d@0.2M/s"
    assert fresh["samples"] == fresh["sent"] >= 3  # 138 k samples in pieces of at most 50,000
    assert 0 < fresh["p50"] <= fresh["value"] <= fresh["max"]
    assert got["machine"]["malloc"] == "keep freed memory"
