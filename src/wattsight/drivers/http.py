"""wattsight driver for meters that answer JSON over HTTP (the JSON-URL driver of kwapi-g5k).

One GET per read; each probe takes its power and/or energy from a path in the reply
(:mod:`wattsight.drivers.jsonpath`: ``data.outlets[3].watts``).  The parsing is a pure function
of the decoded document and the measurement time (:func:`parse`); the network is an httpx
client with keep-alive, built on the first read.  :class:`~.httpclient.HttpClientConfig` and
:class:`~.httpclient.HttpFetcher` (URL, credentials, TLS, errors) are shared with the ``prometheus`` driver.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import MeterReplyError
from ..sample import Batch, Probe, Sample, now_ms
from . import jsonpath
from .base import Driver, iso_ms, site_probe
from .httpclient import HttpClientConfig, HttpFetcher, safe_url

__all__ = ["HttpClientConfig", "HttpFetcher", "HttpJsonConfig", "HttpJsonDriver", "safe_url"]

POWER_UNITS = {"W": 1.0, "kW": 1e3, "mW": 1e-3}
ENERGY_UNITS = {"J": 1.0, "kJ": 1e3, "Wh": 3600.0, "kWh": 3.6e6}


# -- the http driver's own configuration --------------------------------------------------------
EnergyUnit = Literal["J", "kJ", "Wh", "kWh"]


class ProbeSpec(BaseModel):
    """Where one probe's readings are in the reply: ``probes."<name>" = {power = "<path>", ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    power: str | None = Field(None, description="path of the power reading, in `power_unit`")
    energy: str | None = Field(None, description="path of the energy counter")
    energy_unit: EnergyUnit | None = Field(None, description="unit of this energy counter (default: `energy_unit`)")
    range: list[int] | None = Field(
        None, min_length=2, max_length=2,
        description="[first, last]: one probe per number n; the name and paths use {n} and {i} = n - first")

    @model_validator(mode="after")
    def _check(self) -> ProbeSpec:
        if self.power is None and self.energy is None:
            raise ValueError("a probe needs `power` or `energy` (a path in the reply), or both")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"`range` {self.range}: first is above last")
        return self


SAMPLE = """\
# A meter answering JSON over HTTP (kwapi-g5k's JSON-URL driver): one GET per read.
[drivers.pdu-json]
type = "http"
period = 1.0                                   # s between reads
url = "http://pdu-1.example.org/api/outlets"   # the JSON document to GET
# username = "monitor"                         # HTTP basic auth (or: token = "..." for a bearer token)
# password = "..."
power_unit = "W"                               # unit of every power reading: "W", "kW" or "mW"
energy_unit = "Wh"                             # unit of the energy counters: "J", "kJ", "Wh" or "kWh"
timestamp = "data.time"                        # optional: the meter's own time of measurement...
timestamp_format = "unix"                      # ...as "unix" (s), "unix_ms" or "iso8601"; else: time of the reply
missing = "error"                              # a probe absent from the reply: "error" or "skip" it
# One probe per key (a name without a dot gets "<site>." in front), with the paths of its readings:
probes = { "taurus-7" = { power = "data.outlets[6].watts", energy = "data.outlets[6].energy" } }
# Many outlets at once: {n} runs over `range`, {i} = n - first (a 0-based list index):
# probes = { "pdu-1-{n}" = { power = "data.outlets[{i}].watts", range = [1, 24] } }
# Or a list of names and path templates; {name} is a probe's name without its site. With neither
# `power` nor `energy`, kwapi-g5k's layout {"taurus-7": {"watt": 112.5, "timestamp": 1700000000.2}}:
# probes = ["lyon.taurus-7", "lyon.taurus-8"]
# power = "{name}.watt"
# timestamp = "{name}.timestamp"
"""

KWAPI_LAYOUT = {"power": "{name}.watt", "timestamp": "{name}.timestamp"}


