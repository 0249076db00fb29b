"""wattsight driver that scrapes a Prometheus endpoint as a source (Kwollect's ``prometheus://``).

One GET per read of a ``/metrics`` page, in the text format 0.0.4 or OpenMetrics 1.0 (parsed with
prometheus_client's own parsers); the configuration selects metrics by name and labels and says
which probe each sample feeds (a template over its labels).  Counters stay counters, units become
SI (mJ, uW, Wh...), the exporter's own timestamps are kept.  Presets select the metrics of
well-known exporters: node_exporter (RAPL, hwmon), scaphandre, Kepler, NVIDIA DCGM, ipmi_exporter.
"""

from __future__ import annotations

import difflib
import math
import re
import string
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import MeterReplyError
from ..sample import Batch, Probe, Sample, check_probe_id, now_ms
from .base import Driver
from .httpclient import HttpClientConfig, HttpFetcher, safe_url

#: Unit -> (SI unit, factor to it).
UNITS: dict[str, tuple[str, float]] = {
    "W": ("W", 1.0), "mW": ("W", 1e-3), "uW": ("W", 1e-6), "kW": ("W", 1e3),
    "J": ("J", 1.0), "mJ": ("J", 1e-3), "uJ": ("J", 1e-6), "kJ": ("J", 1e3), "Wh": ("J", 3600.0),
    "kWh": ("J", 3.6e6), "B": ("B", 1.0),
}
#: Name suffix (after ``_total`` is dropped) -> unit, per the Prometheus naming practice.
SUFFIXES = (("_microwatts", "uW"), ("_milliwatts", "mW"), ("_kilowatts", "kW"), ("_watts", "W"), ("_watt", "W"),
            ("_microjoules", "uJ"), ("_millijoules", "mJ"), ("_kilojoules", "kJ"), ("_joules", "J"),
            ("_joule", "J"), ("_kilowatthours", "kWh"), ("_watthours", "Wh"), ("_watthour", "Wh"),
            ("_bytes", "B"))
SI_METRICS = {"W": ("power",), "J": ("energy",), "B": ("network_in", "network_out")}
ACCEPT = {"auto": "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
          "text": "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@+-]")


