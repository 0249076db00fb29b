"""Fake kernel sysfs trees, written into a test's folder, laid out as Linux lays them out.

No machine here has RAPL, hwmon power sensors or a battery, so the sysfs drivers are tested on
copies of the kernel's layout: the real folders under ``devices/`` and, under ``class/``, links
to them, as in ``/sys``.  Every function returns the root to give the drivers (``root``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: max_energy_range_uj of an Intel package zone (raplcap#14): about 262 kJ.
INTEL_RANGE_UJ = 262_143_328_850
#: A smaller range, as on AMD (about 65.5 kJ).
AMD_RANGE_UJ = 65_532_610_987


def write(path: Path, value) -> Path:
    """Write one sysfs value (the kernel ends each with a newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")
    return path


def _link(root: Path, cls: str, folder: Path) -> None:
    """``class/<cls>/<name>`` -> the device folder, like sysfs."""
    entry = root / "class" / cls / folder.name
    entry.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(folder, entry.parent), entry)


# -- RAPL (powercap) ----------------------------------------------------------------------------
def rapl_zone(root: Path, folder: Path, name: str, energy_uj: int, range_uj: int = INTEL_RANGE_UJ) -> Path:
    write(folder / "name", name)
    write(folder / "energy_uj", energy_uj)
    write(folder / "max_energy_range_uj", range_uj)
    write(folder / "enabled", 1)
    write(folder / "constraint_0_name", "long_term")
    _link(root, "powercap", folder)
    return folder


def rapl_tree(root: Path, *, packages: int = 1, dram: bool = True, core: bool = False, uncore: bool = False,
              psys: bool = False, mmio: bool = False, range_uj: int = INTEL_RANGE_UJ) -> Path:
    """Packages ``intel-rapl:N`` (package-N) with subzones, optional psys and an MMIO duplicate.

    Energies: package N holds ``(N + 1) * 1e9`` µJ, its subzones ``+ (M + 1) * 1e6``, psys ``7e9``
    and the MMIO copy of package 0 ``5e8`` (a different value, so a test sees which was read).
    """
    base = root / "devices" / "virtual" / "powercap"
    write(base / "intel-rapl" / "enabled", 1)  # the control type: a folder with no energy
    _link(root, "powercap", base / "intel-rapl")
    for n in range(packages):
        top = rapl_zone(root, base / "intel-rapl" / f"intel-rapl:{n}", f"package-{n}", (n + 1) * 10**9,
                        range_uj)
        subs = [s for s, wanted in (("core", core), ("uncore", uncore), ("dram", dram)) if wanted]
        for m, sub in enumerate(subs):
            rapl_zone(root, top / f"intel-rapl:{n}:{m}", sub, (n + 1) * 10**9 + (m + 1) * 10**6, range_uj)
    if psys:
        rapl_zone(root, base / "intel-rapl" / f"intel-rapl:{packages}", "psys", 7 * 10**9, range_uj)
    if mmio:
        write(base / "intel-rapl-mmio" / "enabled", 1)
        _link(root, "powercap", base / "intel-rapl-mmio")
        rapl_zone(root, base / "intel-rapl-mmio" / "intel-rapl-mmio:0", "package-0", 5 * 10**8, range_uj)
    return root


def rapl_file(root: Path, zone: str, name: str = "energy_uj") -> Path:
    """A zone's file, through ``class/powercap`` as the driver reads it."""
    return root / "class" / "powercap" / zone / name


# -- hwmon --------------------------------------------------------------------------------------
def hwmon_chip(root: Path, index: int, name: str, files: dict[str, object], *,
               device: str | None = None) -> Path:
    """``class/hwmon/hwmon<index>`` named ``name`` with ``files``; ``device`` names its parent device."""
    parent = root / "devices" / "platform" / (device or f"{name}.{index}")
    folder = parent / "hwmon" / f"hwmon{index}"
    write(folder / "name", name)
    for file, value in files.items():
        write(folder / file, value)
    os.symlink(os.path.relpath(parent, folder), folder / "device")
    _link(root, "hwmon", folder)
    return folder


def hwmon_tree(root: Path) -> Path:
    """A server's ACPI power meter, an AMD GPU, an Intel GPU's energy, CPU energy and a temperature chip."""
    hwmon_chip(root, 0, "coretemp", {"temp1_input": 45000, "temp1_label": "Package id 0"})
    hwmon_chip(root, 1, "acpi_power_meter", {"power1_average": 152_300_000, "power1_average_interval": 1000,
                                             "power1_model_number": "ACPI000D"})
    hwmon_chip(root, 2, "amdgpu", {"power1_input": 31_000_000, "power1_average": 29_000_000,
                                   "power1_label": "PPT", "power1_cap": 200_000_000}, device="0000:03:00.0")
    hwmon_chip(root, 3, "i915", {"energy1_input": 123_456_789_000, "power1_max": 0}, device="0000:00:02.0")
    hwmon_chip(root, 4, "amd_energy", {"energy1_input": 9_000_000_000, "energy1_label": "Esocket0",
                                       "energy2_input": 1_000_000_000, "energy2_label": "Ecore000"})
    return root


# -- power_supply -------------------------------------------------------------------------------
def power_supply(root: Path, name: str, files: dict[str, object]) -> Path:
    """``class/power_supply/<name>`` with ``files`` (give ``type``)."""
    folder = root / "devices" / "LNXSYSTM:00" / "PNP0C0A:00" / "power_supply" / name
    for file, value in files.items():
        write(folder / file, value)
    _link(root, "power_supply", folder)
    return folder


def battery_tree(root: Path, *, status: str = "Discharging", power_now: int | None = 12_500_000,
                 current_now: int | None = None, voltage_now: int | None = 12_000_000,
                 energy_now: int | None = 40_000_000, charge_now: int | None = None,
                 peripherals: bool = True) -> Path:
    """A laptop: battery BAT0 (values in the kernel's µW, µA, µV, µWh, µAh), mains adapter AC, a mouse."""
    files = {"type": "Battery", "status": status, "present": 1, "scope": "System", "technology": "Li-ion",
             "power_now": power_now, "current_now": current_now, "voltage_now": voltage_now,
             "voltage_min_design": 11_400_000, "energy_now": energy_now, "charge_now": charge_now,
             "energy_full": 50_000_000, "capacity": 80, "model_name": "5B10W13930"}
    power_supply(root, "BAT0", {k: v for k, v in files.items() if v is not None})
    power_supply(root, "AC", {"type": "Mains", "online": 0 if status == "Discharging" else 1})
    if peripherals:
        power_supply(root, "hidpp_battery_0", {"type": "Battery", "scope": "Device", "status": "Discharging",
                                               "capacity_level": "Normal"})
    return root
