"""RAPL energy counters of this machine's CPU packages, DRAM and platform, from powercap sysfs.

The kernel's powercap framework publishes each RAPL domain as a *zone* folder under
``/sys/class/powercap/``: ``intel-rapl:N`` (a package, or ``psys``, the platform) with subzones
``intel-rapl:N:M`` (``core``, ``uncore``, ``dram``).  Each zone has ``name``, ``energy_uj`` (a
counter in µJ) and ``max_energy_range_uj`` (where it wraps round to 0).  AMD processors (family
17h and later) and Hygon ones use the same ``intel-rapl`` zones, with ``package-N`` and ``core``
only.

Counters are published as they are: energy in J, kind ``wrapping_counter(range)``, so the energy
maths adds the part before a wrap.  No power is published: the API derives it from the counter.

The same package may appear a second time through another interface (``intel-rapl-mmio:N``,
read over MMIO instead of MSRs).  Zones are keyed by what they measure (``package-0``,
``dram-0``, ``psys``); the MSR zones (``intel-rapl:*``) are kept first, and a zone of another
interface only where no MSR zone has that key.  Nothing is ever counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import MeterReplyError
from ..sample import Batch, Probe, Series, now_ms, wrapping_counter
from .sysfs import Opener, Sysfs, SysfsConfig, SysfsDriver, natural_key, read_file, slug

#: A zone folder: ``intel-rapl:0``, ``intel-rapl:0:1``, ``intel-rapl-mmio:0``.
ZONE = re.compile(r"(intel-rapl(?:-[a-z]+)?):(\d+)(?::(\d+))?")
MSR = "intel-rapl"

WHAT = {
    "package": "the CPU package {n} (cores, caches, uncore)",
    "core": "the cores of CPU package {n} (part of the package)",
    "uncore": "the uncore of CPU package {n}, often its integrated GPU (part of the package)",
    "dram": "the memory of CPU package {n}",
    "psys": "the whole platform (SoC, memory, chipset: includes the packages)",
}

SAMPLE = """\
# This machine's RAPL energy counters (Intel since Sandy Bridge, AMD since Zen): CPU packages,
# DRAM and platform, read from powercap sysfs.  Since Linux 5.10 only root may read them:
# see docs/drivers/rapl.md for the udev rule that lets another user.
[drivers.rapl]
type = "rapl"
period = 1.0                  # s between reads (the counters wrap after minutes: keep it under 60)
root = "/sys/"                # where sysfs is mounted
zones = []                    # [] = every zone; or ids and kinds: ["package", "dram-0", "psys"]
# node = "taurus-7"           # probes are <site>.<node>-package-0, ...; default: the host name
"""


class RaplConfig(SysfsConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "rapl"``."""

    type: Literal["rapl"] = "rapl"
    zones: list[str] = Field([], description="the zones to publish, by id (package-0, dram-0, psys) or kind "
                                             "(package, core, uncore, dram, psys); empty: every zone")


@dataclass(frozen=True)
class Zone:
    """One RAPL zone: where it is, through which interface, and what it measures."""

    path: Path
    interface: str  # "intel-rapl" (MSR), "intel-rapl-mmio", ...
    name: str  # the kernel's name: package-0, package-0-die-1, dram, core, uncore, psys
    key: str  # what it measures, unique on the machine: package-0, dram-0, psys

    @property
    def kind(self) -> str:
        return self.name.split("-", 1)[0]

    @property
    def package(self) -> str:
        """The package part of the key (``0``, ``0-die-1``), or "" for psys."""
        return self.key.split("-", 1)[1] if "-" in self.key else ""

    def describe(self) -> str:
        template = WHAT.get(self.kind)
        what = template.format(n=self.package) if template else f"the RAPL domain {self.name}"
        return f"RAPL energy of {what} ({self.path.name})"


def permission_fix(path: Path) -> str:
    """What to do when a powercap file may not be read (Linux >= 5.10 restricts energy_uj to root)."""
    base, name = path.parent.parent, path.name
    return (f"since Linux 5.10 (CVE-2020-8694) only root may read RAPL counters. Run wattsight as root; "
            f"or, until the next reboot, `sudo chmod o+r {base}/intel-rapl*/{name}`; or for good, let the "
            f"group powercap read them: `sudo groupadd -f powercap && sudo usermod -aG powercap <user>`, "
            f"the udev rule `SUBSYSTEM==\"powercap\", KERNEL==\"intel-rapl*:*\", "
            f"RUN+=\"/bin/chgrp powercap /sys%p/{name}\", RUN+=\"/bin/chmod g+r /sys%p/{name}\"` "
            "in /etc/udev/rules.d/60-powercap.rules, "
            f"then `sudo udevadm trigger --subsystem-match=powercap` (docs/drivers/rapl.md)")