class MetricSelect(BaseModel):
    """One selected metric: ``metrics = [{name = "...", probe = "...", ...}]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(description="metric name in the scrape (a counter's _total may be left out)")
    probe: str = Field("{name}", description="probe name: {name} is the driver's `name`, {<label>} a label's value")
    metric: Literal["power", "energy", "network_in", "network_out"] | None = Field(
        None, description="what it measures; default: from the unit (W: power, J: energy)")
    labels: dict[str, str] = Field({}, description="label matchers: an exact value, or '~<regex>' (full match)")
    unit: Literal[tuple(UNITS)] | None = Field(None, description="unit in the scrape; default: from the name's suffix")
    scale: float = Field(1.0, gt=0, description="a factor applied on top of the unit")
    counter: bool = Field(False, description="publish a total the exporter declares a gauge as a counter")
    optional: bool = Field(False, description="absent from a scrape: no error")

    @model_validator(mode="after")
    def _check(self) -> MetricSelect:
        unit = self.si_unit
        allowed = SI_METRICS[unit]
        if self.metric is not None and self.metric not in allowed:
            raise ValueError(f"{self.name}: metric {self.metric!r} is not measured in {unit} (expected {' or '.join(allowed)})")
        if self.metric is None and len(allowed) > 1:
            raise ValueError(f"{self.name}: bytes: say `metric = \"network_in\"` or \"network_out\"")
        for value in self.labels.values():
            if value.startswith("~"):
                try:
                    re.compile(value[1:])
                except re.error as exc:
                    raise ValueError(f"{self.name}: label matcher {value!r} is not a regex ({exc})") from None
        fields = [f for _, f, _, _ in string.Formatter().parse(self.probe) if f is not None]
        if any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f) for f in fields):
            raise ValueError(f"probe {self.probe!r}: placeholders are label names in braces, e.g. pdu-{{outlet}}")
        return self

    @property
    def source_unit(self) -> str:
        if self.unit is not None:
            return self.unit
        base = self.name.removesuffix("_total")
        for suffix, unit in SUFFIXES:
            if base.endswith(suffix):
                return unit
        raise ValueError(f"{self.name}: no unit in the name (_watts, _joules, _microwatts...): set `unit`")

    @property
    def si_unit(self) -> str:
        return UNITS[self.source_unit][0]

    @property
    def what(self) -> str:
        return self.metric or SI_METRICS[self.si_unit][0]


def _preset(*rows: tuple) -> list[dict]:
    return [dict(name=n, probe=p, optional=True, **extra) for n, p, extra in rows]


#: Well-known exporters' metrics (protocols.md §8.4); {name} is the driver's `name`.
PRESETS: dict[str, list[dict]] = {
    "node-rapl": _preset(("node_rapl_package_joules_total", "{name}-package-{index}", {}),
                         ("node_rapl_dram_joules_total", "{name}-dram-{index}", {}),
                         ("node_rapl_psys_joules_total", "{name}-psys-{index}", {}),
                         ("node_rapl_joules_total", "{name}-{rapl_zone}-{index}", {})),
    "node-hwmon": _preset(("node_hwmon_power_watt", "{name}-{chip}-{sensor}", {}),
                          ("node_hwmon_energy_joule_total", "{name}-{chip}-{sensor}", {})),
    "scaphandre": _preset(("scaph_host_power_microwatts", "{name}", {}),
                          ("scaph_host_energy_microjoules", "{name}", {"counter": True}),
                          ("scaph_socket_power_microwatts", "{name}-socket-{socket_id}", {})),
    "kepler": _preset(("kepler_node_cpu_joules_total", "{name}-cpu-{zone}", {}),
                      ("kepler_node_cpu_watts", "{name}-cpu-{zone}", {})),
    "dcgm": _preset(("DCGM_FI_DEV_POWER_USAGE", "{name}-gpu-{gpu}", {"unit": "W"}),
                    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "{name}-gpu-{gpu}", {"unit": "mJ"})),
    "ipmi-exporter": _preset(("ipmi_dcmi_power_consumption_watts", "{name}", {})),
}

SAMPLE = """\
# A Prometheus endpoint scraped as a source (Kwollect's prometheus://): one GET of /metrics per read.
[drivers.pdu-exporter]
type = "prometheus"
period = 5.0                                  # s between scrapes
url = "http://pdu-exporter.example.org:9100/metrics"
name = "r12-a"                                # {name} in probe templates; default: the url's host
format = "auto"                               # ask for OpenMetrics, accept text 0.0.4; "text": 0.0.4 only
# preset = ["node-rapl"]                      # also: node-hwmon, scaphandre, kepler, dcgm, ipmi-exporter
# Each metric: its name in the scrape, label matchers ("~" = regex), the probe it feeds ({<label>}
# = that label's value; probes are <site>.<probe>), and its unit if the name does not say it.
metrics = [
  { name = "pdu_outlet_power_watts", probe = "{name}-{outlet}", labels = { pdu = "r12-a" } },
  { name = "pdu_outlet_energy_joules_total", probe = "{name}-{outlet}", labels = { outlet = "~[0-9]+" } },
]
"""


class PrometheusConfig(HttpClientConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "prometheus"``."""

    type: Literal["prometheus"] = "prometheus"
    name: str | None = Field(None, description="the value of {name} in probe templates; default: the url's host")
    preset: list[Literal[tuple(PRESETS)]] = Field([], description="metrics of well-known exporters to select")
    metrics: list[MetricSelect] = Field([], description="the metrics to select: name, probe, labels, unit...")
    format: Literal["auto", "text"] = Field("auto", description="auto: OpenMetrics or text 0.0.4; text: 0.0.4 only")

    @model_validator(mode="after")
    def _check(self) -> PrometheusConfig:
        if not self.metrics and not self.preset:
            raise ValueError("select something to read: `metrics` and/or `preset`")
        check_probe_id(f"site.{self.probe_name}")
        return self

    @property
    def probe_name(self) -> str:
        return self.name if self.name is not None else (urlsplit(self.url).hostname or "")

    def selections(self) -> list[MetricSelect]:
        return list(self.metrics) + [MetricSelect(**row) for p in self.preset for row in PRESETS[p]]


# -- parsing: a pure function of the page -------------------------------------------------------
def families(text: str, content_type: str) -> list:
    """The metric families of a scrape, with the parser its Content-Type calls for."""
    if content_type.startswith("application/openmetrics-text"):
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    return list(text_string_to_metric_families(text))


def _stamp(ts: Any) -> int | None:
    if ts is None:
        return None
    if hasattr(ts, "sec") and hasattr(ts, "nsec"):  # prometheus_client's Timestamp
        return ts.sec * 1000 + ts.nsec // 1_000_000
    return round(float(ts) * 1000)


def _matches(sel: MetricSelect, labels: dict[str, str]) -> bool:
    for key, want in sel.labels.items():
        have = labels.get(key)
        if have is None or (re.fullmatch(want[1:], have) is None if want.startswith("~") else have != want):
            return False
    return True


def _probe(sel: MetricSelect, labels: dict[str, str], site: str, name: str, where: str) -> str:
    values = {k: _UNSAFE.sub("_", v) for k, v in labels.items()}
    try:
        return check_probe_id(f"{site}.{sel.probe.format_map({**values, 'name': name})}")
    except KeyError as exc:
        raise MeterReplyError(f"{sel.name}: probe template {sel.probe!r} wants label {exc}, which the sample "
                              f"does not have (labels: {sorted(labels)})", probe=where) from None


