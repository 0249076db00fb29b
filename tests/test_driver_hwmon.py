"""The hwmon driver on copies of the kernel's hwmon layout: chips by name, sensors by label, errors."""

from __future__ import annotations

import errno
import json
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from sysfs_trees import hwmon_chip, hwmon_tree, write

from wattsight import cli
from wattsight.drivers.hwmon import HwmonConfig, HwmonDriver
from wattsight.drivers.sysfs import read_file
from wattsight.energy import counter_increase
from wattsight.errors import MeterPermissionError, MeterReplyError

NOW = 1_700_000_000_000


def driver(root: Path, opener=read_file, clock=lambda: NOW, **kw) -> HwmonDriver:
    cfg = HwmonConfig(type="hwmon", root=root, node="n1", **kw)
    return HwmonDriver(cfg, site="lyon", clock=clock, opener=opener)


def values(batch) -> dict[tuple[str, str], tuple[float, str, str]]:
    return {(s.probe, s.metric): (s.value, s.unit, s.kind) for s in batch.samples()}


def test_power_in_watts_and_energy_counters_in_joules_named_by_chip_and_label(tmp_path):
    batch = driver(hwmon_tree(tmp_path)).read()
    assert values(batch) == {
        ("lyon.n1-acpi_power_meter-power1", "power"): (152.3, "W", "gauge"),  # power1_average: no input
        ("lyon.n1-amdgpu-ppt", "power"): (31.0, "W", "gauge"),  # the input, not the average (29 W)
        ("lyon.n1-i915-energy1", "energy"): (123456.789, "J", "counter"),
        ("lyon.n1-amd_energy-esocket0", "energy"): (9000.0, "J", "counter"),
        ("lyon.n1-amd_energy-ecore000", "energy"): (1000.0, "J", "counter")}
    assert {s.provenance for s in batch.series} == {"measured"}
    assert np.all(batch.t == NOW)


def test_a_power_and_an_energy_sensor_with_one_label_feed_one_probe(tmp_path):
    hwmon_chip(tmp_path, 0, "xe", {"power1_input": 20_000_000, "power1_label": "card",
                                   "energy1_input": 5_000_000, "energy1_label": "card"})
    d = driver(tmp_path)
    (probe,) = d.probes()
    assert probe.id == "lyon.n1-xe-card" and "power1_input and energy1_input" in probe.description
    assert values(d.read()) == {("lyon.n1-xe-card", "power"): (20.0, "W", "gauge"),
                                ("lyon.n1-xe-card", "energy"): (5.0, "J", "counter")}


def test_an_energy_counter_gives_the_energy_between_reads(tmp_path):
    chip = hwmon_chip(tmp_path, 0, "i915", {"energy1_input": 1_000_000})
    clock = iter([NOW, NOW + 2000])
    d = driver(tmp_path, clock=lambda: next(clock))
    first = d.read()
    write(chip / "energy1_input", 61_000_000)
    second = d.read()
    t, v = np.concatenate([first.t, second.t]), np.concatenate([first.v, second.v])
    assert counter_increase(t, v, NOW, NOW + 2000, 5000).joules == pytest.approx(60.0)


def test_chips_are_chosen_by_name_and_sensors_by_label_or_file(tmp_path):
    root = hwmon_tree(tmp_path)
    d = driver(root, chips=["amd_energy", "acpi_power_meter"], sensors=["Esocket0", "power1"])
    assert sorted(values(d.read())) == [("lyon.n1-acpi_power_meter-power1", "power"),
                                       ("lyon.n1-amd_energy-esocket0", "energy")]


def test_an_unknown_chip_or_sensor_is_an_error_listing_what_is_there(tmp_path):
    root = hwmon_tree(tmp_path)
    chips = "acpi_power_meter, amd_energy, amdgpu, i915"
    with pytest.raises(MeterReplyError, match=rf"no hwmon chip 'nvme'.*here: {chips}$"):
        driver(root, chips=["nvme"]).read()
    with pytest.raises(MeterReplyError,
                       match=r"no hwmon sensor 'PPT'; sensors here: acpi_power_meter:power1$"):
        driver(root, chips=["acpi_power_meter"], sensors=["PPT"]).read()