class HttpJsonConfig(HttpClientConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "http"``."""

    type: Literal["http"] = "http"
    probes: dict[str, ProbeSpec] | list[str] = Field(
        min_length=1, description='probe name -> {power = "<path>", energy = "<path>", energy_unit, range}; '
                                  "or a list of names read with the `power`/`energy` templates")
    power: str | None = Field(None, description="list form: path of each probe's power, {name} its name")
    energy: str | None = Field(None, description="list form: path of each probe's energy counter, {name} its name")
    power_unit: Literal["W", "kW", "mW"] = Field("W", description="unit of the power readings")
    energy_unit: EnergyUnit = Field("J", description="unit of the energy counters (a probe may set its own)")
    timestamp: str | None = Field(
        None, description="path of the meter's own measurement time ({name}: per probe); else: time of the reply")
    timestamp_format: Literal["unix", "unix_ms", "iso8601"] = Field(
        "unix", description="how `timestamp` is written: unix (s), unix_ms or iso8601 (no zone: UTC)")
    missing: Literal["error", "skip"] = Field(
        "error", description="a probe whose path is absent from a reply: an error, or left out of that read")

    @model_validator(mode="after")
    def _check(self) -> HttpJsonConfig:
        if isinstance(self.probes, dict) and (self.power or self.energy):
            raise ValueError("`power` and `energy` are for a list of probes: with a table, give each probe "
                             "its own {power = ..., energy = ...}")
        if isinstance(self.probes, list) and len(set(self.probes)) != len(self.probes):
            raise ValueError("`probes` lists a name twice")
        targets(self, "site")  # every probe id and path parses
        return self


def _fill(text: str | None, name: str, n: int | None, first: int) -> str | None:
    """A path or name template with {name}, {n} and {i} replaced."""
    if text is None:
        return None
    text = text.replace("{name}", name.split(".", 1)[-1])
    return text if n is None else text.replace("{n}", str(n)).replace("{i}", str(n - first))


@dataclass(frozen=True)
class Target:
    """One probe's readings: the paths, parsed once, and the factors to SI."""

    probe: str
    power: str | None
    energy: str | None
    timestamp: str | None
    power_factor: float
    energy_factor: float
    steps: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for path in (self.power, self.energy, self.timestamp):
            if path is not None:
                self.steps[path] = jsonpath.parse(path)


def targets(cfg: HttpJsonConfig, site: str) -> list[Target]:
    """Every probe of the configuration; ValueError for a bad name or path."""
    if isinstance(cfg.probes, list):
        layout = {} if (cfg.power or cfg.energy) else KWAPI_LAYOUT
        specs = {name: ProbeSpec(power=cfg.power or layout.get("power"), energy=cfg.energy) for name in cfg.probes}
        stamp = cfg.timestamp or layout.get("timestamp")
    else:
        specs, stamp = cfg.probes, cfg.timestamp
    out = []
    for name, spec in specs.items():
        first, last = spec.range or (0, -1)
        templated = "{n}" in name or "{i}" in name
        if spec.range is None and templated:
            raise ValueError(f"probe {name!r} uses {{n}} or {{i}} but has no `range`")
        if spec.range is not None and not templated:
            raise ValueError(f"probe {name!r} has a `range` but no {{n}} or {{i}} in its name: its probes would clash")
        for n in (range(first, last + 1) if spec.range else [None]):
            label = _fill(name, name, n, first)
            pid = site_probe(label, site)
            out.append(Target(pid, _fill(spec.power, label, n, first), _fill(spec.energy, label, n, first),
                              _fill(stamp, label, n, first), POWER_UNITS[cfg.power_unit],
                              ENERGY_UNITS[spec.energy_unit or cfg.energy_unit]))
    return out


# -- parsing: a pure function of the document ---------------------------------------------------
def number(value: Any) -> float:
    """A JSON reading as a float >= 0; ValueError saying what it is otherwise.

    Numbers written as strings ("12.5") are accepted: many small meters quote them."""
    try:
        x = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        x = None
    if x is None:
        raise ValueError(f"is {jsonpath.describe(value)}, not a number")
    if math.isnan(x):
        raise ValueError("is NaN (the meter has no reading)")
    if math.isinf(x) or x < 0:
        raise ValueError(f"is {value!r}, out of range (expected a number >= 0)")
    return x


def stamp_ms(raw: Any, fmt: str) -> int:
    """A meter's timestamp as ms since the epoch; ValueError if it is not one."""
    if fmt == "iso8601":
        if not isinstance(raw, str):
            raise ValueError(f"is {jsonpath.describe(raw)}, not an ISO 8601 string")
        try:
            return iso_ms(raw)
        except ValueError:
            raise ValueError(f"is {raw!r}, not an ISO 8601 time such as 2024-05-01T12:00:00.250Z") from None
    x = number(raw)
    return round(x if fmt == "unix_ms" else x * 1000)


METRIC_KINDS = {"power": ("W", "gauge"), "energy": ("J", "counter")}


def parse(doc: Any, t_ms: int, targets: list[Target], *, where: str, timestamp_format: str = "unix",
          skip_missing: bool = False, last: dict[str, int] | None = None) -> Batch:
    """The samples in one decoded reply received at ``t_ms`` (or stamped by the meter).

    ``last`` (probe -> meter time of its last reading) drops readings the meter has not renewed."""
    samples, found = [], 0
    for tg in targets:
        try:
            t = t_ms
            if tg.timestamp is not None:
                what = "timestamp"
                t = stamp_ms(jsonpath.get(doc, tg.steps[tg.timestamp], tg.timestamp), timestamp_format)
            values = []
            for metric, path, factor in (("power", tg.power, tg.power_factor), ("energy", tg.energy, tg.energy_factor)):
                if path is not None:
                    what = metric
                    values.append((metric, number(jsonpath.get(doc, tg.steps[path], path)) * factor))
        except jsonpath.PathMissing as exc:
            if skip_missing:
                continue
            raise MeterReplyError(f"{what}: {exc}, in the reply of {where}; check the probe's `{what}` path "
                                  "(or set missing = \"skip\")", probe=tg.probe) from None
        except ValueError as exc:
            path = {"power": tg.power, "energy": tg.energy, "timestamp": tg.timestamp}[what]
            raise MeterReplyError(f"{what} at {path} {exc}, in the reply of {where}", probe=tg.probe) from None
        found += 1
        if last is not None and tg.timestamp is not None:
            if last.get(tg.probe) == t:
                continue  # the meter has not measured again since the last read
            last[tg.probe] = t
        for metric, value in values:
            samples.append(Sample(tg.probe, metric, t / 1000.0, value, *METRIC_KINDS[metric]))
    if targets and not found:
        raise MeterReplyError(f"none of the {len(targets)} probe(s) is in the reply of {where} (first: "
                              f"{targets[0].power or targets[0].energy}); is the url right?", probe=where)
    return Batch.of(samples)


class HttpJsonDriver(Driver):
    """Meters answering JSON over HTTP: power and energy of each probe from paths in the reply."""

    Config = HttpJsonConfig
    SAMPLE = SAMPLE

    def __init__(self, config: HttpJsonConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(config, site=site, clock=clock)
        self.targets = targets(config, site)
        self.fetcher = HttpFetcher(config, accept="application/json", transport=transport)
        self._last: dict[str, int] = {}

    def probes(self) -> list[Probe]:
        cfg, where = self.config, safe_url(self.config.url)
        out = []
        for tg in self.targets:
            what = [f"power at {tg.power} ({cfg.power_unit})"] if tg.power else []
            what += [f"energy at {tg.energy}"] if tg.energy else []
            out.append(Probe(tg.probe, driver=cfg.type, period=cfg.period,
                             description=f"JSON over HTTP from {where}: {', '.join(what)}"))
        return out

    def read(self) -> Batch:
        reply = self.fetcher.get()
        t_ms = int(self.clock())
        try:
            doc = json.loads(reply.content)
        except ValueError as exc:
            raise MeterReplyError(f"the reply is not JSON ({exc}); it starts with {reply.content[:60]!r}: is the "
                                  "url the meter's JSON API?", probe=self.fetcher.where) from None
        cfg = self.config
        return parse(doc, t_ms, self.targets, where=self.fetcher.where, timestamp_format=cfg.timestamp_format,
                     skip_missing=cfg.missing == "skip", last=self._last)

    def close(self) -> None:
        self.fetcher.close()
