"""A simulated rack: power, energy and network counters from seeded patterns, no hardware.

Every series is clearly labelled as simulated: its provenance is ``"modelled"`` and every
probe's description starts with "simulated".  Values are a pure function of time (see
:mod:`wattsight.drivers.patterns`): a read at ``t`` returns ``value_at(t)``, so a test can
compare what was stored with the exact energy of the curve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..sample import Batch, Probe, Series, now_ms, wrapping_counter
from .base import Driver, DriverConfig, site_probe
from .patterns import ConstantPattern, Pattern, SquarePattern, WalkPattern, probe_keys


class DummyConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "dummy"``."""

    type: Literal["dummy"] = "dummy"
    probes: list[str] = Field([], description="probe names; a name without a dot gets '<site>.' in front")
    count: int | None = Field(None, ge=1, le=1_000_000,
                              description="or: this many probes <prefix>1..<prefix>N")
    prefix: str = Field("node-", description="name prefix of the probes made by `count`")
    metrics: list[Literal["power", "energy", "network"]] = Field(
        ["power"], min_length=1, description="power (W), energy (J counter), network (B counters in/out)")
    pattern: Literal["constant", "walk", "square"] = Field("walk", description="the shape of the power curve")
    value: float = Field(200.0, ge=0, description="W drawn by every probe (constant)")
    min: float = Field(100.0, ge=0, description="W, lowest level (walk, square)")
    max: float = Field(300.0, ge=0, description="W, highest level (walk, square)")
    step: float = Field(5.0, ge=0, description="W, largest change per interval (walk)")
    interval: float = Field(1.0, ge=0.001, description="s between the walk's grid points (walk)")
    high_time: float = Field(30.0, ge=0, description="s spent at max (square)")
    low_time: float = Field(30.0, ge=0, description="s spent at min (square)")
    ramp: float = Field(5.0, ge=0, description="s of the linear ramp between min and max (square)")
    resolution: float = Field(0.1, ge=0, description="W; readings are rounded to it (0: not rounded)")
    network_rate: float = Field(1.25e8, ge=0, description="B/s per direction, on average")
    network_noise: float = Field(0.2, ge=0, le=1, description="the rate walks within rate*(1 +- noise)")
    counter_bits: int = Field(32, description="network counters wrap at 2**bits: 32 or 64")
    burst: int = Field(1, ge=1, description="samples per probe and read, spaced by period/burst")
    seed: int = Field(0, description="same seed and probes: same values")

    @field_validator("counter_bits")
    @classmethod
    def _bits(cls, bits: int) -> int:
        if bits not in (32, 64):
            raise ValueError(f"{bits} is not 32 or 64")
        return bits

    @model_validator(mode="after")
    def _check(self) -> "DummyConfig":
        if bool(self.probes) == (self.count is not None):
            raise ValueError("give either `probes` (a list of names) or `count` (a number), "
                             "not both or neither")
        names = self.names()
        for name in names:
            # The site is only known to the driver: check the name under a stand-in site.
            site_probe(name, "site")
        if len(set(names)) != len(names):
            raise ValueError("`probes` lists a name twice")
        if self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is above `max` ({self.max})")
        if self.pattern == "square" and self.high_time + self.low_time + 2 * self.ramp < 0.001:
            raise ValueError("square pattern: high_time + low_time + 2*ramp must be at least 1 ms")
        if self.period * 1000 / self.burst < 1:
            raise ValueError(f"`burst` {self.burst} puts samples less than 1 ms apart at period "
                             f"{self.period} s (at most {int(self.period * 1000)})")
        return self

    def names(self) -> list[str]:
        """The probe names, before the site is added."""
        return list(self.probes) or [f"{self.prefix}{i}" for i in range(1, (self.count or 0) + 1)]


SAMPLE = """\
# A simulated rack: no hardware needed.  Every series is labelled "modelled".
[drivers.dummy]
type = "dummy"
period = 1.0                  # s between reads
count = 8                     # probes node-1 .. node-8; or: probes = ["node-1", "lyon.pdu-3"]
prefix = "node-"
metrics = ["power", "energy", "network"]   # network: network_in and network_out counters
pattern = "square"            # "constant" (value) | "walk" (min, max, step, interval) | "square"
min = 120.0                   # W, idle level
max = 350.0                   # W, load level
high_time = 30.0              # s at max (square)
low_time = 30.0               # s at min (square)
ramp = 5.0                    # s of linear ramp between them (square)
resolution = 0.1              # W; readings are rounded to it, like a PDU's
network_rate = 125000000.0    # B/s per direction (1 Gbit/s), walking within +-network_noise
network_noise = 0.2
counter_bits = 32             # 32 wraps at 4 GiB, like old SNMP counters; or 64
burst = 1                     # samples per probe and read (benchmarks: e.g. 1000)
seed = 0                      # same seed, same probes: same values
"""


