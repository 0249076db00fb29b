"""The cpumodel driver: exact arithmetic on a fake /proc tree, and the real /proc of this machine."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wattsight import cli
from wattsight.drivers import cpu_tdp
from wattsight.drivers.cpumodel import (
    CpuModelConfig,
    CpuModelDriver,
    describe_host,
    host_model,
    read_text,
    shape,
)
from wattsight.errors import MeterPermissionError, MeterReplyError, MeterUnreachable

T0 = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def fake_proc(root: Path, model: str, *, sockets: int = 1, cpus: int = 4, vm: bool = False) -> Path:
    flags = "fpu vme sse2" + (" hypervisor" if vm else "")
    blocks = [f"processor\t: {i}\nmodel name\t: {model}\nphysical id\t: {i % sockets}\nflags\t\t: {flags}\n"
              for i in range(cpus)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpuinfo").write_text("\n".join(blocks))
    stat(root, busy=0, idle=0)
    return root


def stat(root: Path, *, busy: int, idle: int, steal: int = 0, guest: int = 0) -> None:
    """A /proc/stat whose cpu line has ``busy`` jiffies (split over user, system, irq) and ``idle``."""
    user, system = busy // 2, busy - busy // 2 - 2
    (root / "stat").write_text(f"cpu  {user} 0 {system} {idle} 0 1 1 {steal} {guest} 0\n"
                               f"cpu0 {user} 0 {system} {idle} 0 1 1 {steal} {guest} 0\nintr 12345\n")


def driver(proc: Path, clock=None, opener=read_text, **settings) -> CpuModelDriver:
    cfg = CpuModelConfig.model_validate({"type": "cpumodel", **settings})
    return CpuModelDriver(cfg, site="lyon", clock=clock or Clock(), proc_root=proc, host="taurus-7",
                          opener=opener)


def reading(batch) -> dict:
    return {s.metric: s.value for s in batch.samples()}


# -- the model on a fake tree -------------------------------------------------------------------
def test_a_known_xeon_gives_idle_and_max_from_its_tdp_per_socket(tmp_path):
    proc = fake_proc(tmp_path, "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", sockets=2, cpus=64)
    m = host_model(proc)
    assert (m.sockets, m.cpus, m.virtual) == (2, 64, False)
    assert m.idle_watts == pytest.approx(2 * 0.12 * 125) and m.max_watts == pytest.approx(2 * 1.02 * 125)
    assert "table entry 'Xeon Gold 6130' (TDP 125 W" in m.source


def test_a_virtual_machine_gets_its_share_of_the_package(tmp_path):
    proc = fake_proc(tmp_path, "AMD EPYC 7763 64-Core Processor", cpus=8, vm=True)
    m = host_model(proc)
    assert m.virtual and m.max_watts == pytest.approx(1.02 * 280 * 8 / 128)
    assert "this VM's 8 of 128 threads" in m.source


def test_an_unknown_cpu_uses_the_default_watts_per_logical_cpu_and_says_so(tmp_path):
    proc = fake_proc(tmp_path, "AMD EPYC", cpus=2, vm=True)
    m = host_model(proc)
    assert (m.idle_watts, m.max_watts) == (pytest.approx(2 * 0.74), pytest.approx(2 * 3.5))
    assert "no table entry matches" in describe_host(proc) and "'AMD EPYC'" in describe_host(proc)


def test_power_follows_utilisation_between_reads_and_energy_integrates_it(tmp_path):
    proc = fake_proc(tmp_path, "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", sockets=2, cpus=64)
    clock = Clock()
    d = driver(proc, clock)
    idle, top = 2 * 0.12 * 125, 2 * 1.02 * 125
    stat(proc, busy=2500, idle=7500)  # since boot: 25 % busy
    first = d.read()
    assert reading(first) == {"power": pytest.approx(idle + (top - idle) * 0.25), "energy": 0.0}
    assert first.t.tolist() == [T0, T0]
    stat(proc, busy=2500 + 900, idle=7500 + 100)  # 90 % busy since the last read
    clock.t += 2000
    got = reading(d.read())
    p90 = idle + (top - idle) * 0.9
    assert got == {"power": pytest.approx(p90), "energy": pytest.approx(p90 * 2.0)}
    clock.t += 1000  # no tick since: the last utilisation holds
    assert reading(d.read()) == {"power": pytest.approx(p90), "energy": pytest.approx(p90 * 3.0)}


def test_every_series_is_labelled_modelled_and_the_description_names_the_entry(tmp_path):
    proc = fake_proc(tmp_path, "Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz", sockets=2, cpus=32)
    d = driver(proc)
    assert {s.provenance for s in d.read().series} == {"modelled"}
    [probe] = d.probes()
    assert probe.id == "lyon.taurus-7"
    assert probe.description.startswith("modelled, not measured: power = idle + (max - idle) x linear CPU")
    assert "table entry 'Xeon E5-2630 v3' (TDP 85 W, 16 threads per package)" in probe.description


def test_steal_is_not_busy_and_guest_time_is_not_counted_twice(tmp_path):
    proc = fake_proc(tmp_path, "AMD EPYC", cpus=1)
    stat(proc, busy=100, idle=100, steal=200, guest=50)  # guest is already inside user
    got = reading(driver(proc, metrics=["power"]).read())
    assert got == {"power": pytest.approx(0.74 + (3.5 - 0.74) * 100 / 400)}


def test_configured_watts_a_base_and_the_teads_curve(tmp_path):
    proc = fake_proc(tmp_path, "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    stat(proc, busy=500, idle=500)
    d = driver(proc, idle_watts=100.0, max_watts=300.0, base_watts=20.0, curve="teads", metrics=["power"])
    assert reading(d.read())["power"] == pytest.approx(20 + 100 + 200 * (0.75 - 0.12) / 0.90)
    assert "configured `idle_watts`, `max_watts`" in d.probes()[0].description
    assert shape(0.1, "teads") == pytest.approx((0.32 - 0.12) / 0.90) and shape(1.5, "linear") == 1.0


def test_the_table_finds_common_model_names():
    assert cpu_tdp.lookup("AMD EPYC 7H12 64-Core Processor") == ("EPYC 7H12", 280.0, 128)
    assert cpu_tdp.lookup("Intel(R) Xeon(R) CPU E5-2630 0 @ 2.30GHz") == ("Xeon E5-2630", 95.0, 12)
    assert cpu_tdp.lookup("AMD Ryzen 9 5950X 16-Core Processor") == ("Ryzen 5950X", 105.0, 32)
    assert cpu_tdp.lookup("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz") == ("Core i7-8700", 65.0, 12)
    assert cpu_tdp.lookup("Intel(R) Xeon(R) Platinum 8480+") == ("Xeon Platinum 8480+", 350.0, 112)
    assert cpu_tdp.lookup("AMD EPYC") is None and cpu_tdp.lookup("Intel(R) Xeon(R) Gold 9999") is None


# -- errors -------------------------------------------------------------------------------------
def test_a_folder_that_is_not_proc_is_unreachable(tmp_path):
    with pytest.raises(MeterUnreachable, match="stat does not exist: is `proc_path`"):
        driver(tmp_path).read()


def test_a_garbled_stat_is_a_reply_error(tmp_path):
    proc = fake_proc(tmp_path, "AMD EPYC")
    (proc / "stat").write_text("cpu  1 2 x\n")
    with pytest.raises(MeterReplyError, match="no valid 'cpu' line"):
        driver(proc).read()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: the injected opener's twin covers it")
def test_an_unreadable_stat_is_a_permission_error(tmp_path):
    proc = fake_proc(tmp_path, "AMD EPYC")
    (proc / "stat").chmod(0)
    with pytest.raises(MeterPermissionError, match="stat may not be read"):
        driver(proc).read()


def deny(name: str):
    """An opener that refuses ``name`` as the kernel refuses a user (root included)."""
    def opener(path: Path) -> str:
        if path.name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path)
    return opener


@pytest.mark.parametrize(("name", "call"), [("stat", lambda d: d.read()), ("cpuinfo", lambda d: d.probes())])
def test_a_file_the_user_may_not_read_is_a_permission_error_saying_what_to_do(tmp_path, name, call):
    proc = fake_proc(tmp_path, "AMD EPYC")
    d = driver(proc, opener=deny(name))
    with pytest.raises(MeterPermissionError, match=f"{proc / name} may not be read.*`proc_path`") as err:
        call(d)
    assert err.value.probe == str(proc)
    assert reading(driver(proc).read())  # the same tree through the default opener reads


@pytest.mark.parametrize("bad, says", [({"idle_watts": 50.0}, "both"),
                                       ({"idle_watts": 50.0, "max_watts": 40.0}, "below"),
                                       ({"curve": "cubic"}, "linear"),
                                       ({"name": "bad name"}, "not of the form")])
def test_bad_settings_are_refused(bad, says):
    with pytest.raises(ValueError, match=says):
        CpuModelConfig.model_validate({"type": "cpumodel", **bad})


# -- this machine's real /proc --------------------------------------------------------------------
BURN = "import time\nend = time.monotonic() + 0.6\nwhile time.monotonic() < end:\n    pass\n"


def test_on_the_real_proc_power_lies_between_idle_and_max_and_rises_when_cpus_burn():
    d = CpuModelDriver(CpuModelConfig(type="cpumodel", metrics=["power"]), site="local")
    lo, hi = d.model.idle_watts, d.model.max_watts
    d.read()
    time.sleep(0.6)
    quiet = reading(d.read())["power"]
    quiet_use, ticks_before = d._utilisation, d._last[1]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(os.cpu_count() or 1)]
    for p in burners:
        p.wait()
    burning = reading(d.read())["power"]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p in (quiet, burning):
        assert lo <= p <= hi
    # Whatever else runs here, the CPU time the burners used is busy time the model must have seen
    # (less a little: /proc/stat counts whole ticks).
    burnt = ((after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
             * os.sysconf("SC_CLK_TCK"))
    share = burnt / (d._last[1] - ticks_before)
    assert d._utilisation >= share - 0.05
    assert burning >= d.power(share - 0.05)
    if quiet_use < 0.9:  # on a machine that other work already keeps busy, nothing can rise
        assert burning > quiet


def test_wattsight_probe_cpumodel_once_on_the_real_proc_and_on_a_fake_one(tmp_path, capsys):
    assert cli.main(["probe", "cpumodel", "--once", "--json"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(s["metric"], s["provenance"]) for s in got} == {("power", "modelled"), ("energy", "modelled")}
    proc = fake_proc(tmp_path / "proc", "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", sockets=2, cpus=64)
    stat(proc, busy=100, idle=300)
    assert cli.main(["probe", "cpumodel", "--once", "--json", "--proc-path", str(proc), "--name", "dahu-1",
                     "--metrics", "power"]) == 0
    [sample] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sample["probe"] == "local.dahu-1" and sample["value"] == pytest.approx(30 + 225 * 0.25)