def find_zones(fs: Sysfs) -> list[Zone]:
    """Every RAPL zone under ``<root>/class/powercap``, each domain once (MSR zones preferred)."""
    base = fs.path("class", "powercap")
    folders = fs.folders(base, ZONE.pattern)
    names = {f.name: fs.text(f / "name", what="the zone's name") for f in folders}
    by_interface: dict[str, list[Zone]] = {}
    for folder in folders:
        interface, top, sub = ZONE.fullmatch(folder.name).groups()
        name = names[folder.name]
        key = slug(name)
        if sub is not None:
            parent = names.get(f"{interface}:{top}", f"package-{top}")
            key = f"{key}-{slug(parent).removeprefix('package-')}"
        by_interface.setdefault(interface, []).append(Zone(folder, interface, name, key))
    chosen: dict[str, Zone] = {}
    for interface in sorted(by_interface, key=lambda i: (i != MSR, i)):
        mine: dict[str, Zone] = {}
        for zone in by_interface[interface]:
            key = zone.key if zone.key not in mine else f"{zone.key}-{zone.path.name.rsplit(':', 1)[1]}"
            mine[key] = Zone(zone.path, zone.interface, zone.name, key)
        for key, zone in mine.items():
            chosen.setdefault(key, zone)  # another interface's copy of a domain already read: skipped
    return sorted(chosen.values(), key=lambda z: natural_key(z.path))


def select(zones: list[Zone], wanted: list[str], *, root: Path, probe: str) -> list[Zone]:
    """The zones named in ``wanted`` (ids or kinds); every entry must match one."""
    if not wanted:
        return zones
    unknown = [w for w in wanted if not any(w in (z.key, z.kind) for z in zones)]
    if unknown:
        raise MeterReplyError(f"no RAPL zone {', '.join(map(repr, unknown))} under {root}/class/powercap; "
                              f"zones here: {', '.join(z.key for z in zones)}", probe=probe)
    return [z for z in zones if z.key in wanted or z.kind in wanted]


class RaplDriver(SysfsDriver):
    """RAPL (Intel, AMD) energy counters of CPU packages, DRAM and platform, from powercap sysfs."""

    Config = RaplConfig
    SAMPLE = SAMPLE

    permission_fix = staticmethod(permission_fix)

    def __init__(self, config: RaplConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 opener: Opener = read_file) -> None:
        super().__init__(config, site=site, clock=clock, opener=opener)
        self._zones: list[Zone] | None = None
        self._series: tuple[Series, ...] | None = None
        self._ranges_uj: np.ndarray | None = None

    def zones(self) -> list[Zone]:
        """The zones this driver reads (found once per instance: the runner makes a new one on errors)."""
        if self._zones is None:
            zones = find_zones(self.fs)
            if not zones:
                raise MeterReplyError(
                    f"no RAPL zones under {self.fs.path('class', 'powercap')}: RAPL needs an Intel (Sandy "
                    "Bridge or later) or AMD (Zen or later) x86 CPU and the kernel module intel_rapl_msr "
                    "(`sudo modprobe intel_rapl_msr`); virtual machines rarely have it", probe=self.node)
            self._zones = select(zones, self.config.zones, root=self.fs.root, probe=self.node)
        return self._zones

    def probe_id(self, zone: Zone) -> str:
        return self.node_probe(zone.key)

    def probes(self) -> list[Probe]:
        return [self.probe(self.probe_id(z), f"{z.describe()} on {self.node}") for z in self.zones()]

    def _prepare(self) -> None:
        """Read each zone's wrap range (constant) and make its series."""
        zones = self.zones()
        ranges = [self.fs.integer(z.path / "max_energy_range_uj", what="the counter's range", minimum=1)
                  for z in zones]
        self._ranges_uj = np.asarray(ranges, dtype=np.float64)
        self._series = tuple(Series(self.probe_id(z), "energy", "J", wrapping_counter(r / 1e6), "measured")
                             for z, r in zip(zones, ranges, strict=True))

    def read(self) -> Batch:
        if self._series is None:
            self._prepare()
        zones = self.zones()
        raw = np.asarray([self.fs.integer(z.path / "energy_uj", what="the energy counter", minimum=0)
                          for z in zones], dtype=np.float64)
        t = int(self.clock())
        over = np.flatnonzero(raw > self._ranges_uj)
        if len(over):
            z = zones[int(over[0])]
            raise MeterReplyError(f"{z.path}/energy_uj holds {raw[over[0]]:.0f} µJ, above the zone's "
                                  f"max_energy_range_uj {self._ranges_uj[over[0]]:.0f}: out of range",
                                  probe=self.node)
        n = len(zones)
        return Batch(self._series, np.arange(n, dtype=np.uint32), np.full(n, t, dtype=np.int64), raw / 1e6)
