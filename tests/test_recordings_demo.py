"""Acceptance: a three-step scenario against a real ``wattsight run --demo``, across a restart.

The demo rack is the dummy driver's square pattern (``config.DEMO_RACK``): its power is a
pure function of time (:mod:`wattsight.drivers.patterns`), so the exact energy of every
probe over any range is known in closed form (``SquarePattern.energy``), without reading
the store.  The recorder's per-step figures must agree within 0.5 %.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from procs import Wattsight, free_port
from recorder_helpers import analytic, demo_ids, rack_power_bounds, wait_measured, wait_started

pytestmark = pytest.mark.slow
STEP_S = 12.0
DOWN_S = 7.0


def post(ws: Wattsight, path: str, body: dict, status: int) -> dict:
    r = httpx.post(ws.url + path, json=body, timeout=30)
    assert r.status_code == status, (path, r.status_code, r.text)
    return r.json()


def test_three_steps_match_the_analytic_energy_across_a_restart(tmp_path):
    """Steps "idle" and "load" run on a first process, which then stops (SIGTERM); "cool" runs on a
    second one started on the same --data-dir (on a new port).  Step boundaries are posted once they are in the past
    (the caller's timestamps, not the arrival times).  "load" is ended explicitly before the stop, so
    every step lies in time the meters covered: each step is compared with the analytic energy over
    its exact range and its coverage is 1.  The downtime lies inside the recording only: the total's
    coverage is below 1 by about the downtime's share, and its energy is the sum of the steps plus
    the covered parts between them (checked as: total <= analytic over the whole range)."""
    data = str(tmp_path / "data")
    first = Wattsight(["--demo", "--data-dir", data], tmp_path, name="first", listen=f"127.0.0.1:{free_port()}")
    try:
        wait_started(first)
        start = time.time() + 1.0
        wait_measured(first, start)
        rec = post(first, "/api/v1/recordings", {"scenario": "three-steps", "start": start,
                                                 "client_time": time.time()}, 201)
        rid = rec["id"]
        assert rec["warnings"] == [] and abs(rec["clock_offset_s"]) < 2
        post(first, f"/api/v1/recordings/{rid}/steps", {"name": "idle", "time": start}, 201)
        wait_measured(first, start + STEP_S + 1)
        post(first, f"/api/v1/recordings/{rid}/steps", {"name": "load", "time": start + STEP_S}, 201)
        wait_measured(first, start + 2 * STEP_S + 1)
        post(first, f"/api/v1/recordings/{rid}/steps/load/end", {"time": start + 2 * STEP_S}, 200)
    finally:
        code = first.stop()
    assert code == 0, first.output()[-3000:]
    down = time.time()
    time.sleep(DOWN_S)  # longer than [api] max_gap (5 s): the downtime is a gap, never bridged
    # A new free port: the first one, free for DOWN_S on a shared machine, may be taken meanwhile.
    second = Wattsight(["--demo", "--data-dir", data], tmp_path, name="second",
                       listen=f"127.0.0.1:{free_port()}")
    try:
        wait_started(second)
        cool = time.time() + 1.0
        wait_measured(second, cool)
        post(second, f"/api/v1/recordings/{rid}/steps", {"name": "cool", "time": cool}, 201)
        wait_measured(second, cool + STEP_S + 1)
        stopped = post(second, f"/api/v1/recordings/{rid}/stop", {"time": cool + STEP_S}, 200)
        assert [s["name"] for s in stopped["steps"]] == ["idle", "load", "cool"]
        report = second.get(f"/api/v1/recordings/{rid}/report")
    finally:
        second.stop()
    bounds = {"idle": (start, start + STEP_S), "load": (start + STEP_S, start + 2 * STEP_S),
              "cool": (cool, cool + STEP_S)}
    for step in report["steps"]:
        a, b = bounds[step["name"]]
        assert (step["from"], step["to"]) == (round(a, 3), round(b, 3))  # the caller's times, kept
        want = analytic(None, a, b)
        got = step["energy"]["joules"]
        print(f"step {step['name']}: {got:.1f} J measured, {want:.1f} J analytic, "
              f"deviation {100 * (got / want - 1):+.3f} %")
        assert got == pytest.approx(want, rel=0.005), (step["name"], got, want)
        assert step["energy"]["coverage"] == pytest.approx(1.0, abs=1e-6)
        assert set(step["probes"]) == set(demo_ids()) and step["duration_s"] == pytest.approx(STEP_S, abs=1e-3)
        assert step["mean_power_w"] == pytest.approx(want / STEP_S, rel=0.005)
        low, high = rack_power_bounds(a, b)
        assert low <= step["peak_power_w"] <= high
    total = report["total"]
    whole = cool + STEP_S - start
    gap = cool - down
    print(f"total coverage {total['energy']['coverage']:.3f} with {gap:.1f} s down in {whole:.1f} s")
    assert total["energy"]["coverage"] < 1 - 0.5 * gap / whole  # the downtime is not covered
    assert total["energy"]["joules"] < analytic(None, start, cool + STEP_S)
    assert total["energy"]["joules"] > sum(s["energy"]["joules"] for s in report["steps"])
    assert not report["running"]
    per_step = np.array([s["energy"]["joules"] for s in report["steps"]])
    assert np.all(per_step > 0)
