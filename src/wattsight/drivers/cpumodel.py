"""wattsight driver that models a host's power from its CPU utilisation, where no meter exists.

    power = base + idle + (max - idle) x shape(utilisation)

The utilisation comes from the ``cpu`` line of ``/proc/stat`` between two reads (the first read
has no previous one: it uses the average since boot, so that ``wattsight probe cpumodel --once``
prints a value without the driver sleeping).  ``idle`` and ``max`` come from the configuration,
or from the CPU model in ``/proc/cpuinfo`` and the table of :mod:`wattsight.drivers.cpu_tdp`.
Every series is ``provenance = "modelled"``, and each probe's description says it is a model and
which table entry it used.  The energy counter is the model's power integrated between reads.

Both files are read through ``opener`` (a function of a path returning its text; default
:func:`read_text`), so a test can make them raise :class:`PermissionError` even as root.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..errors import MeterPermissionError, MeterReplyError, MeterUnreachable
from ..sample import Batch, Probe, Sample, now_ms
from . import cpu_tdp
from .base import Driver, DriverConfig, FilePath, site_probe

#: Reads a whole file as text; the one contact with the proc file system's contents.
Opener = Callable[[Path], str]


def read_text(path: Path) -> str:
    """The text of a proc file (the default opener)."""
    return path.read_text()


@dataclass(frozen=True)
class HostModel:
    """What the model knows of a host: its CPUs and the watts it assigns them."""

    model_name: str
    sockets: int
    cpus: int
    virtual: bool
    idle_watts: float
    max_watts: float
    source: str  # how idle and max were obtained

    def describe(self) -> str:
        vm = ", virtual machine" if self.virtual else ""
        return (f"{self.model_name!r}, {self.sockets} socket(s), {self.cpus} logical CPU(s){vm}: "
                f"{self.source} -> idle {self.idle_watts:.1f} W, full load {self.max_watts:.1f} W")


def read_cpuinfo(proc: Path, opener: Opener = read_text) -> tuple[str, int, int, bool]:
    """(model name, sockets, logical CPUs, is a virtual machine) from ``<proc>/cpuinfo``."""
    model, sockets, cpus, virtual = parse_cpuinfo(_read(proc / "cpuinfo", opener))
    return model or "unknown CPU", sockets, cpus, virtual


def parse_cpuinfo(text: str) -> tuple[str, int, int, bool]:
    """(model name or "", sockets, logical CPUs, is a virtual machine) from the text of a cpuinfo."""
    model, sockets, cpus, virtual = None, set(), 0, False
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            cpus += 1
        elif key in ("model name", "Model", "cpu model") and model is None:  # x86, ARM, MIPS
            model = " ".join(value.split())
        elif key == "physical id":
            sockets.add(value)
        elif key == "flags" and "hypervisor" in value.split():
            virtual = True
    return model or "", max(len(sockets), 1), max(cpus, 1), virtual


def host_model(proc_root: str | Path = "/proc", *, idle_watts: float | None = None,
               max_watts: float | None = None, sockets: int | None = None,
               opener: Opener = read_text) -> HostModel:
    """The model of the host whose proc file system is at ``proc_root`` (a pure lookup: no sleep)."""
    name, found_sockets, cpus, virtual = read_cpuinfo(Path(proc_root), opener)
    sockets = sockets or found_sockets
    if idle_watts is not None and max_watts is not None:
        return HostModel(name, sockets, cpus, virtual, idle_watts, max_watts,
                         "configured `idle_watts`, `max_watts`")
    entry = cpu_tdp.lookup(name)
    if entry is None:
        lo, hi = cpu_tdp.DEFAULT_IDLE_PER_CPU, cpu_tdp.DEFAULT_MAX_PER_CPU
        return HostModel(name, sockets, cpus, virtual, lo * cpus, hi * cpus,
                         f"no table entry matches: default {lo} W idle and {hi} W at full load per "
                         "logical CPU (Cloud Carbon Footprint's average)")
    key, tdp, threads = entry
    share = cpus / threads if virtual else float(sockets)
    how = f"this VM's {cpus} of {threads} threads" if virtual else f"{sockets} package(s)"
    return HostModel(name, sockets, cpus, virtual, cpu_tdp.IDLE_RATIO * tdp * share,
                     cpu_tdp.MAX_RATIO * tdp * share,
                     f"table entry {key!r} (TDP {tdp:g} W, {threads} threads per package) for {how}, idle "
                     f"{cpu_tdp.IDLE_RATIO:.0%} and full load {cpu_tdp.MAX_RATIO:.0%} of TDP (Teads 2021)")


def describe_host(proc_root: str | Path = "/proc") -> str:
    """One line on what the CPU model would assume for this host (for local discovery)."""
    return host_model(proc_root).describe()


def read_stat(proc: Path, opener: Opener = read_text) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from the ``cpu`` line of ``<proc>/stat``.

    Busy is user + nice + system + irq + softirq (guest time is inside user and nice); idle,
    iowait and steal (time the hypervisor gave to others) are not busy."""
    text = _read(proc / "stat", opener)
    line = next((ln for ln in text.splitlines() if ln.startswith("cpu ")), None)
    try:
        user, nice, system, idle, iowait, irq, softirq, *rest = (int(x) for x in line.split()[1:])
    except (AttributeError, ValueError):
        raise MeterReplyError(f"{proc / 'stat'} has no valid 'cpu' line (got {str(line)[:80]!r})",
                              probe=str(proc)) from None
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + (rest[0] if rest else 0)


