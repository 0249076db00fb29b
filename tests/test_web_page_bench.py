"""bench/web_page.py runs (--quick) in Chromium and prints every figure it promises; no time is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "web_page.py"


@pytest.mark.slow
def test_web_page_bench_opens_the_overview_and_prints_its_figures(tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--runs", "1", "--store", str(tmp_path / "store")],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    figures = {f["figure"]: f for f in map(json.loads, filter(None, out.stdout.splitlines()))}
    assert figures["web_page.build"]["samples"] > 100 * 7000  # 2 h and 37 min of 100 probes
    for part in ("drawn", "legend", "data_asked", "probes_end", "summary_end", "series_end",
                 "server.probes", "server.summary", "server.series"):
        assert figures[f"web_page.{part}.p50"]["value"] > 0, part
    for part in ("buckets_one_call", "buckets_rolled", "json_fastapi_encoder", "json_fast"):
        assert figures[f"web_page.inproc.{part}.p50"]["points"] > 0, part
    drawn = figures["web_page.drawn.p50"]
    assert drawn["probes_drawn"] == 100 and drawn["series_requests"] >= 1
    assert drawn["layers"] >= 2  # the top probes and "others", stacked
    # ordered as the page works: the data is asked for after the probes come, the legend after the graph
    assert figures["web_page.data_asked.p50"]["value"] >= figures["web_page.probes_end.p50"]["value"]
    assert figures["web_page.legend.p50"]["value"] >= drawn["value"]
