"""The recorder SDK in local mode: RAPL, GPU and CPU-model counters on fake sysfs and proc trees.

The fake trees go through the real drivers (the recorder's seam is the drivers' ``root``): a test
writes new counter values between ``begin`` and ``end`` and checks the exact joules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peers._common import wait_until
from sysfs_trees import AMD_RANGE_UJ, rapl_file, rapl_tree, write
from test_driver_cpumodel import fake_proc, stat
from test_driver_nvml import FakeNvml, gpu

from wattsight.recorder import Measurement, Recorder, RecorderUsageError, enable_recording, set_step
from wattsight.recorder.local import LocalMeters


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    return fake_proc(tmp_path / "proc", "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", sockets=2, cpus=64)


def local(root: Path, proc: Path, **kw) -> Recorder:
    return Recorder(url="", sys_root=str(root), proc_root=str(proc), poll_s=0, **kw)


def set_uj(root: Path, zone: str, value: int) -> None:
    """A new counter value, written whole (as the kernel's files change) so that no read sees half of it."""
    target = rapl_file(root, zone).resolve()
    write(target.with_name("energy_uj.new"), value).replace(target)


def test_importing_the_sdk_loads_no_heavy_module():
    code = ("import sys, wattsight.recorder; "
            "print(sorted(m for m in ('numpy', 'fastapi', 'httpx', 'pydantic', 'pyarrow', 'matplotlib', "
            "'rich', 'asyncio', 'urllib.request', 'ssl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_rapl_packages_and_dram_are_measured_and_their_subzones_left_out_of_the_total(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", packages=2, dram=True, core=True)
    rec = local(root, proc)
    rec.begin("work")
    set_uj(root, "intel-rapl:0", 1 * 10**9 + 30_000_000)  # +30 J
    set_uj(root, "intel-rapl:1", 2 * 10**9 + 20_000_000)  # +20 J
    set_uj(root, "intel-rapl:0:0", 1 * 10**9 + 10**6 + 25_000_000)  # core of package 0: +25 J, inside it
    set_uj(root, "intel-rapl:0:1", 1 * 10**9 + 2 * 10**6 + 4_000_000)  # dram-0: +4 J
    m = rec.end("work")
    assert m.joules == pytest.approx(30 + 20 + 4 + 0)  # dram-1 unchanged
    assert m.joules_by_part["core-0"] == pytest.approx(25) and not m.part("core-0").in_total
    assert m.provenance == "measured" and m.coverage == 1.0 and m.source == "local"
    assert set(m.measured) == {"package-0", "package-1", "core-0", "core-1", "dram-0", "dram-1"}
    assert {part for part, _ in m.not_available} == {"gpu", "wall"}
    assert "cpu-model" not in m.joules_by_part  # RAPL readable: no model


def test_a_counter_that_wraps_between_two_reads_counts_the_part_before_the_wrap(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", dram=False, range_uj=AMD_RANGE_UJ)
    set_uj(root, "intel-rapl:0", AMD_RANGE_UJ - 5_000_000)  # 5 J before the wrap
    rec = local(root, proc)
    rec.begin("wrap")
    set_uj(root, "intel-rapl:0", 7_000_000)  # 7 J after it
    m = rec.end("wrap")
    assert m.joules == pytest.approx(12.0)
    assert ("dram", "no RAPL dram zone on this CPU (AMD and client CPUs rarely have one)") in m.not_available


def test_several_wraps_in_one_window_are_followed_when_the_counters_are_read_in_between(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", dram=False, range_uj=AMD_RANGE_UJ)
    rec = local(root, proc)
    rec.begin("long")
    start = 10**9
    for lap in range(3):  # each lap: up to 1 J before the range, then wrapped round to 2 J
        set_uj(root, "intel-rapl:0", AMD_RANGE_UJ - 1_000_000)
        rec.backend.meters.read()  # what the poller does every poll_s while a recording runs
        set_uj(root, "intel-rapl:0", 2_000_000)
        rec.backend.meters.read()
    m = rec.end("long")
    lap_j = (AMD_RANGE_UJ - 1_000_000 - 2_000_000) / 1e6 + 3.0  # 2 J -> range-1 J, then 1 J + 2 J
    assert m.joules == pytest.approx((AMD_RANGE_UJ - 1_000_000 - start) / 1e6 + 3.0 + 2 * lap_j)


def test_the_poller_reads_the_counters_while_a_recording_runs(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", dram=False, range_uj=AMD_RANGE_UJ)
    rec = Recorder(url="", sys_root=str(root), proc_root=str(proc), poll_s=0.01)
    rec.begin("polled")
    set_uj(root, "intel-rapl:0", AMD_RANGE_UJ - 1_000_000)
    meters = rec.backend.meters
    wait_until(lambda: meters._last["package-0"] == (AMD_RANGE_UJ - 1_000_000) / 1e6, 30,
               "the poller's read of the value before the wrap", every=0.01)
    set_uj(root, "intel-rapl:0", 2_000_000)
    set_uj(root, "intel-rapl:0", 4_000_000)  # two reads would see 2 J -> 4 J only: the wrap is in between
    m = rec.end("polled")
    assert m.joules == pytest.approx((AMD_RANGE_UJ - 1_000_000 - 10**9) / 1e6 + 5.0)


def test_the_platform_zone_alone_is_the_total_when_present(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", psys=True)
    rec = local(root, proc)
    rec.begin("p")
    set_uj(root, "intel-rapl:0", 10**9 + 40_000_000)
    set_uj(root, "intel-rapl:1", 7 * 10**9 + 90_000_000)  # psys: +90 J, holds the package's 40
    m = rec.end("p")
    assert m.joules == pytest.approx(90.0)
    assert [p.name for p in m.parts if p.in_total] == ["psys"]


def test_gpus_are_read_through_the_nvml_seam_next_to_rapl(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", dram=False)
    fake = FakeNvml([gpu(0, energy=1_000_000), gpu(1, energy=2_000)])
    rec = local(root, proc, nvml=fake)
    rec.begin("train")
    fake.gpus[0]["energy"] += 150_000  # +150 J
    fake.gpus[1]["energy"] += 2_500  # +2.5 J
    m = rec.end("train")
    assert m.joules_by_part["gpu-0"] == pytest.approx(150.0)
    assert m.joules_by_part["gpu-1"] == pytest.approx(2.5)
    assert m.joules == pytest.approx(152.5) and m.part("gpu-0").domain == "gpu"
    assert "NVIDIA A100" in m.part("gpu-1").method


def test_a_gpu_counter_that_restarts_counts_from_zero_not_forever(tmp_path, proc):
    """NVML's energy counter has no wrap range: a lower reading (a GPU reset, a driver reload) means
    it restarted from zero (energy.wrap_deltas' rule), so the increase is the new reading."""
    root = rapl_tree(tmp_path / "sys", dram=False)
    fake = FakeNvml([gpu(0, energy=5_000_000)])
    rec = local(root, proc, nvml=fake)
    rec.begin("reset")
    fake.gpus[0]["energy"] += 10_000  # +10 J
    rec.backend.meters.read()
    fake.gpus[0]["energy"] = 3_000  # restarted: 3 J since
    m = rec.end("reset")
    assert m.joules_by_part["gpu-0"] == pytest.approx(13.0)


def test_without_rapl_the_cpu_is_modelled_and_said_to_be(tmp_path, proc):
    rec = local(tmp_path / "empty-sys", proc)
    rec.begin("idle")
    stat(proc, busy=10_000, idle=0)  # 100 % busy from here on
    time.sleep(0.2)  # a span to integrate over (the driver's clock counts whole ms)
    m = rec.end("idle")
    part = m.part("cpu-model")
    assert m.provenance == "modelled" and part.provenance == "modelled" and m.measured == ()
    assert "not a meter" in part.method and "Xeon Gold 6130" in part.method
    # the model's own full-load power (2 sockets of a 125 W TDP part), over the span between the two reads;
    # the driver counts whole ms, so 1 ms in 200 (plus the reads' jitter) separates the two spans
    full_load = rec.backend.meters._model.power(1.0)
    assert 2 * 125 <= full_load and m.mean_power_w == pytest.approx(full_load, rel=0.05)
    assert {part for part, _ in m.not_available} >= {"cpu", "dram", "gpu", "wall"}


def test_rapl_that_this_user_may_not_read_is_reported_with_the_fix(tmp_path, proc, monkeypatch):
    root = rapl_tree(tmp_path / "sys")

    def opener(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return path.read_text()

    from wattsight.drivers import rapl

    real = rapl.RaplDriver.__init__
    monkeypatch.setattr(rapl.RaplDriver, "__init__",  # the driver's own opener seam, as root cannot chmod
                        lambda self, config, **kw: real(self, config, **{**kw, "opener": opener}))
    meters = LocalMeters(root, proc)
    meters.open()
    why = dict(meters.missing)["cpu"]
    assert "permission denied" in why and "docs/drivers/rapl.md" in why
    assert [m.name for m in meters.meters] == ["cpu-model"]


def test_a_measurement_is_frozen(tmp_path, proc):
    rec = local(tmp_path / "sys", proc)
    rec.begin("x")
    m = rec.end("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.joules = 0.0  # type: ignore[misc]
    assert isinstance(m, Measurement) and m.duration_s >= 0


def test_steps_are_sequential_and_a_repeated_name_gets_a_number(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", dram=False)
    rec = local(root, proc)
    rec.start("scenario")
    rec.set_step("load")
    set_uj(root, "intel-rapl:0", 10**9 + 10_000_000)
    rec.set_step("run")  # ends "load"
    set_uj(root, "intel-rapl:0", 10**9 + 15_000_000)
    rec.set_step("load")
    set_uj(root, "intel-rapl:0", 10**9 + 18_000_000)
    m = rec.stop()
    assert [(s.name, round(s.joules, 6)) for s in m.steps] == [("load", 10.0), ("run", 5.0), ("load#2", 3.0)]
    assert m.joules == pytest.approx(18.0) and m.step("load#2").joules == pytest.approx(3.0)


def test_begin_and_end_nest_a_step_inside_a_recording_and_misuse_is_an_error(tmp_path, proc):
    rec = local(rapl_tree(tmp_path / "sys"), proc)
    rec.begin("outer")
    rec.begin("inner")
    inner = rec.end("inner")
    outer = rec.end("outer")
    assert inner.name == "inner" and [s.name for s in outer.steps] == ["inner"]
    with pytest.raises(RecorderUsageError, match="no recording running"):
        rec.end("inner")
    rec.start("a")
    with pytest.raises(RecorderUsageError, match="call begin"):
        rec.end("never")
    with pytest.raises(RecorderUsageError, match="stop\\(\\) it"):
        rec.start("b")
    rec.stop()


class Case:
    """A test case in the OPNFV style: case_name names the scenario."""

    case_name = "vping"

    def __init__(self, rec: Recorder, root: Path) -> None:
        self.rec, self.root = rec, root

    @enable_recording
    def run(self):
        set_step("prepare")
        set_uj(self.root, "intel-rapl:0", 10**9 + 2_000_000)
        self.ping()
        return "done"

    @set_step("ping")
    def ping(self):
        set_uj(self.root, "intel-rapl:0", 10**9 + 9_000_000)

    @enable_recording("async-case")
    async def arun(self):
        set_step("wait")
        await asyncio.sleep(0)
        await self.aping()
        return 42

    @set_step("aping")
    async def aping(self):
        set_uj(self.root, "intel-rapl:0", 10**9 + 20_000_000)


def test_enable_recording_and_set_step_on_sync_methods(tmp_path, proc, monkeypatch):
    root = rapl_tree(tmp_path / "sys", dram=False)
    rec = local(root, proc)
    monkeypatch.setattr("wattsight.recorder.core._default", rec)
    assert Case(rec, root).run() == "done"
    m = rec.last
    assert m.name == "vping" and [s.name for s in m.steps] == ["prepare", "ping"]
    assert m.step("prepare").joules == pytest.approx(2.0) and m.step("ping").joules == pytest.approx(7.0)
    assert rec.recording is None


def test_decorators_on_async_functions_and_async_with(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys", dram=False)
    rec = local(root, proc)
    case = Case(rec, root)
    case.arun = enable_recording("async-case", recorder=rec)(Case.arun.__wrapped__.__get__(case))
    assert asyncio.run(case.arun()) == 42
    m = rec.last
    assert m.name == "async-case" and [s.name for s in m.steps] == ["wait", "aping"]
    assert m.joules == pytest.approx(20.0)

    async def block():
        async with rec.step("a-block") as s:
            set_uj(root, "intel-rapl:0", 10**9 + 26_000_000)
        return s.measurement

    got = asyncio.run(block())
    assert got.name == "a-block" and got.joules == pytest.approx(6.0)


def test_set_step_outside_a_recording_does_nothing_and_a_decorated_function_still_runs(tmp_path, proc):
    set_step("nowhere")

    @set_step("free")
    def f(x):
        return x + 1

    assert f(1) == 2


def test_the_recording_raises_through_and_still_stops(tmp_path, proc):
    root = rapl_tree(tmp_path / "sys")
    rec = local(root, proc)

    @enable_recording("boom", recorder=rec)
    def fails():
        set_step("s1")
        raise RuntimeError("the code under test failed")

    with pytest.raises(RuntimeError, match="under test"):
        fails()
    assert rec.recording is None and rec.last.name == "boom" and [s.name for s in rec.last.steps] == ["s1"]


def test_a_meter_that_stops_answering_is_left_out_with_one_warning(tmp_path, proc, caplog):
    root = rapl_tree(tmp_path / "sys", dram=False)
    rec = local(root, proc)
    rec.begin("gone")
    rapl_file(root, "intel-rapl:0").resolve().unlink()  # the zone disappears (a module unloaded)
    caplog.set_level("WARNING", logger="wattsight.recorder")
    rec.begin("still-running")
    inner = rec.end("still-running")
    m = rec.end("gone")
    assert m.joules is None and m.provenance == "unavailable" and inner.joules is None
    assert "reading failed during the run" in dict(m.not_available)["package-0"]
    assert len(caplog.records) == 1 and "RAPL" in caplog.records[0].getMessage()
