"""Local mode: this machine's meters read directly, like Zeus, with no wattsight server.

Three sources, each read through the driver wattsight already has for it (imported when first
used, so that ``import wattsight.recorder`` stays light):

* RAPL (:mod:`wattsight.drivers.rapl`): CPU packages, their core and uncore parts, DRAM and the
  platform (psys), as energy counters; a counter that wraps (``max_energy_range_uj``) between two
  reads is followed: the recorder reads every ``poll_s`` while a window is open;
* NVIDIA GPUs (:mod:`wattsight.drivers.nvml`): each GPU's energy counter, through the driver's
  ``Nvml`` seam (``nvml=`` takes another, as tests do);
* the CPU model (:mod:`wattsight.drivers.cpumodel`), only when no RAPL zone can be read: the host's
  CPU power modelled from its utilisation, marked ``modelled``.

Whatever cannot be read is listed with the reason (``missing``), never guessed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .measurement import MEASURED, MODELLED, Part

log = logging.getLogger("wattsight.recorder")

#: RAPL zone kinds -> domain, and whether the zone counts in the total.
RAPL_DOMAINS = {"package": ("cpu", True), "dram": ("dram", True), "core": ("cpu-core", False),
                "uncore": ("uncore", False), "psys": ("platform", False)}
#: The domains a user expects; those no meter covers are reported as not available.
DOMAINS = ("cpu", "dram", "gpu", "wall")
NO_DRAM = "no RAPL dram zone on this CPU (AMD and client CPUs rarely have one)"
NO_WALL = ("no wall-power meter is read in local mode (RAPL and GPUs cover parts of the machine only); "
           "measure the whole host with a wattsight server and a PDU or BMC driver, then pass --api")


@dataclass(frozen=True)
class Meter:
    """One counter the local recorder reads: its part name, domain, provenance and method."""

    name: str
    domain: str
    provenance: str
    method: str
    in_total: bool = True


class LocalMeters:
    """This machine's energy counters as cumulative joules, read on demand (thread-safe)."""

    def __init__(self, sys_root: str | Path = "/sys", proc_root: str | Path = "/proc", nvml: Any = None,
                 *, site: str = "local", host: str = "local") -> None:
        self.sys_root, self.proc_root, self.nvml_seam = Path(sys_root), Path(proc_root), nvml
        self.site, self.host = site, host
        self.meters: list[Meter] = []
        self.missing: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._opened = False
        self._rapl: Any = None
        self._ranges: dict[str, float | None] = {}
        self._last: dict[str, float] = {}
        self._total: dict[str, float] = {}
        self._gpu: Any = None
        self._model: Any = None

    # -- finding the meters ---------------------------------------------------------------------
    def open(self) -> None:
        """Find the meters (once): RAPL, else the CPU model; GPUs; and the domains left uncovered."""
        with self._lock:
            if self._opened:
                return
            self._opened = True
            self._open_rapl()
            self._open_gpus()
            if not any(m.domain == "cpu" for m in self.meters):
                self._open_model()
            covered = {m.domain for m in self.meters}
            self.missing += [(d, NO_WALL) for d in DOMAINS if d == "wall" and d not in covered]
            self._read_all()  # the baseline

    def _open_rapl(self) -> None:
        from ..drivers.rapl import RaplConfig, RaplDriver
        from ..errors import DriverError
        from ..sample import counter_range

        driver = RaplDriver(RaplConfig.model_validate({"type": "rapl", "root": str(self.sys_root)}),
                            site=self.site)
        driver.node = self.host
        try:
            zones = driver.zones()
            batch = driver.read()
        except DriverError as exc:
            why = _first_sentence(exc)
            if type(exc).__name__ == "MeterPermissionError":
                why += " (since Linux 5.10 only root may read RAPL counters: see docs/drivers/rapl.md)"
            self.missing += [("cpu", f"RAPL: {why}"), ("dram", f"RAPL: {why}")]
            return
        by_probe = {driver.probe_id(z): z for z in zones}
        for s in batch.series:
            zone = by_probe[s.probe]
            domain, counted = RAPL_DOMAINS.get(zone.kind, (zone.kind, False))
            self._ranges[zone.key] = counter_range(s.kind)
            self.meters.append(Meter(zone.key, domain, MEASURED, f"RAPL counter {zone.path.name}", counted))
        self._rapl = (driver, {driver.probe_id(z): z.key for z in zones})
        if any(m.domain == "platform" for m in self.meters):  # psys holds the packages and DRAM: alone
            self.meters = [Meter(m.name, m.domain, m.provenance, m.method, m.domain == "platform")
                           for m in self.meters]
        if not any(m.domain == "dram" for m in self.meters):
            self.missing.append(("dram", NO_DRAM))

    def _open_gpus(self) -> None:
        seam = self.nvml_seam
        folder = self.proc_root / "driver" / "nvidia" / "gpus"
        if seam is None and not (folder.is_dir() and any(folder.iterdir())):
            self.missing.append(("gpu", f"no NVIDIA GPU ({folder} is absent: no NVIDIA driver)"))
            return
        from ..drivers.nvml import NvmlConfig, NvmlDriver
        from ..errors import WattsightError

        cfg = NvmlConfig.model_validate({"type": "nvml", "metrics": ["energy"]})
        driver = NvmlDriver(cfg, site=self.site, nvml=seam, host=self.host)
        try:
            batch = driver.read()
        except WattsightError as exc:
            self.missing.append(("gpu", f"NVIDIA GPUs here but not readable: {_first_sentence(exc)}"))
            return
        for gpu in driver.gpus or []:
            if gpu.energy:
                self.meters.append(Meter(f"gpu-{gpu.index}", "gpu", MEASURED,
                                         f"NVML energy counter of {gpu.name}"))
            else:
                why = f"{gpu.name} has no NVML energy counter (pre-Volta)"
                self.missing.append((f"gpu-{gpu.index}", why))
        if len(batch):
            self._gpu = driver

    def _open_model(self) -> None:
        from ..drivers.cpumodel import CpuModelConfig, CpuModelDriver
        from ..errors import DriverError

        cfg = CpuModelConfig.model_validate({"type": "cpumodel", "metrics": ["energy"]})
        driver = CpuModelDriver(cfg, site=self.site, proc_root=self.proc_root, host=self.host)
        try:
            driver.read()
            text = driver.model.describe()
        except DriverError as exc:
            self.missing.append(("cpu", f"the CPU model cannot read {self.proc_root}: {exc}"))
            return
        self._model = driver
        self.meters.append(Meter("cpu-model", "cpu", MODELLED,
                                 f"cpumodel, not a meter: idle + (max - idle) x CPU utilisation; {text}"))

    # -- reading --------------------------------------------------------------------------------
    def read(self) -> dict[str, float]:
        """Cumulative joules of every meter since :meth:`open` (a meter that fails drops out)."""
        return self.reading()[1]

    def reading(self) -> tuple[float, dict[str, float]]:
        """When the meters were read (epoch s, the middle of the reads) and their cumulative joules:
        the span between two readings is what the difference of their joules covers."""
        self.open()
        with self._lock:
            before = time.time()
            self._read_all()
            return (before + time.time()) / 2, dict(self._total)

    def _read_all(self) -> None:
        from ..errors import WattsightError

        readers = (("rapl", self._read_rapl), ("gpu", self._read_gpus), ("model", self._read_model))
        for name, reader in readers:
            for attempt in (1, 2):  # a read that fails once (EIO, a file being rewritten) is tried again
                try:
                    reader()
                    break
                except (WattsightError, OSError) as exc:
                    if attempt == 2:
                        self._drop(name, exc)

    def _count(self, key: str, raw: float) -> None:
        """Add a counter's increase since the last read: across one wrap when its range is known (RAPL),
        else from zero after a restart (:func:`wattsight.energy.wrap_deltas`, the store's own rule)."""
        from ..energy import wrap_deltas

        last = self._last.get(key)
        self._last[key] = raw
        if last is None:
            self._total.setdefault(key, 0.0)
            return
        delta = float(wrap_deltas([last, raw], self._ranges.get(key))[0])
        self._total[key] = self._total.get(key, 0.0) + delta

    def _read_rapl(self) -> None:
        if self._rapl is None:
            return
        driver, keys = self._rapl
        batch = driver.read()
        for i, v in zip(batch.sidx, batch.v, strict=True):
            self._count(keys[batch.series[i].probe], float(v))

    def _read_gpus(self) -> None:
        if self._gpu is None:
            return
        batch = self._gpu.read()
        names = {g.probe: f"gpu-{g.index}" for g in self._gpu.gpus or []}
        for i, v in zip(batch.sidx, batch.v, strict=True):
            s = batch.series[i]
            if s.metric == "energy":
                self._count(names[s.probe], float(v))

    def _read_model(self) -> None:
        if self._model is not None:
            self._model.read()
            self._count("cpu-model", float(self._model.energy))

    def _drop(self, source: str, exc: Exception) -> None:
        """A source that stopped answering: its parts become unavailable (said once in the log)."""
        names = {"rapl": "RAPL", "gpu": "NVML", "model": "the CPU model"}
        log.warning("wattsight local mode: reading %s failed, its parts are left out from now on: %s",
                    names[source], exc)
        gone = {"rapl": lambda m: m.method.startswith("RAPL"), "gpu": lambda m: m.domain == "gpu",
                "model": lambda m: m.name == "cpu-model"}[source]
        for m in [m for m in self.meters if gone(m)]:
            self.meters.remove(m)
            self.missing.append((m.name, f"reading failed during the run: {_first_sentence(exc)}"))
            self._total.pop(m.name, None)
        setattr(self, {"rapl": "_rapl", "gpu": "_gpu", "model": "_model"}[source], None)

    def parts(self, before: dict[str, float], after: dict[str, float], duration_s: float) -> list[Part]:
        """The parts of a window from two readings of :meth:`read`."""
        out = []
        for m in self.meters:
            if m.name in before and m.name in after:
                j = after[m.name] - before[m.name]
                out.append(Part(m.name, m.domain, j, 1.0, m.provenance, m.method, m.in_total,
                                j / duration_s if duration_s > 0 else None))
        return out


def _first_sentence(exc: Exception | str) -> str:
    """The start of an error message, up to the first ". " (the fix follows in the driver's docs)."""
    text = str(exc)
    probe = getattr(exc, "probe", None)
    if probe and text.startswith(f"{probe}: "):
        text = text[len(probe) + 2:]
    head, dot, _ = text.partition(". ")
    return head + ("." if dot else "")
