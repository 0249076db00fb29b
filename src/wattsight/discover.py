"""Which power meters this machine has, for ``wattsight run`` without a configuration file.

:func:`discover` looks, in this order, for RAPL zones (``rapl``), hwmon power and energy
sensors (``hwmon``, one section per chip), system batteries (``battery``, one per battery) and
NVIDIA GPUs (``nvml``).  Each candidate is *read once* with its driver: only meters that answer
are kept; one that is there but refuses this user (RAPL since Linux 5.10) becomes a note that
says how to fix it.  When nothing measures the host itself (a readable RAPL zone, or an hwmon
sensor that is not a GPU's), the host's power is modelled from its CPU use (``cpumodel``) and
the text says so.  Nothing here raises: a machine with no meter gets the model.

The rules, and the text printed at start, are described in docs/discovery.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .drivers.battery import BatteryConfig, BatteryDriver, find_batteries
from .drivers.cpumodel import parse_cpuinfo
from .drivers.hwmon import HwmonConfig, HwmonDriver, find_sensors
from .drivers.rapl import RaplConfig, RaplDriver, find_zones
from .drivers.sysfs import Opener, Sysfs, read_file
from .errors import DriverError, MeterPermissionError

#: hwmon chips of graphics cards: they measure a GPU, not the host.
GPU_CHIPS = {"amdgpu", "radeon", "nouveau", "i915", "xe"}
#: hwmon chips that read the same CPU counters as RAPL: left out when RAPL is readable.
RAPL_TWINS = {"amd_energy", "zenergy"}

#: Lists the NVIDIA GPUs the nvml driver can read (any strings, one per GPU); raises if it cannot.
GpuChecker = Callable[[], list[str]]


class LocalMeter(NamedTuple):
    """A meter found here: the driver's name, its configuration section, one line for people."""

    driver: str
    section: dict
    description: str


