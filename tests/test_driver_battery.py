"""The battery driver on copies of the kernel's power_supply layout: status, units, provenance, errors."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from sysfs_trees import battery_tree, power_supply

from wattsight import cli
from wattsight.drivers.battery import BatteryConfig, BatteryDriver
from wattsight.drivers.sysfs import read_file
from wattsight.errors import MeterPermissionError, MeterReplyError

NOW = 1_700_000_000_000


def driver(root: Path, opener=read_file, **kw) -> BatteryDriver:
    return BatteryDriver(BatteryConfig(type="battery", root=root, node="laptop", **kw), site="home",
                         clock=lambda: NOW, opener=opener)


def values(batch) -> dict[str, tuple[float, str, str, str]]:
    assert {s.probe for s in batch.series} <= {"home.laptop-bat0"}
    assert all(s.measured_at == NOW / 1000 for s in batch.samples())
    return {s.metric: (round(s.value, 9), s.unit, s.kind, s.provenance) for s in batch.samples()}


def test_discharging_the_machine_draws_the_batterys_power(tmp_path):
    got = values(driver(battery_tree(tmp_path)).read())
    assert got == {"power": (12.5, "W", "gauge", "measured"),
                   "battery_power": (-12.5, "W", "gauge", "measured"),
                   "battery_energy": (144000.0, "J", "gauge", "measured")}  # 40 Wh


def test_the_sign_of_power_now_does_not_matter_the_status_does(tmp_path):
    got = values(driver(battery_tree(tmp_path, power_now=-12_500_000)).read())
    assert got["power"][0] == 12.5 and got["battery_power"][0] == -12.5


@pytest.mark.parametrize("status, rate", [("Charging", 12.5), ("Full", 0.0), ("Not charging", 0.0),
                                          ("Unknown", None)])
def test_on_mains_power_the_battery_does_not_measure_the_machine(tmp_path, status, rate):
    got = values(driver(battery_tree(tmp_path, status=status)).read())
    assert "power" not in got  # a gap, not a zero: nothing in the battery measures the machine now
    assert got.get("battery_power", (None,))[0] == rate
    assert got["battery_energy"][0] == 144000.0


def test_current_times_voltage_is_derived_power(tmp_path):
    root = battery_tree(tmp_path, power_now=None, current_now=-1_250_000, voltage_now=11_600_000)
    got = values(driver(root).read())
    assert got["power"] == (14.5, "W", "gauge", "derived")  # 1.25 A x 11.6 V
    assert got["battery_power"] == (-14.5, "W", "gauge", "derived")


def test_charge_times_design_voltage_is_derived_energy(tmp_path):
    root = battery_tree(tmp_path, energy_now=None, charge_now=3_000_000)
    got = values(driver(root).read())
    assert got["battery_energy"] == (123120.0, "J", "gauge", "derived")  # 3 Ah x 11.4 V = 34.2 Wh


def test_peripheral_batteries_and_mains_adapters_are_left_out(tmp_path):
    probes = driver(battery_tree(tmp_path)).probes()
    assert [p.id for p in probes] == ["home.laptop-bat0"]
    assert "while discharging" in probes[0].description


def test_an_empty_battery_slot_is_left_out_unless_named(tmp_path):
    root = battery_tree(tmp_path)
    power_supply(root, "BAT1", {"type": "Battery", "present": 0, "scope": "System"})
    assert [p.id for p in driver(root).probes()] == ["home.laptop-bat0"]
    with pytest.raises(MeterReplyError, match=r"BAT1: the battery slot is empty \(present = 0\)"):
        driver(root, batteries=["BAT1"]).read()


def test_a_named_supply_must_exist_and_be_a_battery(tmp_path):
    root = battery_tree(tmp_path)
    with pytest.raises(MeterReplyError, match=r"no power supply 'BAT2' under .*; batteries here: BAT0"):
        driver(root, batteries=["BAT2"]).read()
    with pytest.raises(MeterReplyError, match=r"/AC is a Mains power supply, not a battery"):
        driver(root, batteries=["AC"]).read()


def test_a_machine_without_battery_is_an_error(tmp_path):
    power_supply(tmp_path, "AC", {"type": "Mains", "online": 1})
    with pytest.raises(MeterReplyError, match="no battery under .*power_supply"):
        driver(tmp_path).probes()


def test_a_battery_with_nothing_to_read_is_a_reply_error(tmp_path):
    power_supply(tmp_path, "BAT0", {"type": "Battery", "status": "Discharging", "capacity": 50})
    with pytest.raises(MeterReplyError, match="BAT0 has neither power_now, current_now and voltage_now"):
        driver(tmp_path).read()


def test_a_garbled_value_is_a_reply_error(tmp_path):
    root = battery_tree(tmp_path)
    (root / "class" / "power_supply" / "BAT0" / "power_now").write_text("lots\n")
    with pytest.raises(MeterReplyError, match=r"BAT0/power_now holds 'lots', not an integer"):
        driver(root).read()


def test_a_value_only_root_may_read_is_a_permission_error(tmp_path):
    root = battery_tree(tmp_path)

    def root_only(path: Path) -> str:
        if path.name == "energy_now":
            raise PermissionError(13, "Permission denied", str(path))
        return read_file(path)

    with pytest.raises(MeterPermissionError, match=r"laptop: permission denied reading .*BAT0/energy_now. "
                                                   r"Fix: run wattsight as root, or .*sudo chmod o\+r"):
        driver(root, opener=root_only).read()


def test_a_chmod_000_value_is_a_permission_error(tmp_path):
    root = battery_tree(tmp_path)
    value = root / "class" / "power_supply" / "BAT0" / "power_now"
    value.chmod(0)
    try:
        if os.access(value, os.R_OK):
            pytest.skip("running as root: chmod 000 does not deny root (the injected opener test covers it)")
        with pytest.raises(MeterPermissionError):
            driver(root).read()
    finally:
        value.chmod(0o644)


def test_the_sample_validates():
    section = tomllib.loads(BatteryDriver.SAMPLE)["drivers"]["battery"]
    assert BatteryConfig.model_validate(section).batteries == []


def test_wattsight_probe_battery_once_reads_the_tree(tmp_path, capsys):
    root = battery_tree(tmp_path)
    assert cli.main(["probe", "battery", "--root", str(root), "--node", "laptop", "--once", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["probe"], r["metric"], r["value"]) for r in rows] == [
        ("local.laptop-bat0", "power", 12.5), ("local.laptop-bat0", "battery_power", -12.5),
        ("local.laptop-bat0", "battery_energy", 144000.0)]
