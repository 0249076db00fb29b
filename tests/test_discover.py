"""Finding this machine's meters: each combination on fake trees, and the real /sys here."""

from __future__ import annotations

from pathlib import Path

import pytest
from sysfs_trees import battery_tree, hwmon_chip, hwmon_tree, rapl_tree, write

from wattsight import plugins
from wattsight.discover import Discovery, LocalMeter, cpu_model, discover, find_local_meters, nvidia_gpus
from wattsight.drivers.sysfs import read_file

NO_GPU = list  # a checker that finds no GPU
MODELLED = "the host's power is modelled from CPU use (cpumodel), not measured"
NVML_NOTE = "nvml: NVIDIA GPUs here but the nvml driver cannot read them"


def drivers(found: Discovery) -> list[str]:
    return [m.driver for m in found.meters]


def deny_rapl(path: Path) -> str:
    """As for a non-root user since Linux 5.10."""
    if path.name == "energy_uj":
        raise PermissionError(13, "Permission denied", str(path))
    return read_file(path)


def test_nothing_here_falls_back_to_the_cpu_model_and_says_it_is_modelled(tmp_path):
    write(tmp_path / "proc" / "cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6130 CPU\n")
    found = discover(tmp_path / "sys", tmp_path / "proc", nvml=NO_GPU)
    assert found.meters == [LocalMeter("cpumodel", {"type": "cpumodel"},
                                       "cpumodel: the host's power modelled from CPU use "
                                       "(Intel(R) Xeon(R) Gold 6130 CPU), not measured")]
    assert found.sections() == {"cpumodel": {"type": "cpumodel"}}
    assert found.summary().splitlines() == ["found: no power meter on this machine", MODELLED]


def test_readable_rapl_measures_the_host_and_no_model_is_added(tmp_path):
    rapl_tree(tmp_path, dram=True, psys=True, mmio=True)
    found = discover(tmp_path, tmp_path, nvml=NO_GPU)
    section = {"type": "rapl", "root": str(tmp_path)}
    assert found.meters == [LocalMeter("rapl", section, "rapl (package-0, dram-0, psys)")]
    assert found.measured_by == ["rapl"]
    assert found.summary().splitlines() == [
        "found: rapl (package-0, dram-0, psys)",
        ("the host's power is measured by rapl "
         "(RAPL covers the CPU packages and memory, not the whole machine)")]


def test_unreadable_rapl_is_reported_with_the_fix_and_the_host_is_modelled(tmp_path):
    rapl_tree(tmp_path, dram=True)
    found = discover(tmp_path, tmp_path, nvml=NO_GPU, opener=deny_rapl)
    assert drivers(found) == ["cpumodel"]
    (note,) = found.notes
    assert note.startswith("rapl: RAPL zones here (package-0, dram-0) but this user may not read them:")
    assert f"sudo chmod o+r {tmp_path}/class/powercap/intel-rapl*/energy_uj" in note and "udev" in note
    lines = found.summary().splitlines()
    assert lines[1] == MODELLED and lines[2] == note


def test_hwmon_chips_are_one_section_each_and_gpus_do_not_measure_the_host(tmp_path):
    hwmon_tree(tmp_path)
    found = discover(tmp_path, tmp_path, nvml=NO_GPU)
    root = str(tmp_path)
    assert found.sections() == {
        "hwmon-acpi_power_meter": {"type": "hwmon", "root": root, "chips": ["acpi_power_meter"]},
        "hwmon-amdgpu": {"type": "hwmon", "root": root, "chips": ["amdgpu"]},
        "hwmon-i915": {"type": "hwmon", "root": root, "chips": ["i915"]},
        "hwmon-amd_energy": {"type": "hwmon", "root": root, "chips": ["amd_energy"]}}
    assert found.measured_by == ["hwmon acpi_power_meter", "hwmon amd_energy"]
    assert "hwmon amdgpu (PPT, a GPU)" in found.summary()


def test_a_gpu_alone_does_not_measure_the_host(tmp_path):
    hwmon_chip(tmp_path, 0, "amdgpu", {"power1_input": 1_000_000, "power1_label": "PPT"})
    assert drivers(discover(tmp_path, tmp_path, nvml=NO_GPU)) == ["hwmon", "cpumodel"]


def test_amd_energy_is_left_out_when_rapl_reads_the_same_counters(tmp_path):
    rapl_tree(tmp_path, dram=False)
    hwmon_chip(tmp_path, 0, "amd_energy", {"energy1_input": 1, "energy1_label": "Esocket0"})
    found = discover(tmp_path, tmp_path, nvml=NO_GPU)
    assert drivers(found) == ["rapl"]
    assert found.notes == ["hwmon: amd_energy left out: the same CPU counters as rapl"]
    # ...but kept when RAPL cannot be read:
    found = discover(tmp_path, tmp_path, nvml=NO_GPU, opener=deny_rapl)
    assert drivers(found) == ["hwmon"] and found.measured_by == ["hwmon amd_energy"]


def test_a_battery_alone_gets_the_model_too(tmp_path):
    battery_tree(tmp_path)
    found = discover(tmp_path, tmp_path, nvml=NO_GPU)
    assert found.sections() == {
        "battery-BAT0": {"type": "battery", "root": str(tmp_path), "batteries": ["BAT0"]},
        "cpumodel": {"type": "cpumodel"}}
    assert found.summary().startswith("found: battery BAT0 (the machine's power while it runs on battery)\n"
                                      "the host's power is modelled")


