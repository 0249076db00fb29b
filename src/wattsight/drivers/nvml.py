"""wattsight driver for NVIDIA GPUs through NVML: each GPU's energy counter, and its power.

Energy comes from ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver was loaded, Volta
and later): a counter, preferred to power because the board's sensor is sampled for part of the
time only, and a counter integrates what a power reading misses.  Power comes from
``nvmlDeviceGetPowerUsage`` (mW; averaged over 1 s on Ampere and later).  A GPU without the energy
counter falls back to power.

Every NVML call goes through :class:`Nvml`, a small seam whose real implementation imports
``pynvml`` (PyPI ``nvidia-ml-py``) lazily; tests hand the driver a fake in its place.
"""

from __future__ import annotations

import socket
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import MeterPermissionError, MeterReplyError, MeterUnreachable, MissingDependency
from ..sample import Batch, Probe, Sample, now_ms
from .base import Driver, DriverConfig, site_probe

# NVML return codes (nvml.h; the same numbers as pynvml.NVML_ERROR_*).
INVALID_ARGUMENT, NOT_SUPPORTED, NO_PERMISSION, NOT_FOUND = 2, 3, 4, 6
DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, FUNCTION_NOT_FOUND, LIB_RM_VERSION_MISMATCH = 9, 12, 13, 18

_WHY = {
    LIBRARY_NOT_FOUND: "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not on this host; install the "
                       "NVIDIA driver, or leave this section out on hosts without NVIDIA GPUs",
    DRIVER_NOT_LOADED: "no NVIDIA driver: the kernel module is not loaded (nvidia-smi would say the same); load "
                       "it (modprobe nvidia) and check `dmesg` for the GPU",
    LIB_RM_VERSION_MISMATCH: "the NVML library and the loaded kernel driver differ in version (a driver upgrade "
                             "without reboot): reboot or reload the nvidia module",
}


class NvmlError(Exception):
    """An NVML call failed: ``code`` is NVML's return code, ``text`` its message, ``call`` the function."""

    def __init__(self, code: int, text: str = "", call: str = "") -> None:
        self.code, self.text, self.call = code, text, call
        super().__init__(f"{call}: {text} (NVML error {code})")