@dataclass
class Discovery:
    """What :func:`discover` found: meters to run, and notes about meters that could not be read."""

    meters: list[LocalMeter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The drivers (with their chip or battery) that measure the host itself; empty: modelled.
    measured_by: list[str] = field(default_factory=list)

    def sections(self) -> dict[str, dict]:
        """``[drivers.<name>]`` sections for the configuration: rapl, hwmon-<chip>, battery-<name>..."""
        out: dict[str, dict] = {}
        for meter in self.meters:
            base = meter.driver
            if meter.driver == "hwmon":
                base = f"hwmon-{meter.section['chips'][0]}"
            elif meter.driver == "battery":
                base = f"battery-{meter.section['batteries'][0]}"
            name, k = base, 2
            while name in out:
                name, k = f"{base}-{k}", k + 1
            out[name] = dict(meter.section)
        return out

    def summary(self) -> str:
        """The lines to print when ``wattsight run`` starts with the meters found here."""
        found = [m.description for m in self.meters if m.driver != "cpumodel"]
        lines = ["found: " + ("; ".join(found) if found else "no power meter on this machine")]
        if self.measured_by:
            lines.append("the host's power is measured by " + ", ".join(self.measured_by)
                         + (" (RAPL covers the CPU packages and memory, not the whole machine)"
                            if self.measured_by == ["rapl"] else ""))
        else:
            lines.append("the host's power is modelled from CPU use (cpumodel), not measured")
        return "\n".join(lines + self.notes)


def discover(sys_root: str | Path = "/sys", proc_root: str | Path = "/proc", nvml: GpuChecker | None = None,
             *, opener: Opener = read_file) -> Discovery:
    """Find the meters of this machine (see the module's docstring); never raises a DriverError."""
    found = Discovery()
    rapl_ok = _rapl(found, Path(sys_root), opener)
    _hwmon(found, Path(sys_root), opener, skip=RAPL_TWINS if rapl_ok else set())
    _batteries(found, Path(sys_root), opener)
    _gpus(found, Path(proc_root), nvml)
    if not found.measured_by:
        cpu = cpu_model(Path(proc_root))
        what = f" ({cpu})" if cpu else ""
        text = f"cpumodel: the host's power modelled from CPU use{what}, not measured"
        found.meters.append(LocalMeter("cpumodel", {"type": "cpumodel"}, text))
    return found


def find_local_meters(sys_root: str | Path = "/sys", proc_root: str | Path = "/proc",
                      nvml: GpuChecker | None = None) -> list[LocalMeter]:
    """The meters of this machine as (driver, section, description), the CPU model last if needed."""
    return discover(sys_root, proc_root, nvml).meters


def _section(driver: str, sys_root: Path, **keys) -> dict:
    """A section; ``root`` only when sysfs is not at /sys."""
    out = {"type": driver}
    if sys_root != Path("/sys"):
        out["root"] = str(sys_root)
    return out | keys


def _rapl(found: Discovery, sys_root: Path, opener: Opener) -> bool:
    """RAPL zones, if any can be read; True when they can."""
    try:
        zones = find_zones(Sysfs(sys_root, opener=opener, probe="rapl"))
    except DriverError as exc:
        found.notes.append(f"rapl: RAPL zones here but not listed: {exc}")
        return False
    if not zones:
        return False
    keys = ", ".join(z.key for z in zones)
    section = _section("rapl", sys_root)
    try:
        RaplDriver(RaplConfig.model_validate(section), site="local", opener=opener).read()
    except MeterPermissionError as exc:
        found.notes.append(f"rapl: RAPL zones here ({keys}) but this user may not read them: {exc}")
        return False
    except DriverError as exc:
        found.notes.append(f"rapl: RAPL zones here ({keys}) but reading them failed: {exc}")
        return False
    found.meters.append(LocalMeter("rapl", section, f"rapl ({keys})"))
    found.measured_by.append("rapl")
    return True


def _hwmon(found: Discovery, sys_root: Path, opener: Opener, *, skip: set[str]) -> None:
    """One section per hwmon chip with power or energy sensors that can be read."""
    try:
        sensors = find_sensors(Sysfs(sys_root, opener=opener, probe="hwmon"))
    except DriverError as exc:
        found.notes.append(f"hwmon: {exc}")
        return
    chips: dict[str, list] = {}
    for s in sensors:
        chips.setdefault(s.chip_id, []).append(s)
    twins = sorted(c for c, mine in chips.items() if mine[0].chip in skip)
    if twins:
        found.notes.append(f"hwmon: {', '.join(twins)} left out: the same CPU counters as rapl")
    for chip_id in twins:
        del chips[chip_id]
    for chip_id, mine in chips.items():
        section = _section("hwmon", sys_root, chips=[chip_id])
        what = ", ".join(s.label or s.stem for s in mine)
        try:
            HwmonDriver(HwmonConfig.model_validate(section), site="local", opener=opener).read()
        except DriverError as exc:
            found.notes.append(f"hwmon: chip {chip_id} ({what}) could not be read: {exc}")
            continue
        gpu = mine[0].chip in GPU_CHIPS
        text = f"hwmon {chip_id} ({what}{', a GPU' if gpu else ''})"
        found.meters.append(LocalMeter("hwmon", section, text))
        if not gpu:
            found.measured_by.append(f"hwmon {chip_id}")


def _batteries(found: Discovery, sys_root: Path, opener: Opener) -> None:
    """One section per system battery that gives power or energy."""
    try:
        folders = find_batteries(Sysfs(sys_root, opener=opener, probe="battery"))
    except DriverError as exc:
        found.notes.append(f"battery: {exc}")
        return
    for folder in folders:
        section = _section("battery", sys_root, batteries=[folder.name])
        try:
            BatteryDriver(BatteryConfig.model_validate(section), site="local", opener=opener).read()
        except DriverError as exc:
            found.notes.append(f"battery: {folder.name} could not be read: {exc}")
            continue
        text = f"battery {folder.name} (the machine's power while it runs on battery)"
        found.meters.append(LocalMeter("battery", section, text))


def nvidia_gpus(proc_root: str | Path = "/proc") -> list[str]:
    """The NVIDIA GPUs the ``nvml`` driver reads here: [] without NVIDIA's kernel driver.

    Raises whatever the nvml driver raises when GPUs are there but cannot be read.
    """
    folder = Path(proc_root) / "driver" / "nvidia" / "gpus"
    if not folder.is_dir() or not any(folder.iterdir()):
        return []
    from . import plugins

    cls = plugins.load("nvml")
    driver = cls(cls.Config.model_validate({"type": "nvml"}), site="local")
    try:
        batch = driver.read()
    finally:
        driver.close()
    return sorted({s.probe for s in batch.series})


def _gpus(found: Discovery, proc_root: Path, checker: GpuChecker | None) -> None:
    try:
        gpus = checker() if checker is not None else nvidia_gpus(proc_root)
    except Exception as exc:  # noqa: BLE001 - an optional GPU library failing in any way means "no GPU"
        found.notes.append(f"nvml: NVIDIA GPUs here but the nvml driver cannot read them: {exc}")
        return
    if gpus:
        found.meters.append(LocalMeter("nvml", {"type": "nvml"},
                                       f"nvml ({len(gpus)} NVIDIA GPU{'s' if len(gpus) > 1 else ''})"))


def cpu_model(proc_root: Path) -> str:
    """The CPU's model name from ``<proc>/cpuinfo``, or "" (only for the text)."""
    try:
        text = (proc_root / "cpuinfo").read_text(errors="replace")
    except OSError:
        return ""
    return parse_cpuinfo(text)[0]
