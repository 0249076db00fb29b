"""``wattsight record -- <command>`` as users run it: a real subprocess on this machine."""

from __future__ import annotations

import json
import subprocess
import sys

WS = [sys.executable, "-m", "wattsight"]


def record(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*WS, "record", *args], capture_output=True, text=True, check=False,
                          timeout=timeout)


def test_record_sleep_2_prints_an_energy_figure_and_says_what_was_and_was_not_measured():
    r = record("--", "sleep", "2")
    assert r.returncode == 0, r.stderr
    err = r.stderr
    assert "Energy of 'sleep 2' (local meters)" in err
    wall = next(line for line in err.splitlines() if line.strip().endswith("wall time"))
    assert float(wall.split()[0]) >= 2.0 and wall.split()[1] == "s"
    total = next(line for line in err.splitlines() if " total " in line)
    assert float(total.split()[0].replace(",", "")) > 0 and total.split()[1] in ("J", "kJ")
    assert " measured: " in err and " not available: " in err
    if "cpu-model" in err:  # no readable RAPL (this machine): the figure is the CPU model's, and said to be
        assert "modelled" in total and "measured: nothing" in err
        assert "DRAM" in err.split(" not available: ")[1]
    else:  # readable RAPL: measured packages, named
        assert "measured" in total and "package" in err.split(" measured: ")[1].splitlines()[0]
    if "no NVIDIA GPU" in err:
        assert "GPU" in err.split(" not available: ")[1]
    assert "whole host (wall)" in err.split(" not available: ")[1]  # local mode reads no wall meter


def test_the_exit_code_of_the_command_is_passed_on():
    assert record("--", sys.executable, "-c", "raise SystemExit(7)").returncode == 7
    assert record("--", "sh", "-c", "kill -TERM $$").returncode == 128 + 15
    missing = record("--", "no-such-command-here")
    assert missing.returncode == 127 and "cannot run 'no-such-command-here'" in missing.stderr


def test_no_command_is_a_usage_error():
    r = record()
    assert r.returncode == 2 and "wattsight record -- sleep 2" in r.stderr


def test_json_has_the_measurement_the_command_and_its_exit_code(tmp_path):
    out = tmp_path / "e.json"
    r = record("--json", "-o", str(out), "--", sys.executable, "-c", "print('hello')")
    assert r.returncode == 0 and r.stdout == "hello\n"
    doc = json.loads(out.read_text())
    assert doc["exit_code"] == 0 and doc["command"][1:] == ["-c", "print('hello')"]
    assert doc["joules"] > 0 and doc["source"] == "local" and doc["duration_s"] > 0
    assert {x["part"] for x in doc["not_available"]} >= {"wall"}
    assert doc["provenance"] in ("measured", "modelled", "mixed")


SCRIPT = r"""
import os, sys, time
print("starting", flush=True)
print("::wattsight-step load", flush=True)
time.sleep(0.3)
print("::wattsight-step compute", file=sys.stderr, flush=True)
end = time.perf_counter() + 0.4
while time.perf_counter() < end:
    pass
with open(os.environ["WATTSIGHT_STEP_FILE"], "a") as f:
    f.write("save\n")
time.sleep(0.3)
print("done", flush=True)
"""


def test_steps_come_from_output_markers_and_the_step_file(tmp_path):
    out = tmp_path / "steps.json"
    r = record("--steps", "--json", "-o", str(out), "--", sys.executable, "-c", SCRIPT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "starting\ndone\n"  # marker lines are taken out, the rest passed on
    doc = json.loads(out.read_text())
    steps = [s["name"] for s in doc["steps"]]
    assert steps == ["load", "compute", "save"]
    assert all(s["joules"] is not None and s["joules"] >= 0 for s in doc["steps"])
    assert sum(s["duration_s"] for s in doc["steps"]) <= doc["duration_s"]


def test_the_step_table_is_printed_with_steps():
    script = "echo '::wattsight-step one'; sleep 0.2; echo two >> \"$WATTSIGHT_STEP_FILE\""
    r = record("--steps", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["step", "duration"])
    assert [line.split()[0] for line in lines[head + 2: head + 4]] == ["one", "two"]


def test_sigterm_is_passed_to_the_command_and_the_energy_still_printed():
    import signal

    proc = subprocess.Popen([*WS, "record", "--", sys.executable, "-c",
                             "import time; print('ready', flush=True); time.sleep(120)"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and "Energy of" in err and "exit code 143" in err