def _read(path: Path, opener: Opener) -> str:
    try:
        return opener(path)
    except FileNotFoundError:
        raise MeterUnreachable(f"{path} does not exist: is `proc_path` ({path.parent}) a proc file system?",
                               probe=str(path.parent)) from None
    except PermissionError:
        raise MeterPermissionError(f"{path} may not be read by this user: let it read the file, or point "
                                   "`proc_path` at a proc file system it may read",
                                   probe=str(path.parent)) from None


def shape(utilisation: float, curve: str) -> float:
    """The fraction of the way from idle to full load at ``utilisation`` (0..1)."""
    u = min(max(utilisation, 0.0), 1.0)
    if curve == "linear":
        return u
    lo, hi = cpu_tdp.TEADS_TDP[0], cpu_tdp.TEADS_TDP[-1]
    return (float(np.interp(u, cpu_tdp.TEADS_LOAD, cpu_tdp.TEADS_TDP)) - lo) / (hi - lo)


SAMPLE = """\
# Modelled host power where no meter exists: idle + (max - idle) x CPU utilisation (/proc/stat).
# Published as provenance "modelled", never as a measurement.
[drivers.cpu-model]
type = "cpumodel"
period = 5.0                # s between reads
# name = "taurus-7"         # probe name; default: this host's short name
proc_path = "/proc"         # the proc file system to read (e.g. "/host/proc" in a container)
# idle_watts = 95.0         # W at 0 % and at 100 % CPU, if known (e.g. from a SPECpower result);
# max_watts = 310.0         # default: from the CPU model's TDP (idle 12 %, full load 102 %)
# sockets = 2               # CPU packages; default: counted in /proc/cpuinfo
base_watts = 0.0            # W added for the rest of the host (memory, disks, fans, PSU losses)
curve = "linear"            # "linear", or "teads": Teads' measured curve between idle and max
metrics = ["power", "energy"]   # power (W) and the model's energy (J counter, from 0 at start)
"""


class CpuModelConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "cpumodel"``."""

    type: Literal["cpumodel"] = "cpumodel"
    name: str | None = Field(None, description="probe name; default: this host's short name")
    proc_path: FilePath = Field(Path("/proc"), description="the proc file system to read")
    idle_watts: float | None = Field(None, ge=0,
                                     description="W at 0 % CPU; default: from the CPU model's TDP")
    max_watts: float | None = Field(None, ge=0,
                                    description="W at 100 % CPU; default: from the CPU model's TDP")
    sockets: int | None = Field(None, ge=1, description="CPU packages; default: counted in /proc/cpuinfo")
    base_watts: float = Field(0.0, ge=0, description="W added for the rest of the host (memory, disks, fans)")
    curve: Literal["linear", "teads"] = Field("linear",
                                              description="shape between idle and max: linear or teads")
    metrics: list[Literal["power", "energy"]] = Field(["power", "energy"], min_length=1,
                                                      description="power (W) and/or energy (J counter)")

    @model_validator(mode="after")
    def _check(self) -> CpuModelConfig:
        if (self.idle_watts is None) != (self.max_watts is None):
            raise ValueError("set both `idle_watts` and `max_watts`, or neither (then the CPU table is used)")
        if self.idle_watts is not None and self.max_watts < self.idle_watts:
            raise ValueError(f"`max_watts` ({self.max_watts}) is below `idle_watts` ({self.idle_watts})")
        if self.name is not None:
            site_probe(self.name, "site")
        return self


class CpuModelDriver(Driver):
    """Modelled host power (no meter): idle + (max - idle) x CPU utilisation, from a table of CPUs."""

    Config = CpuModelConfig
    SAMPLE = SAMPLE

    def __init__(self, config: CpuModelConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 proc_root: Path | None = None, host: str | None = None, opener: Opener = read_text) -> None:
        super().__init__(config, site=site, clock=clock)
        self.proc = Path(proc_root if proc_root is not None else config.proc_path)
        self.opener = opener
        name = config.name or host or socket.gethostname().split(".")[0]
        self.probe = site_probe(name, site)
        self._model: HostModel | None = None
        self._last: tuple[int, int, int] | None = None  # busy, total jiffies, time in ms
        self._utilisation = 0.0
        self.energy = 0.0  # J, the model's power integrated since the first read

    @property
    def model(self) -> HostModel:
        if self._model is None:
            cfg = self.config
            self._model = host_model(self.proc, idle_watts=cfg.idle_watts, max_watts=cfg.max_watts,
                                     sockets=cfg.sockets, opener=self.opener)
        return self._model

    def power(self, utilisation: float) -> float:
        m = self.model
        return self.config.base_watts + m.idle_watts + (m.max_watts - m.idle_watts) * shape(utilisation,
                                                                                               self.config.curve)

    def probes(self) -> list[Probe]:
        cfg = self.config
        base = f" + base {cfg.base_watts:g} W" if cfg.base_watts else ""
        text = (f"modelled, not measured: power = idle + (max - idle) x {cfg.curve} CPU utilisation{base}; "
                + self.model.describe())
        return [Probe(self.probe, driver=cfg.type, period=cfg.period, description=text)]

    def read(self) -> Batch:
        busy, total = read_stat(self.proc, self.opener)
        t = int(self.clock())
        if self._last is None:
            self._utilisation = busy / total if total else 0.0  # first read: the average since boot
        else:
            d_busy, d_total = busy - self._last[0], total - self._last[1]
            if d_total > 0 and d_busy >= 0:  # else: within one tick of the last read; keep its value
                self._utilisation = d_busy / d_total
            self.energy += self.power(self._utilisation) * max(t - self._last[2], 0) / 1000.0
        self._last = (busy, total, t)
        samples = []
        if "power" in self.config.metrics:
            samples.append(Sample(self.probe, "power", t / 1000.0, self.power(self._utilisation), "W",
                                  "gauge", "modelled"))
        if "energy" in self.config.metrics:
            samples.append(Sample(self.probe, "energy", t / 1000.0, self.energy, "J", "counter", "modelled"))
        return Batch.of(samples)
