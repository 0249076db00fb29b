"""A laptop's power drawn from its battery, and the energy stored in it, from power_supply sysfs.

Each battery is a folder ``/sys/class/power_supply/<name>/`` (``BAT0``) with ``type`` =
``Battery``.  The kernel gives ``power_now`` (µW) or ``current_now`` (µA) and ``voltage_now``
(µV), ``energy_now`` (µWh) or ``charge_now`` (µAh), and ``status``: ``Charging``,
``Discharging``, ``Not charging``, ``Full`` or ``Unknown``.  Drivers disagree on the sign of
``power_now`` and ``current_now``: the direction is taken from ``status``, never from the sign.

Published per battery, probe ``<site>.<node>-<name>`` (``local.laptop-bat0``):

* ``power`` (W gauge): what the machine draws from the battery, **only while it discharges**.
  On mains power the battery does not measure the machine, and nothing is published (a gap, not
  a zero).
* ``battery_power`` (W gauge): the battery's charge rate, signed: positive while charging,
  negative while discharging, 0 when full or not charging; none when the status is Unknown.
* ``battery_energy`` (J gauge): the energy stored now.  It is a level that goes up and down,
  not a consumption counter, so it is not published as ``energy``.

``power_now`` and ``energy_now`` are ``measured``; figures computed from current and voltage,
or from charge and the design voltage, are ``derived``.  Peripheral batteries (a mouse's, with
``scope`` = ``Device``) and empty slots (``present`` = 0) are left out unless named.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..errors import MeterReplyError
from ..sample import Batch, Probe, Sample, now_ms
from .sysfs import Opener, Sysfs, SysfsConfig, SysfsDriver, read_file, slug

SIGN = {"Charging": 1.0, "Discharging": -1.0, "Full": 0.0, "Not charging": 0.0}

SAMPLE = """\
# A laptop's battery: the power the machine draws while it runs on the battery, the charge rate
# and the energy stored.  On mains power, nothing in a battery measures the machine.
[drivers.battery]
type = "battery"
period = 5.0                  # s between reads (batteries update every few seconds)
root = "/sys/"                # where sysfs is mounted
batteries = []                # [] = every system battery; or by name: ["BAT0", "BAT1"]
# node = "laptop"             # probes are <site>.<node>-bat0; default: the host name
"""


class BatteryConfig(SysfsConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "battery"``."""

    type: Literal["battery"] = "battery"
    batteries: list[str] = Field([], description="the batteries to read, by folder name under "
                                                 "class/power_supply (BAT0); empty: every system battery")


def find_batteries(fs: Sysfs) -> list[Path]:
    """The folders of the system's batteries: type Battery, not a peripheral's, present."""
    out = []
    for folder in fs.folders(fs.path("class", "power_supply")):
        if fs.optional(folder / "type") != "Battery" or fs.optional(folder / "scope") == "Device":
            continue
        if fs.optional(folder / "present") == "0":
            continue
        out.append(folder)
    return out


class BatteryDriver(SysfsDriver):
    """Laptop batteries: power drawn while discharging (W), charge rate (W), stored energy (J)."""

    Config = BatteryConfig
    SAMPLE = SAMPLE

    def __init__(self, config: BatteryConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 opener: Opener = read_file) -> None:
        super().__init__(config, site=site, clock=clock, opener=opener)
        self._folders: list[Path] | None = None

    def batteries(self) -> list[Path]:
        """The battery folders this driver reads (found once per instance)."""
        if self._folders is None:
            base = self.fs.path("class", "power_supply")
            if not self.config.batteries:
                self._folders = find_batteries(self.fs)
                if not self._folders:
                    raise MeterReplyError(f"no battery under {base} (a machine on mains power only has none)",
                                          probe=self.node)
            else:
                self._folders = [self._named(base / name) for name in self.config.batteries]
        return self._folders

    def _named(self, folder: Path) -> Path:
        kind = self.fs.optional(folder / "type")
        if kind is None:
            here = ", ".join(f.name for f in find_batteries(self.fs)) or "none"
            raise MeterReplyError(f"no power supply {folder.name!r} under {folder.parent}; "
                                  f"batteries here: {here}", probe=self.node)
        if kind != "Battery":
            raise MeterReplyError(f"{folder} is a {kind} power supply, not a battery", probe=self.node)
        return folder

    def probe_id(self, folder: Path) -> str:
        return self.node_probe(slug(folder.name))

    def probes(self) -> list[Probe]:
        return [self.probe(self.probe_id(f), f"battery {f.name} of {self.node}: power drawn while "
                                             "discharging, charge rate, stored energy")
                for f in self.batteries()]

    def _number(self, path: Path) -> int | None:
        """The integer in an optional file (None when the kernel does not publish it)."""
        return None if self.fs.optional(path) is None else self.fs.integer(path)

    def _power(self, folder: Path) -> tuple[float, str] | None:
        """|power| in W and its provenance, or None."""
        uw = self._number(folder / "power_now")
        if uw is not None:
            return abs(uw) / 1e6, "measured"
        ua, uv = self._number(folder / "current_now"), self._number(folder / "voltage_now")
        if ua is not None and uv is not None:
            return abs(ua) * abs(uv) / 1e12, "derived"  # µA x µV = 1e-12 W
        return None

    def _energy(self, folder: Path) -> tuple[float, str] | None:
        """Stored energy in J and its provenance, or None."""
        uwh = self._number(folder / "energy_now")
        if uwh is not None:
            return uwh * 3600 / 1e6, "measured"  # 1 µWh = 3.6e-3 J
        uah = self._number(folder / "charge_now")
        uv = self._number(folder / "voltage_min_design")
        uv = uv if uv is not None else self._number(folder / "voltage_now")
        if uah is not None and uv is not None:
            return uah * uv * 3600 / 1e12, "derived"  # µAh x µV = 1e-12 Wh
        return None

    def read(self) -> Batch:
        found = []
        for folder in self.batteries():
            if self.fs.optional(folder / "present") == "0":
                raise MeterReplyError(f"{folder}: the battery slot is empty (present = 0)", probe=self.node)
            status = self.fs.optional(folder / "status") or "Unknown"
            power, energy = self._power(folder), self._energy(folder)
            if power is None and energy is None:
                raise MeterReplyError(f"{folder} has neither power_now, current_now and voltage_now, nor "
                                      "energy_now or charge_now: nothing to read", probe=self.node)
            found.append((self.probe_id(folder), status, power, energy))
        t = self.clock() / 1000.0
        samples = []
        for probe, status, power, energy in found:
            if power is not None:
                watts, provenance = power
                if status == "Discharging":
                    samples.append(Sample(probe, "power", t, watts, "W", "gauge", provenance))
                if status in SIGN:
                    rate = SIGN[status] * watts or 0.0  # no -0.0
                    samples.append(Sample(probe, "battery_power", t, rate, "W", "gauge", provenance))
            if energy is not None:
                samples.append(Sample(probe, "battery_energy", t, energy[0], "J", "gauge", energy[1]))
        return Batch.of(samples)
