"""Power and energy sensors of the kernel's hwmon chips: ACPI power meters, GPUs, CPU energy.

Each chip is a folder ``/sys/class/hwmon/hwmonN/`` with a ``name`` (``acpi_power_meter``,
``amdgpu``, ``i915``, ``amd_energy``...) and sensor files: ``powerN_input`` (instantaneous) or
``powerN_average`` (µW), ``energyN_input`` (a counter in µJ), each optionally labelled by
``powerN_label`` / ``energyN_label``.  ``hwmonN`` numbers change between boots: chips are found
by name, sensors by label.

Published per sensor: ``power`` (W gauge, from ``powerN_input``, or ``powerN_average`` when
there is no input) and ``energy`` (J counter, from ``energyN_input``).  A power and an energy
sensor with the same label feed the same probe, ``<site>.<node>-<chip>-<label>``; a sensor
without a label is named by its file (``power1``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import MeterReplyError
from ..sample import Batch, Probe, Series, now_ms
from .sysfs import Opener, Sysfs, SysfsConfig, SysfsDriver, default_fix, read_file, slug

SENSOR = re.compile(r"(power|energy)(\d+)_(input|average)")
#: metric, unit, kind and the divisor from the kernel's unit (µW, µJ) to SI.
METRIC = {"power": ("power", "W", "gauge", 1e6), "energy": ("energy", "J", "counter", 1e6)}

SAMPLE = """\
# Power and energy sensors of this machine's hwmon chips (ACPI power meter, GPUs, CPU energy).
[drivers.hwmon]
type = "hwmon"
period = 1.0                  # s between reads
root = "/sys/"                # where sysfs is mounted
chips = ["acpi_power_meter"]  # chips by their `name`; [] = every chip with power or energy sensors
sensors = []                  # sensors by label or file (["PPT", "power1"]); [] = all of them
# node = "taurus-7"           # probes are <site>.<node>-<chip>-<label>; default: the host name
"""


class HwmonConfig(SysfsConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "hwmon"``."""

    type: Literal["hwmon"] = "hwmon"
    chips: list[str] = Field([], description="the chips to read, by the `name` file of hwmonN "
                                             "(acpi_power_meter, amdgpu) or as in probe ids (amdgpu-1); "
                                             "empty: every chip")
    sensors: list[str] = Field([], description="the sensors to read, by label (PPT) or file (power1); "
                                               "empty: every power and energy sensor")


@dataclass(frozen=True)
class Sensor:
    """One power or energy sensor of a chip."""

    file: Path  # the value file: .../hwmon3/power1_input
    chip: str  # the chip's `name`
    chip_id: str  # the chip's name in probe ids: the name, with -1, -2... when several chips share it
    stem: str  # power1, energy2
    label: str | None
    metric: str  # power | energy

    @property
    def probe_name(self) -> str:
        return f"{self.chip_id}-{slug(self.label) if self.label else self.stem}"

    def matches(self, wanted: str) -> bool:
        return wanted in (self.stem, self.label, slug(self.label or self.stem))


def permission_fix(path: Path) -> str:
    return (default_fix(path) + "; some chips, such as amd_energy, are root-only since Linux 5.10 "
            "(CVE-2020-8694): docs/drivers/hwmon.md gives a udev rule that survives reboots")


def _chip_folder(chip: Path) -> Path:
    """Where a chip's files are: hwmonN itself, or hwmonN/device on old kernels."""
    return chip if (chip / "name").exists() or not (chip / "device" / "name").exists() else chip / "device"


def _chips(fs: Sysfs) -> list[tuple[Path, str, str]]:
    """(attribute folder, name, id in probe ids) of every chip, ids unique and stable across boots."""
    found = []
    for chip in fs.folders(fs.path("class", "hwmon"), r"hwmon\d+"):
        folder = _chip_folder(chip)
        name = fs.optional(folder / "name") or chip.name
        device = chip / "device"
        found.append((folder, name, os.path.realpath(device) if device.exists() else str(chip)))
    out = []
    for folder, name, where in found:
        twins = sorted(w for _, n, w in found if n == name)
        chip_id = slug(name) if len(twins) == 1 else f"{slug(name)}-{twins.index(where) + 1}"
        out.append((folder, name, chip_id))
    return out


