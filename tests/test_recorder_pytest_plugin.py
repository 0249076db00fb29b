"""The pytest plugin on a small suite run by pytester: inactive by default, energy per test when asked."""

from __future__ import annotations

import json

pytest_plugins = ["pytester"]

SUITE = """
import time

def test_busy():
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass

def test_sleepy():
    time.sleep(0.1)

def test_fails():
    assert 1 == 2
"""


def test_the_plugin_does_nothing_unless_asked(pytester):
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("-p", "wattsight.recorder.pytest_plugin")
    result.assert_outcomes(passed=2, failed=1)
    assert "wattsight energy" not in result.stdout.str()
    assert not (pytester.path / "wattsight-energy.json").exists()


def test_energy_per_test_goes_to_the_json_file_and_the_summary(pytester):
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("-p", "wattsight.recorder.pytest_plugin",
                                           "--wattsight-energy=out/e.json")
    result.assert_outcomes(passed=2, failed=1)
    doc = json.loads((pytester.path / "out" / "e.json").read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert set(tests) == {"test_busy", "test_sleepy", "test_fails"}
    assert tests["test_fails"]["outcome"] == "failed" and tests["test_busy"]["outcome"] == "passed"
    for t in tests.values():  # this machine: RAPL when readable, else the CPU model; never a silent zero
        assert t["provenance"] in ("measured", "modelled") and t["joules"] >= 0
        assert t["not_available"]  # a laptop-style local mode never covers the wall
    assert tests["test_busy"]["joules"] > 0 and tests["test_sleepy"]["joules"] > 0  # spans of 0.1 s and more
    assert tests["test_busy"]["duration_s"] > tests["test_sleepy"]["duration_s"]
    assert doc["joules"] >= sum(t["joules"] for t in tests.values())
    out = result.stdout.str()
    assert "wattsight energy" in out and "test_busy" in out and "per test: out/e.json" in out


def test_the_default_path_is_used_when_none_is_given(pytester):
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "wattsight.recorder.pytest_plugin", "--wattsight-energy")
    result.assert_outcomes(passed=1)
    doc = json.loads((pytester.path / "wattsight-energy.json").read_text())
    assert [t["nodeid"].split("::")[1] for t in doc["tests"]] == ["test_one"]