class DummyDriver(Driver):
    """A simulated rack (no hardware): power, energy and network counters from seeded patterns."""

    Config = DummyConfig
    SAMPLE = SAMPLE

    def __init__(self, config: DummyConfig, *, site: str, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(config, site=site, clock=clock)
        self.ids = [site_probe(n, site) for n in config.names()]
        #: Counters start here (energy at 0 J); the patterns themselves depend on time only.
        self.origin_ms = int(clock())
        self.power = make_power(config, self.ids)
        self._columns = self._plan()
        n = len(self.ids)
        self.series = tuple(Series(pid, metric, unit, kind, "modelled")
                            for metric, unit, kind, _ in self._columns for pid in self.ids)
        self._sidx = np.tile(np.arange(len(self.series), dtype=np.uint32).reshape(-1, 1, n),
                             (1, config.burst, 1)).reshape(-1)

    # -- building -----------------------------------------------------------------------
    def _plan(self) -> list[tuple[str, str, str, Callable[[np.ndarray], np.ndarray]]]:
        """(metric, unit, kind, values at times -> (m, n)) of each published metric."""
        cfg, out = self.config, []
        if "power" in cfg.metrics:
            out.append(("power", "W", "gauge", self.power.value_at))
        if "energy" in cfg.metrics:
            out.append(("energy", "J", "counter", lambda t: self.power.energy(self.origin_ms, t)))
        if "network" in cfg.metrics:
            for direction in ("network_in", "network_out"):
                out.append((direction, "B", wrapping_counter(2**cfg.counter_bits), self._network(direction)))
        return out

    def _network(self, stream: str) -> Callable[[np.ndarray], np.ndarray]:
        """A byte counter: the integral of a rate walking within rate*(1 +- noise), wrapped."""
        cfg = self.config
        keys = probe_keys(self.ids, cfg.seed, stream)
        rate = WalkPattern(keys, min=cfg.network_rate * (1 - cfg.network_noise),
                           max=cfg.network_rate * (1 + cfg.network_noise),
                           step=cfg.network_rate * cfg.network_noise / 4, interval=1.0, resolution=0)
        # Counters start anywhere below 2**32 (a key's top half), so a 32-bit one wraps soon.
        offset = probe_keys(self.ids, cfg.seed, stream + ".start") >> np.uint64(32)
        mask = np.uint64(2**cfg.counter_bits - 1)

        def counter(t: np.ndarray) -> np.ndarray:
            grown = np.floor(rate.energy(self.origin_ms, t)).astype(np.int64).view(np.uint64)
            with np.errstate(over="ignore"):
                return ((offset + grown) & mask).astype(np.float64)

        return counter

    # -- the driver contract ----------------------------------------------------------
    def probes(self) -> list[Probe]:
        cfg = self.config
        what = {"constant": f"constant {cfg.value:g} W",
                "walk": f"random walk {cfg.min:g}-{cfg.max:g} W",
                "square": f"square load {cfg.min:g}/{cfg.max:g} W"}[cfg.pattern]
        text = f"simulated meter ({what}, seed {cfg.seed}): dummy driver, not a real measurement"
        return [Probe(pid, driver=cfg.type, period=cfg.period, description=text) for pid in self.ids]

    def times(self, now: int) -> np.ndarray:
        """The ``burst`` measurement times of a read at ``now``: spaced by period/burst, ending at now."""
        burst = self.config.burst
        back = np.arange(burst - 1, -1, -1) * (self.config.period * 1000.0 / burst)
        return now - np.round(back).astype(np.int64)

    def read(self) -> Batch:
        t = self.times(int(self.clock()))
        v = np.concatenate([fn(t).reshape(-1) for *_, fn in self._columns])
        tt = np.tile(np.repeat(t, len(self.ids)), len(self._columns))
        return Batch(self.series, self._sidx, tt, v)


def make_power(cfg: DummyConfig, ids: list[str]) -> Pattern:
    """The power pattern ``cfg`` describes, for the probes ``ids``."""
    keys = probe_keys(ids, cfg.seed, "power")
    if cfg.pattern == "constant":
        return ConstantPattern(len(ids), cfg.value, resolution=cfg.resolution)
    if cfg.pattern == "square":
        return SquarePattern(keys, min=cfg.min, max=cfg.max, high=cfg.high_time, low=cfg.low_time,
                             ramp=cfg.ramp, resolution=cfg.resolution)
    return WalkPattern(keys, min=cfg.min, max=cfg.max, step=cfg.step, interval=cfg.interval,
                       resolution=cfg.resolution)
