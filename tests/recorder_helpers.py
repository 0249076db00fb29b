"""A real ``wattsight run --demo`` for the recorder and recordings tests, and the demo rack's exact energy.

Imported by tests/test_recorder_api.py, test_cli_record_api.py, test_recordings_demo.py,
test_recordings_docs.py and test_jobs_cli.py (it holds no test itself).  The demo rack's power is a pure function of time (the dummy driver's square pattern,
``config.DEMO_RACK``), so the exact energy of any probe over any span is known in closed form.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from procs import Wattsight, free_port

from wattsight.config import DEMO_RACK
from wattsight.drivers.base import site_probe
from wattsight.drivers.dummy import DummyConfig, make_power

PROBES = ["demo.node-1", "demo.node-2"]


def demo_ids() -> list[str]:
    """Every probe id of the demo rack, in the driver's order."""
    return [site_probe(n, "demo") for n in DummyConfig.model_validate(DEMO_RACK).names()]


def analytic(probes: list[str] | None, start_s: float, end_s: float) -> float:
    """The exact energy (J) of ``probes`` (None: the whole rack) over [start, end], from the pattern's formula."""
    ids = demo_ids()
    per_probe = make_power(DummyConfig.model_validate(DEMO_RACK), ids).energy(round(start_s * 1000),
                                                                               round(end_s * 1000))
    return float(sum(e for pid, e in zip(ids, per_probe, strict=True) if probes is None or pid in probes))


def interpolation_bound(probes: int, boundaries: int = 2, h_s: float = 1.2) -> float:
    """The most (J) a span's energy can be off when its ends fall between two 1-Hz samples of ``probes``
    demo probes: the server interpolates the counter linearly, off by at most slope x h^2 / 8 per probe and
    boundary on one of the pattern's ramps (h: the time between two samples, up to ~1.2 s when loaded)."""
    slope = (DEMO_RACK["max"] - DEMO_RACK["min"]) / DEMO_RACK["ramp"]  # W/s
    return probes * boundaries * slope * h_s ** 2 / 8


def rack_power_bounds(start_s: float, end_s: float) -> tuple[float, float]:
    """The lowest and highest total power (W) the whole rack can show in a sample stamped within a
    second of [start, end]: the sum over probes of each one's least and greatest draw there."""
    cfg = DummyConfig.model_validate(DEMO_RACK)
    t_ms = np.arange(round((start_s - 1) * 1000), round((end_s + 1) * 1000) + 1, 10)
    curves = make_power(cfg, demo_ids()).curve_at(t_ms)  # (times, probes)
    slack = cfg.resolution * curves.shape[1]  # samples are rounded to the driver's resolution
    return float(curves.min(axis=0).sum()) - slack, float(curves.max(axis=0).sum()) + slack


def on_samples() -> float:
    """A clock that reads whole seconds: the demo's sample times, so that step boundaries fall on samples.

    Between two samples the server can only interpolate the energy counter; the demo's square pattern
    jumps by up to 170 W inside a second, so a boundary between samples would be off by tens of joules.
    """
    return float(math.floor(time.time()))


def wait_started(ws: Wattsight) -> None:
    """Until the API answers and every demo probe has a first sample (probes are listed before that)."""
    ws.wait_ready()
    ws.wait_for(lambda: all(p["last"] for p in ws.get("/api/v1/probes")["probes"]), 60, "the first samples")


def run_tested_block(doc: Path, url: str) -> subprocess.CompletedProcess:
    """The ``<!-- tested -->`` sh block of ``doc`` run by bash -euo pipefail, WATTSIGHT_URL=url, no token."""
    block = re.search(r"<!-- tested -->\s*```sh\n(.*?)```", doc.read_text(), re.DOTALL).group(1)
    env = {**os.environ, "WATTSIGHT_URL": url}
    env.pop("WATTSIGHT_TOKEN", None)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def wait_measured(ws: Wattsight, until_s: float) -> None:
    """Until every demo probe has a sample stored at or after ``until_s`` (epoch s)."""
    count = len(demo_ids())

    def done() -> bool:
        probes = ws.get("/api/v1/probes")["probes"]
        return len(probes) == count and all(p["last"] and p["last"]["energy"]["measured_at"] >= until_s
                                            for p in probes)
    ws.wait_for(done, 60, f"samples past {until_s}")


def settled(ws: Wattsight, until_s: float) -> None:
    """Until every demo probe has a sample stored a second or more after ``until_s``: a span ending at
    ``until_s`` is then whole in the store."""
    wait_measured(ws, until_s + 1)


def demo_server(tmp_path_factory, name: str) -> Iterator[Wattsight]:
    """A settled ``wattsight run --demo`` on a free port for a module's tests (a fixture's body)."""
    tmp = tmp_path_factory.mktemp(name)
    ws = Wattsight(["--demo", "--data-dir", str(tmp / "data")], tmp, name="demo",
                   listen=f"127.0.0.1:{free_port()}")
    try:
        ws.wait_ready()
        settled(ws, time.time() - 1)
        yield ws
    finally:
        ws.stop()