class Nvml:
    """The NVML calls the driver makes, and nothing more: the seam tests replace with a fake."""

    def __init__(self) -> None:
        self._n: Any = None

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._n, name)(*args)
        except self._n.NVMLError as exc:
            raise NvmlError(exc.value, str(exc), name) from None

    def init(self) -> None:
        try:
            import pynvml
        except ImportError:
            raise MissingDependency("nvidia-ml-py", "nvml", "the nvml driver (NVIDIA GPUs)") from None
        self._n = pynvml
        self._call("nvmlInit")

    def shutdown(self) -> None:
        self._call("nvmlShutdown")

    def count(self) -> int:
        return self._call("nvmlDeviceGetCount")

    def handle(self, index: int) -> Any:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def handle_by_uuid(self, uuid: str) -> Any:
        return self._call("nvmlDeviceGetHandleByUUID", uuid)

    def index(self, handle: Any) -> int:
        return self._call("nvmlDeviceGetIndex", handle)

    def name(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetName", handle))

    def uuid(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetUUID", handle))

    def energy_mj(self, handle: Any) -> int:
        """Energy since the driver was loaded, in mJ."""
        return self._call("nvmlDeviceGetTotalEnergyConsumption", handle)

    def power_mw(self, handle: Any) -> int:
        """Power of the GPU and its memory, in mW."""
        return self._call("nvmlDeviceGetPowerUsage", handle)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


SAMPLE = """\
# NVIDIA GPUs through NVML (pip install 'wattsight[nvml]'): energy counter (J) and power (W) per GPU.
[drivers.gpus]
type = "nvml"
period = 1.0                     # s between reads
devices = [0, 1]                 # GPUs by index or UUID ("GPU-5fd2..."); [] = every GPU of this host
probe = "{host}-gpu-{index}"     # probe name: {host} (this host's short name), {index}, {uuid}
metrics = ["energy", "power"]    # energy (J counter, preferred) and/or power (W)
"""


class NvmlConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "nvml"``."""

    type: Literal["nvml"] = "nvml"
    devices: list[int | str] = Field([], description="GPUs to read: indexes or UUIDs; empty: every GPU")
    probe: str = Field("{host}-gpu-{index}", description="probe name template: {host}, {index}, {uuid}")
    metrics: list[Literal["energy", "power"]] = Field(
        ["energy", "power"], min_length=1, description="energy (J counter, preferred) and/or power (W)")

    @field_validator("probe")
    @classmethod
    def _check_probe(cls, probe: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(probe) if f is not None}
        if not fields <= {"host", "index", "uuid"}:
            raise ValueError(f"{probe!r}: placeholders are {{host}}, {{index}} and {{uuid}}")
        if not fields & {"index", "uuid"}:
            raise ValueError(f"{probe!r} names every GPU alike: put {{index}} or {{uuid}} in it")
        return probe


@dataclass
class Gpu:
    """One GPU being read: its handle, its probe, and whether it has the energy counter."""

    index: int
    uuid: str
    name: str
    handle: Any
    probe: str
    energy: bool = True


class NvmlDriver(Driver):
    """NVIDIA GPUs through NVML: each GPU's energy counter (J) and power (W)."""

    Config = NvmlConfig
    SAMPLE = SAMPLE

    def __init__(self, config: NvmlConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 nvml: Nvml | None = None, host: str | None = None) -> None:
        super().__init__(config, site=site, clock=clock)
        self.nvml = nvml if nvml is not None else Nvml()
        self.host = host if host is not None else socket.gethostname().split(".")[0]
        self.gpus: list[Gpu] | None = None

    def probe_id(self, index: int, uuid: str) -> str:
        name = self.config.probe.format(host=self.host, index=index, uuid=uuid)
        return site_probe(name, self.site)

    def probes(self) -> list[Probe]:
        """Known without NVML when `devices` lists indexes and the template does not use {uuid}."""
        cfg = self.config
        if not cfg.devices or "{uuid}" in cfg.probe or not all(isinstance(d, int) for d in cfg.devices):
            return []
        return [Probe(self.probe_id(i, ""), driver=cfg.type, period=cfg.period,
                      description=f"NVIDIA GPU {i} on {self.host} through NVML: {' and '.join(cfg.metrics)}")
                for i in cfg.devices]

    # -- reading --------------------------------------------------------------------------------
    def _open(self) -> list[Gpu]:
        nv = self.nvml
        nv.init()
        self.gpus = []  # from here on, close() shuts NVML down
        count = nv.count()
        for dev in self.config.devices or range(count):
            try:
                handle = nv.handle_by_uuid(dev) if isinstance(dev, str) else nv.handle(dev)
            except NvmlError as exc:
                if exc.code not in (INVALID_ARGUMENT, NOT_FOUND):
                    raise
                raise MeterReplyError(f"no GPU {dev!r} on this host: it has {count} GPU(s), indexes 0 to "
                                      f"{count - 1}; check `devices` (nvidia-smi -L lists them)",
                                      probe=self.host) from None
            index = dev if isinstance(dev, int) else nv.index(handle)
            uuid = nv.uuid(handle)
            self.gpus.append(Gpu(index, uuid, nv.name(handle), handle, self.probe_id(index, uuid)))
        return self.gpus

    def read(self) -> Batch:
        try:
            gpus = self.gpus if self.gpus is not None else self._open()
            return Batch.of([s for gpu in gpus for s in self._read_gpu(gpu)])
        except NvmlError as exc:
            self.close()  # the next read starts NVML afresh
            raise self._error(exc) from None
        except MeterReplyError:
            self.close()
            raise

    def _read_gpu(self, gpu: Gpu) -> list[Sample]:
        nv, metrics, out = self.nvml, self.config.metrics, []
        if "energy" in metrics and gpu.energy:
            try:
                mj = nv.energy_mj(gpu.handle)
                out.append(Sample(gpu.probe, "energy", self.clock() / 1000.0, mj / 1000.0, "J", "counter"))
            except NvmlError as exc:
                if exc.code not in (NOT_SUPPORTED, FUNCTION_NOT_FOUND):
                    raise
                gpu.energy = False  # pre-Volta GPU or old driver: read its power instead, from now on
        if "power" in metrics or not gpu.energy:
            try:
                mw = nv.power_mw(gpu.handle)
            except NvmlError as exc:
                if exc.code != NOT_SUPPORTED:
                    raise
                raise MeterReplyError(f"GPU {gpu.index} ({gpu.name}) reports neither energy nor power through "
                                      "NVML; leave it out of `devices`", probe=gpu.probe) from None
            out.append(Sample(gpu.probe, "power", self.clock() / 1000.0, mw / 1000.0, "W"))
        return out

    def _error(self, exc: NvmlError) -> Exception:
        if exc.code in _WHY:
            return MeterUnreachable(_WHY[exc.code], probe=self.host)
        if exc.code == NO_PERMISSION:
            return MeterPermissionError(f"NVML refused {exc.call} (no permission): run wattsight as a user "
                                        "allowed to open /dev/nvidia* (or as root)", probe=self.host)
        return MeterUnreachable(f"{exc}; is the GPU healthy? (nvidia-smi)", probe=self.host)

    def close(self) -> None:
        if self.gpus is not None:
            self.gpus = None
            try:
                self.nvml.shutdown()
            except NvmlError:
                pass  # shutting down a library that failed: nothing more to release