def parse(fams: list, t_ms: int, selections: list[MetricSelect], *, site: str, name: str, where: str) -> Batch:
    """The selected samples of a parsed scrape received at ``t_ms``."""
    by_base: dict[str, list[tuple[str, Any]]] = {}
    for fam in fams:
        for s in fam.samples:
            by_base.setdefault(s.name.removesuffix("_total"), []).append((fam.type, s))
    samples: dict[tuple[str, str], Sample] = {}
    found = False
    for sel in selections:
        rows = by_base.get(sel.name.removesuffix("_total"), [])
        if not rows:
            if sel.optional:
                continue
            raise MeterReplyError(f"no metric {sel.name!r} in the scrape{_similar(sel.name, by_base)}", probe=where)
        chosen = [(typ, s) for typ, s in rows if _matches(sel, s.labels)]
        if not chosen and not sel.optional:
            seen = "; ".join(str(s.labels) for _, s in rows[:5])
            raise MeterReplyError(f"{sel.name}: no sample matches labels {sel.labels} (there are: {seen})",
                                  probe=where)
        si, factor = UNITS[sel.source_unit]
        for typ, s in chosen:
            found = True
            kind = _kind(sel, typ, where)
            probe = _probe(sel, s.labels, site, name, where)
            if not isinstance(s.value, (int, float)) or math.isnan(s.value) or math.isinf(s.value) or s.value < 0:
                raise MeterReplyError(f"{sel.name}{s.labels} is {s.value!r}, out of range (expected a number "
                                      ">= 0)", probe=probe)
            key = (probe, sel.what)
            if key in samples:
                raise MeterReplyError(f"two samples feed {probe} {sel.what} ({sel.name}{s.labels} and another): add "
                                      f"a label to the probe template {sel.probe!r} or a label matcher", probe=where)
            when = _stamp(s.timestamp)
            samples[key] = Sample(probe, sel.what, (t_ms if when is None else when) / 1000.0,
                                  float(s.value) * factor * sel.scale, si, kind)
    if selections and not found:
        names = sorted({s.name for s in selections})
        raise MeterReplyError(f"none of the selected metrics ({', '.join(names[:6])}) is in the scrape"
                              f"{_similar(names[0], by_base)}", probe=where)
    return Batch.of(samples.values())


def _kind(sel: MetricSelect, typ: str, where: str) -> str:
    """A power reading is a gauge; energy and bytes are counters, unless the exporter says gauge."""
    if sel.what == "power":
        return "gauge"
    if typ == "gauge" and not sel.counter:
        raise MeterReplyError(f"{sel.name} is declared a gauge: an amount of {sel.what} that may go down (e.g. a "
                              "battery's charge) is not a consumption counter; if it only grows, set "
                              "`counter = true` on it", probe=where)
    return "counter"


def _similar(name: str, by_base: dict) -> str:
    names = sorted({s.name for rows in by_base.values() for _, s in rows if not s.name.endswith("_created")})
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    stem = name.split("_")[0]
    close += [n for n in names if n.startswith(stem + "_") and n not in close][: 5 - len(close)]
    return f"; similar names present: {', '.join(close)}" if close else f" ({len(names)} metrics, none alike)"


class PrometheusScrapeDriver(Driver):
    """A Prometheus endpoint scraped as a source: selected gauges and counters, in SI units."""

    Config = PrometheusConfig
    SAMPLE = SAMPLE

    def __init__(self, config: PrometheusConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(config, site=site, clock=clock)
        self.selections = config.selections()
        self.fetcher = HttpFetcher(config, accept=ACCEPT[config.format], transport=transport)

    def probes(self) -> list[Probe]:
        """The probes whose names need no label (the others are known after a scrape)."""
        cfg, out = self.config, {}
        for sel in self.selections:
            fields = {f for _, f, _, _ in string.Formatter().parse(sel.probe) if f is not None}
            if fields <= {"name"}:
                pid = f"{self.site}.{sel.probe.format(name=cfg.probe_name)}"
                out.setdefault(pid, Probe(pid, driver=cfg.type, period=cfg.period,
                                          description=f"scraped from {safe_url(cfg.url)}: {sel.name}"))
        return list(out.values())

    def read(self) -> Batch:
        reply = self.fetcher.get()
        t_ms = int(self.clock())
        where = self.fetcher.where
        ctype = reply.headers.get("content-type", "")
        if ctype.startswith("text/html"):
            raise MeterReplyError("the reply is an HTML page, not metrics: is the url the exporter's /metrics?",
                                  probe=where)
        try:
            fams = families(reply.text, ctype)
        except (ValueError, TypeError, IndexError) as exc:
            raise MeterReplyError(f"the reply is not in the Prometheus text format ({exc}); it starts with "
                                  f"{reply.text[:60]!r}", probe=where) from None
        return parse(fams, t_ms, self.selections, site=self.site, name=self.config.probe_name, where=where)

    def close(self) -> None:
        self.fetcher.close()