def test_two_chips_with_one_name_are_told_apart_by_device_not_by_boot_order(tmp_path):
    for index, watts, device in ((2, 50, "0000:0a:00.0"), (5, 70, "0000:03:00.0")):
        files = {"power1_input": watts * 10**6, "power1_label": "PPT"}
        hwmon_chip(tmp_path, index, "amdgpu", files, device=device)
    got = values(driver(tmp_path).read())
    assert got == {("lyon.n1-amdgpu-1-ppt", "power"): (70.0, "W", "gauge"),  # 0000:03 sorts first
                   ("lyon.n1-amdgpu-2-ppt", "power"): (50.0, "W", "gauge")}
    assert sorted(values(driver(tmp_path, chips=["amdgpu-2"]).read())) == [("lyon.n1-amdgpu-2-ppt", "power")]


def test_old_kernels_with_attributes_under_device_are_read(tmp_path):
    device = tmp_path / "devices" / "platform" / "old" / "hwmon" / "hwmon0" / "device"
    write(device / "name", "acpi_power_meter")
    write(device / "power1_average", 99_000_000)
    (tmp_path / "class" / "hwmon").mkdir(parents=True)
    os.symlink(device.parent, tmp_path / "class" / "hwmon" / "hwmon0")
    got = values(driver(tmp_path).read())
    assert got == {("lyon.n1-acpi_power_meter-power1", "power"): (99.0, "W", "gauge")}


def test_chips_without_power_or_energy_are_not_meters(tmp_path):
    hwmon_chip(tmp_path, 0, "coretemp", {"temp1_input": 40000})
    with pytest.raises(MeterReplyError, match="no hwmon power or energy sensor under"):
        driver(tmp_path).probes()


def test_a_sensor_without_a_reading_now_is_a_reply_error_with_the_kernels_reason(tmp_path):
    root = hwmon_tree(tmp_path)

    def asleep(path: Path) -> str:
        if path.name == "power1_input":
            raise OSError(errno.ENODATA, os.strerror(errno.ENODATA), str(path))
        return read_file(path)

    with pytest.raises(MeterReplyError, match=r"power1_input failed: No data available"):
        driver(root, opener=asleep, chips=["amdgpu"]).read()


def test_a_sensor_gone_since_the_scan_is_a_reply_error_naming_the_file(tmp_path):
    chip = hwmon_chip(tmp_path, 0, "acpi_power_meter", {"power1_average": 1})
    d = driver(tmp_path)
    d.probes()
    (chip / "power1_average").unlink()
    with pytest.raises(MeterReplyError, match=r"hwmon0/power1_average is missing"):
        d.read()


def test_a_garbled_reading_is_a_reply_error(tmp_path):
    hwmon_chip(tmp_path, 0, "acpi_power_meter", {"power1_average": "n/a"})
    with pytest.raises(MeterReplyError, match=r"holds 'n/a', not an integer"):
        driver(tmp_path).read()


def test_a_sensor_only_root_may_read_is_a_permission_error_with_the_fix(tmp_path):
    root = hwmon_tree(tmp_path)

    def root_only(path: Path) -> str:
        if path.name.startswith("energy") and path.name.endswith("_input"):
            raise PermissionError(13, "Permission denied", str(path))
        return read_file(path)

    with pytest.raises(MeterPermissionError, match=r"hwmon4/energy1_input. Fix: run wattsight as root.*"
                                                   r"sudo chmod o\+r .*energy1_input.*CVE-2020-8694"):
        driver(root, opener=root_only, chips=["amd_energy"]).read()


def test_a_chmod_000_sensor_is_a_permission_error(tmp_path):
    chip = hwmon_chip(tmp_path, 0, "acpi_power_meter", {"power1_average": 1})
    (chip / "power1_average").chmod(0)
    try:
        if os.access(chip / "power1_average", os.R_OK):
            pytest.skip("running as root: chmod 000 does not deny root (the injected opener test covers it)")
        with pytest.raises(MeterPermissionError, match="permission denied reading"):
            driver(tmp_path).read()
    finally:
        (chip / "power1_average").chmod(0o644)


def test_the_sample_validates():
    section = tomllib.loads(HwmonDriver.SAMPLE)["drivers"]["hwmon"]
    assert HwmonConfig.model_validate(section).chips == ["acpi_power_meter"]


def test_wattsight_probe_hwmon_once_reads_the_tree(tmp_path, capsys):
    root = hwmon_tree(tmp_path)
    assert cli.main(["probe", "hwmon", "--root", str(root), "--node", "n1", "--chips", "amdgpu", "--once",
                     "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["probe"], row["metric"], row["value"]) == ("local.n1-amdgpu-ppt", "power", 31.0)
