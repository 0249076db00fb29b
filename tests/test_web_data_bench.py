"""bench/web_overview.py runs (--quick) and prints every figure it promises; no time is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "web_overview.py"


@pytest.mark.slow
def test_web_overview_bench_prints_its_figures():
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--runs", "1", "--live-seconds", "4"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    figures = {f["figure"]: f for f in map(json.loads, filter(None, out.stdout.splitlines()))}
    for part in ("summary", "series", "series_hourly_others", "graph_png", "series_all", "open"):
        assert figures[f"web_overview.{part}.p50"]["value"] > 0
    assert figures["web_overview.summary.p50"]["probes_in_answer"] == 100
    assert figures["web_overview.build"]["samples"] > 100 * 7000  # 2 h of 100 probes, a few gaps
    lag = figures["web_live.lag.p50"]
    assert lag["values"] > 0 and lag["value"] > 0  # arrival after measurement, on one clock