def test_gpus_come_from_the_checker_and_a_failing_checker_means_no_gpu(tmp_path):
    found = discover(tmp_path, tmp_path, nvml=lambda: ["gpu-0", "gpu-1"])
    assert found.meters[0] == LocalMeter("nvml", {"type": "nvml"}, "nvml (2 NVIDIA GPUs)")
    assert drivers(found) == ["nvml", "cpumodel"]

    def broken() -> list[str]:
        raise RuntimeError("NVML Shared Library Not Found")
    found = discover(tmp_path, tmp_path, nvml=broken)
    assert drivers(found) == ["cpumodel"]
    assert found.notes == [f"{NVML_NOTE}: NVML Shared Library Not Found"]


def test_no_nvidia_kernel_driver_means_no_gpu_without_loading_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(plugins, "load", lambda *a: pytest.fail("the nvml driver was loaded"))
    assert nvidia_gpus(tmp_path) == []


class FakeNvml:
    """Stands for the nvml driver class: the contract only (Config, read, close)."""

    from wattsight.drivers.base import DriverConfig as Config

    gpus: tuple[str, ...] = ()
    closed = 0

    def __init__(self, config, *, site):
        assert config.type == "nvml" and site == "local"

    def read(self):
        from wattsight.sample import Batch, Sample
        if not self.gpus:
            raise RuntimeError("NVML Shared Library Not Found")
        return Batch.of(Sample(g, "power", 1.0, 50.0, "W") for g in self.gpus)

    def close(self):
        FakeNvml.closed += 1


def test_with_nvidias_kernel_driver_the_nvml_driver_is_asked(tmp_path, monkeypatch):
    (tmp_path / "driver" / "nvidia" / "gpus" / "0000:01:00.0").mkdir(parents=True)
    monkeypatch.setattr(plugins, "load", lambda name, *a: FakeNvml if name == "nvml" else pytest.fail(name))
    monkeypatch.setattr(FakeNvml, "gpus", ("local.gpu-0", "local.gpu-1"))
    assert nvidia_gpus(tmp_path) == ["local.gpu-0", "local.gpu-1"]
    found = discover(tmp_path / "sys", tmp_path)
    assert found.meters[0] == LocalMeter("nvml", {"type": "nvml"}, "nvml (2 NVIDIA GPUs)")
    monkeypatch.setattr(FakeNvml, "gpus", ())
    found = discover(tmp_path / "sys", tmp_path)
    assert drivers(found) == ["cpumodel"]
    assert found.notes == [f"{NVML_NOTE}: NVML Shared Library Not Found"]
    assert FakeNvml.closed == 3


def test_gpus_the_real_nvml_driver_cannot_read_give_a_note_not_a_crash(tmp_path):
    (tmp_path / "driver" / "nvidia" / "gpus" / "0000:01:00.0").mkdir(parents=True)
    found = discover(tmp_path / "sys", tmp_path)  # no NVIDIA library on these machines
    assert drivers(found) == ["cpumodel"]
    assert all(n.startswith(NVML_NOTE) for n in found.notes)


def test_everything_at_once_gives_sections_every_driver_can_read(tmp_path):
    rapl_tree(tmp_path, packages=2, dram=True, psys=True, mmio=True)
    hwmon_tree(tmp_path)
    battery_tree(tmp_path)
    found = discover(tmp_path, tmp_path, nvml=NO_GPU)
    sections = found.sections()
    assert list(sections) == ["rapl", "hwmon-acpi_power_meter", "hwmon-amdgpu", "hwmon-i915", "battery-BAT0"]
    for section in sections.values():
        cls = plugins.load(section["type"])
        assert len(cls(cls.Config.model_validate(section), site="local").read()) > 0
    assert found.summary().splitlines()[:2] == [
        ("found: rapl (package-0, dram-0, package-1, dram-1, psys); hwmon acpi_power_meter (power1); "
         "hwmon amdgpu (PPT, a GPU); hwmon i915 (energy1, a GPU); "
         "battery BAT0 (the machine's power while it runs on battery)"),
        "the host's power is measured by rapl, hwmon acpi_power_meter"]


def test_find_local_meters_gives_driver_section_and_description(tmp_path):
    rapl_tree(tmp_path, dram=False)
    ((driver, section, description),) = find_local_meters(tmp_path, tmp_path, nvml=NO_GPU)
    assert (driver, description) == ("rapl", "rapl (package-0)")
    assert section == {"type": "rapl", "root": str(tmp_path)}


def test_this_machines_own_sys_does_not_crash_and_models_what_nothing_measures():
    found = discover()
    assert found.summary().startswith("found: ")
    assert ("cpumodel" in drivers(found)) == (not found.measured_by)
    if not Path("/sys/class/powercap").exists() and not Path("/sys/class/hwmon").exists():
        assert drivers(found)[-1] == "cpumodel"  # the case of the machines these tests run on
    for section in found.sections().values():
        assert section.get("root") is None  # the real /sys is the drivers' default


def test_cpu_model_reads_arm_and_x86_cpuinfo(tmp_path):
    write(tmp_path / "cpuinfo", "processor : 0\nBogoMIPS : 48.00\nModel : Raspberry Pi 4 Model B Rev 1.4\n")
    assert cpu_model(tmp_path) == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu_model(tmp_path / "missing") == ""