def find_sensors(fs: Sysfs) -> list[Sensor]:
    """Every power and energy sensor of every chip (input preferred to average for power)."""
    sensors = []
    for folder, name, chip_id in _chips(fs):
        files: dict[tuple[str, int], dict[str, Path]] = {}
        for entry in folder.iterdir():
            m = SENSOR.fullmatch(entry.name)
            if m and entry.is_file():
                files.setdefault((m[1], int(m[2])), {})[m[3]] = entry
        for (metric, n), found in sorted(files.items(), key=lambda kv: (kv[0][0] != "power", kv[0][1])):
            file = found.get("input") or (found.get("average") if metric == "power" else None)
            if file is None:
                continue
            label = fs.optional(folder / f"{metric}{n}_label")
            sensors.append(Sensor(file, name, chip_id, f"{metric}{n}", label or None, metric))
    return sensors


def select(sensors: list[Sensor], cfg: HwmonConfig, *, root: Path, probe: str) -> list[Sensor]:
    """The sensors the configuration asks for; every chip and sensor named must exist."""
    if cfg.chips:
        unknown = [c for c in cfg.chips if not any(c in (s.chip, s.chip_id) for s in sensors)]
        if unknown:
            here = ", ".join(sorted({s.chip_id for s in sensors})) or "none"
            names = ", ".join(map(repr, unknown))
            raise MeterReplyError(f"no hwmon chip {names} with power or energy sensors under "
                                  f"{root}/class/hwmon; chips with them here: {here}", probe=probe)
        sensors = [s for s in sensors if s.chip in cfg.chips or s.chip_id in cfg.chips]
    if cfg.sensors:
        unknown = [w for w in cfg.sensors if not any(s.matches(w) for s in sensors)]
        if unknown:
            here = ", ".join(f"{s.chip_id}:{s.label or s.stem}" for s in sensors)
            raise MeterReplyError(f"no hwmon sensor {', '.join(map(repr, unknown))}; sensors here: {here}",
                                  probe=probe)
        sensors = [s for s in sensors if any(s.matches(w) for w in cfg.sensors)]
    return sensors


class HwmonDriver(SysfsDriver):
    """hwmon power (W) and energy (J) sensors: ACPI power meters, GPUs, CPU energy counters."""

    Config = HwmonConfig
    SAMPLE = SAMPLE

    permission_fix = staticmethod(permission_fix)

    def __init__(self, config: HwmonConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 opener: Opener = read_file) -> None:
        super().__init__(config, site=site, clock=clock, opener=opener)
        self._sensors: list[Sensor] | None = None
        self._series: tuple[Series, ...] = ()
        self._scale = np.zeros(0)

    def sensors(self) -> list[Sensor]:
        """The sensors this driver reads (found once per instance)."""
        if self._sensors is None:
            found = find_sensors(self.fs)
            if not found:
                where = self.fs.path("class", "hwmon")
                raise MeterReplyError(f"no hwmon power or energy sensor under {where} (many machines have "
                                      "only temperatures and fans there)", probe=self.node)
            self._sensors = select(found, self.config, root=self.fs.root, probe=self.node)
            self._series = tuple(Series(self.probe_id(s), *METRIC[s.metric][:3], "measured")
                                 for s in self._sensors)
            self._scale = np.asarray([METRIC[s.metric][3] for s in self._sensors])
        return self._sensors

    def probe_id(self, sensor: Sensor) -> str:
        return self.node_probe(sensor.probe_name)

    def probes(self) -> list[Probe]:
        out: dict[str, list[Sensor]] = {}
        for s in self.sensors():
            out.setdefault(self.probe_id(s), []).append(s)
        return [self.probe(pid, f"hwmon {ss[0].chip} {ss[0].label or ss[0].stem} on {self.node}: "
                                + " and ".join(s.file.name for s in ss))
                for pid, ss in out.items()]

    def read(self) -> Batch:
        sensors = self.sensors()
        raw = np.asarray([self.fs.integer(s.file, what=f"{s.chip} {s.metric} sensor") for s in sensors],
                         dtype=np.float64)
        t = int(self.clock())
        bad = [s for s, v in zip(sensors, raw, strict=True) if v < 0 and s.metric == "energy"]
        if bad:
            raise MeterReplyError(f"{bad[0].file} holds a negative energy counter: out of range",
                                  probe=self.node)
        n = len(sensors)
        return Batch(self._series, np.arange(n, dtype=np.uint32), np.full(n, t, dtype=np.int64),
                     raw / self._scale)
