"""``record --api``, ``report``, the curl recipe and the pytest plugin, on a real demo server (the SDK's
examples of docs/recorder.md: tests/test_recorder_docs.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from matplotlib.image import imread
from procs import free_port
from recorder_helpers import PROBES, demo_server, settled

from wattsight.recorder import Recorder, report
from wattsight.recorder.api import Client

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]
WS = [sys.executable, "-m", "wattsight"]
DOCS = Path(__file__).resolve().parent.parent / "docs"


def ws_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*WS, *args], capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from demo_server(tmp_path_factory, "record-api")


@pytest.fixture(scope="module")
def recording(server) -> str:
    """A settled recording of three steps on two probes: its id."""
    rec = Recorder(server.url, environment={"probes": PROBES})
    rec.start("three-steps")
    for name in ("warm", "load", "cool"):
        rec.set_step(name)
        time.sleep(1.5)
    m = rec.stop()
    settled(server, m.end)
    return m.recording


def test_record_with_api_prints_the_servers_figures_per_probe(server):
    r = ws_run("record", "--api", server.url, "--probes", ",".join(PROBES), "--scenario", "cli",
               "--", "sh", "-c", "sleep 1; exit 4")
    assert r.returncode == 4, r.stderr
    assert "(wattsight server, recording " in r.stderr and "demo.node-1" in r.stderr
    assert re.search(r"total\s+modelled", r.stderr)  # the demo rack is simulated: never "measured"
    assert "measured: nothing: every figure is modelled" in r.stderr and "coverage 100.0%" in r.stderr
    stored = httpx.get(server.url + "/api/v1/recordings", params={"scenario": "cli"}, timeout=30).json()
    assert stored["count"] == 1
    assert stored["recordings"][0]["metadata"]["command"] == ["sh", "-c", "sleep 1; exit 4"]


def test_report_prints_the_steps_and_writes_a_png_with_the_steps_shaded(server, recording, tmp_path):
    png = tmp_path / "r.png"
    r = ws_run("report", recording, "--api", server.url, "--png", str(png))
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") > 5}
    assert {"warm", "load", "cool", "total"} <= set(rows) and "demo.node-2" in r.stdout
    image = imread(png)
    assert image.shape[:2] == (450, 1000)


def test_the_plot_shades_each_step_in_its_colour(server, recording, tmp_path):
    client = Client(server.url)
    data = report.fetch(client, recording, None)
    curves, notes = report.series(client, list(data["total"]["probes"]), data["start"], data["end"])
    assert set(curves) == set(PROBES) and notes == [] and all(len(c) >= 3 for c in curves.values())
    fig = report.plot(data, curves)
    ax = fig.axes[0]
    assert [p.get_gid() for p in ax.patches] == ["warm", "load", "cool"]
    report.write_png(fig, str(tmp_path / "p.png"))
    image = imread(tmp_path / "p.png")
    height = image.shape[0]
    y_low = ax.get_ylim()[0] + 0.02 * (ax.get_ylim()[1] - ax.get_ylim()[0])  # below every curve
    t0 = data["start"]
    from matplotlib.colors import to_rgb

    for i, s in enumerate(data["steps"]):
        x, y = ax.transData.transform(((s["start"] + s["end"]) / 2 - t0, y_low))
        pixel = image[int(height - y), int(x), :3]
        shade = [report.SHADE_ALPHA * c + (1 - report.SHADE_ALPHA) for c in to_rgb(report.SHADES[i])]
        assert pixel == pytest.approx(shade, abs=0.02), (s["name"], pixel, shade)


def test_report_of_a_job_per_node(server):
    now = time.time()
    job = {"id": "j-report", "nodes": ["node-1", "node-2"], "start": now - 10, "end": now - 2,
           "name": "train"}
    r = httpx.post(server.url + "/api/v1/jobs", json=job, timeout=30)
    assert r.status_code in (200, 201), r.text
    out = ws_run("report", "--job", "j-report", "--api", server.url, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc["energy"]["nodes"]) == {"demo.node-1", "demo.node-2"} and doc["job"]["name"] == "train"
    table = ws_run("report", "--job", "j-report", "--api", server.url)
    assert "job j-report (train)" in table.stdout and "sum of its probes" in table.stdout


def test_report_says_what_to_do_when_the_server_is_not_there():
    r = ws_run("report", "abc", "--api", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "check --api" in r.stderr


def test_the_curl_recipe_of_the_docs_records_two_steps(server, tmp_path):
    recipe = re.search(r"```bash\n(.*?)```", (DOCS / "record.md").read_text(), re.DOTALL).group(1)
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], capture_output=True, text=True,
                       check=False, timeout=120, env={"PATH": "/usr/bin:/bin", "WATTSIGHT_URL": server.url})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [s["name"] for s in doc["steps"]] == ["prepare", "run"]
    assert doc["recording"]["scenario"] == "shell-recipe"
    assert doc["steps"][1]["duration_s"] > doc["steps"][0]["duration_s"]  # sleep 2 against sleep 1


def test_the_pytest_plugin_sends_each_test_as_a_step(server, pytester):
    pytester.makepyfile("import time\n\ndef test_a():\n    time.sleep(0.3)\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "wattsight.recorder.pytest_plugin", "--wattsight-api",
                                           server.url, "--wattsight-scenario", "plugin-run",
                                           "--wattsight-energy=e.json")
    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "e.json").read_text())
    assert doc["source"] == "api" and doc["recording"]
    stored = httpx.get(f"{server.url}/api/v1/recordings/{doc['recording']}", timeout=30).json()
    names = [s["name"].split("::")[1] for s in stored["steps"]]
    assert names == ["test_a", "test_b"] and stored["scenario"] == "plugin-run"
    assert [t["nodeid"].split("::")[1] for t in doc["tests"]] == ["test_a", "test_b"]
    assert f"recording {doc['recording']}" in result.stdout.str()
