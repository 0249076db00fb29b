"""``wattsight jobs``: import from a ``sacct`` and an ``oarstat`` on PATH into a real ``wattsight run``.

No Slurm or OAR can run here, so two small scripts stand in for ``sacct`` and ``oarstat``:
they print a reply in the real format and record the arguments they were given.  The CLI
runs them through its real runner (a subprocess), exactly as on a login node.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from procs import Wattsight, free_port
from recorder_helpers import analytic, run_tested_block, wait_started

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data" / "jobs"
DOC = Path(__file__).parent.parent / "docs" / "jobs.md"
FAKE = """#!/bin/sh
printf '%s\\n' "$@" > "{args}"
cat "{reply}"
"""


def fake_command(bin_dir: Path, name: str, reply: str) -> Path:
    """A ``name`` script on ``bin_dir`` printing ``reply``; returns the file its arguments go to."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / f"{name}.reply").write_text(reply)
    script = bin_dir / name
    script.write_text(FAKE.format(args=bin_dir / f"{name}.args", reply=bin_dir / f"{name}.reply"))
    script.chmod(0o755)
    return bin_dir / f"{name}.args"


def wattsight(*args: str, bin_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    env.pop("WATTSIGHT_URL", None)
    env.pop("WATTSIGHT_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "wattsight", *args], capture_output=True, text=True, env=env,
                          check=False, timeout=120)


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_jobs_from_sacct_and_oarstat_get_their_energy_per_node(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    ws = Wattsight(["--demo", "--data-dir", str(tmp_path / "data")], tmp_path, listen=listen)
    bin_dir = tmp_path / "bin"
    try:
        wait_started(ws)
        start = int(time.time()) + 1
        end = start + 5
        sacct_args = fake_command(bin_dir, "sacct", (
            f"9001|bench|alice|node-[1-3]|{utc(start)}|{utc(end)}|COMPLETED\n"
            f"9002|sweep|bob|gpu-[1-2]|{utc(start)}|Unknown|RUNNING\n"
            "9003|queued|dave|None assigned|Unknown|Unknown|PENDING\n"))
        ws.wait_for(lambda: all(p["last"] and p["last"]["energy"]["measured_at"] >= end + 1
                                for p in ws.get("/api/v1/probes")["probes"]), 60, "samples past the job")
        api = ["--api", ws.url]
        done = wattsight("jobs", "import", "--slurm", "--since", "1h", "--tz", "UTC", *api, bin_dir=bin_dir)
        assert done.returncode == 0, done.stderr
        assert "2 job(s) read from sacct: 2 registered, 0 updated" in done.stdout
        called = sacct_args.read_text().split()
        assert called[:4] == ["--parsable2", "--noheader", "-X",
                              "--format=JobID,JobName,User,NodeList,Start,End,State"]
        assert called[4] == "-S" and called[6] == "-E" and called[5] < utc(start) <= called[7]
        again = wattsight("jobs", "import", "--slurm", "--tz", "UTC", *api, bin_dir=bin_dir)
        assert "0 registered, 2 updated" in again.stdout

        got = ws.get("/api/v1/jobs/9001/energy")
        want = ws.get("/api/v1/energy", nodes="demo.node-1,demo.node-2,demo.node-3",
                      **{"from": start, "to": end})
        assert set(got["nodes"]) == set(want["nodes"]) == {"demo.node-1", "demo.node-2", "demo.node-3"}
        for node, e in want["nodes"].items():
            assert got["nodes"][node]["joules"] == pytest.approx(e["joules"], rel=1e-9)
            assert got["nodes"][node]["coverage"] == pytest.approx(1.0)
        assert got["energy"]["joules"] == pytest.approx(sum(e["joules"] for e in want["nodes"].values()))
        # and, independently of the store's maths, the demo pattern's exact energy over the job's window
        # (1 %: a 5-s window whose two ends are interpolated between 1-Hz samples; see test_recorder_api)
        exact = analytic(["demo.node-1", "demo.node-2", "demo.node-3"], start, end)
        assert got["energy"]["joules"] == pytest.approx(exact, rel=0.01)

        shown = wattsight("jobs", "energy", "9001", "--probes", *api, bin_dir=bin_dir)
        assert shown.returncode == 0, shown.stderr
        assert "demo.node-2" in shown.stdout and "total" in shown.stdout and "per probe" in shown.stdout
        assert f"{got['energy']['joules']:.1f}" in shown.stdout
        unmatched = wattsight("jobs", "energy", "9002", *api, bin_dir=bin_dir)
        assert "no probe feeds node(s) 'gpu-1', 'gpu-2'" in " ".join(unmatched.stdout.split())
        listed = wattsight("jobs", "list", *api, bin_dir=bin_dir)
        assert "9001" in listed.stdout and "9002" in listed.stdout and "9003" not in listed.stdout
        assert "alice" in wattsight("jobs", "show", "9001", *api, bin_dir=bin_dir).stdout

        doc = run_tested_block(DOC, ws.url)
        assert doc.returncode == 0, doc.stderr
        joules, nodes = doc.stdout.strip().split(" ", 1)
        assert nodes == "['demo.node-1', 'demo.node-2']"
        assert float(joules) == pytest.approx(ws.get("/api/v1/jobs/demo-1/energy")["energy"]["joules"])

        oar_args = fake_command(bin_dir, "oarstat", (DATA / "oarstat.json").read_text())
        oar = wattsight("jobs", "import", "--oar", "--since=-2h", *api, bin_dir=bin_dir)
        assert oar.returncode == 0, oar.stderr
        assert "2 job(s) read from OAR: 2 registered" in oar.stdout
        assert oar_args.read_text().split()[:2] == ["-J", "--gantt"]
        assert httpx.get(f"{ws.url}/api/v1/jobs/1881590").json()["nodes"] == [
            "grisou-3.nancy.grid5000.fr", "grisou-4.nancy.grid5000.fr"]
    finally:
        ws.stop()


def test_import_errors_say_what_to_do(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    port = free_port()  # nothing listens there
    sacct = fake_command(bin_dir, "sacct", (DATA / "sacct.txt").read_text())
    down = wattsight("jobs", "import", "--slurm", "--api", f"http://127.0.0.1:{port}", bin_dir=bin_dir)
    assert down.returncode == 1 and "cannot reach the wattsight API" in down.stderr and sacct.exists()
    dry = wattsight("jobs", "import", "--slurm", "--input", str(DATA / "sacct.txt"), "--tz", "UTC",
                    "--dry-run",
                    "--api", f"http://127.0.0.1:{port}", bin_dir=bin_dir)
    assert dry.returncode == 0 and "jobs read (not registered): 5" in dry.stdout
    bad_tz = wattsight("jobs", "import", "--slurm", "--tz", "Mars/Olympus", bin_dir=bin_dir)
    assert bad_tz.returncode == 1 and "not a time zone" in bad_tz.stderr
    (bin_dir / "sacct").unlink()
    (bin_dir / "sacct.args").unlink()
    env_path = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    gone = subprocess.run([sys.executable, "-m", "wattsight", "jobs", "import", "--slurm"], check=False,
                          capture_output=True, text=True, env={**os.environ, "PATH": env_path}, timeout=60)
    assert gone.returncode == 1 and "sacct is not installed here" in gone.stderr
