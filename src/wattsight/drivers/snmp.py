"""wattsight driver for metered PDUs over SNMP: power and energy of every outlet and of the PDU.

One section is one PDU.  Every read is **one SNMP GET** holding every outlet's power and energy
and the whole PDU's (split only when ``max_varbinds`` says the agent takes fewer OIDs).  Vendor
presets know where the figures are and in which units (:mod:`.snmp_presets`); ``generic`` takes
the OIDs and scales from the configuration.  Values leave in SI units: power in W, energy as a
counter in J (wrapping counters, such as Eaton's Unsigned32 Wh registers, say so in their kind).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..errors import MeterReplyError
from ..sample import Batch, Probe, Series, now_ms, wrapping_counter
from .base import Driver, site_probe
from .snmp_common import Missing, SnmpClient, SnmpConfig, fill, host_label, type_name
from .snmp_presets import METRIC_KEYS, PRESETS, Metric

SAMPLE = """\
# A metered PDU over SNMP: power (W) and energy (J) of each outlet and of the whole PDU,
# all read in one SNMP GET per period.  One section per PDU.
[drivers.pdu-1]
type = "snmp"
period = 1.0                  # s between reads
host = "pdu-1.example.org"    # the PDU's SNMP agent
port = 161                    # UDP
version = "2c"                # "1", "2c" or "3"
community = "public"          # v1/v2c; for v3: user, auth_protocol, auth_key, priv_protocol, priv_key
preset = "apc"                # apc | eaton | raritan | servertech | liebert | generic
outlets = 24                  # outlets 1..24; or [1, 2, 7]; or a table {"1" = "node-1", "2" = "node-2"}
probe = "pdu-1-{outlet}"      # probe name of an outlet ({outlet}, {host}); <site>. is put in front
total = "pdu-1"               # probe name of the whole PDU (its input); "" = not read
metrics = ["power", "energy"] # what to read per outlet and for the total
max_varbinds = 0              # OIDs per GET the agent accepts; 0 = no limit (one request per read)

# A PDU whose MIB has no preset: give the OIDs ({outlet}, {pdu}, {input}) and the scales.
[drivers.pdu-2]
type = "snmp"
host = "pdu-2.example.org"
preset = "generic"
outlets = {"1" = "node-7", "2" = "node-8"}
power_oid = "1.3.6.1.4.1.99999.1.2.{outlet}"
power_scale = 0.1             # W per unit: the agent counts tenths of W
energy_oid = "1.3.6.1.4.1.99999.1.3.{outlet}"
energy_scale = 3600.0         # J per unit: the agent counts Wh (0.1 kWh would be 360000.0)
"""

_OID = re.compile(r"\.?\d+(\.\d+)+")
_INDEX = re.compile(r"\d+(\.\d+)*")


class SnmpPduConfig(SnmpConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "snmp"``: one PDU."""

    type: Literal["snmp"] = "snmp"
    preset: Literal[tuple(PRESETS)] = Field(description=f"the PDU's MIB: {', '.join(PRESETS)}")
    outlets: int | list[int] | dict[str, str] = Field(
        0, description="outlets to read: a count N (1..N), a list of numbers, or a table outlet -> probe name")
    probe: str = Field("{host}-outlet-{outlet}",
                       description="probe name of an outlet, with {outlet} (and {host}, dots as dashes); "
                                   "'<site>.' is added")
    total: str = Field("", description="probe name of the whole PDU (its input); empty: not read")
    metrics: list[Literal["power", "energy"]] = Field(["power", "energy"], min_length=1,
                                                      description="power (W) and/or energy (J counter)")
    pdu_index: int | None = Field(None, ge=0, description="{pdu} in OIDs: the PDU/unit/strapping index "
                                                          "(preset default: 1, Eaton 0)")
    input_index: int | None = Field(None, ge=0, description="{input} in OIDs: input, cord or branch (default 1)")
    power_oid: str | None = Field(None, description="outlet power OID, with {outlet}; overrides the preset")
    power_scale: float | None = Field(None, gt=0, description="W per unit of power_oid (0.1: tenths of W)")
    energy_oid: str | None = Field(None, description="outlet energy OID, with {outlet}; overrides the preset")
    energy_scale: float | None = Field(None, gt=0, description="J per unit of energy_oid (3600: Wh)")
    total_power_oid: str | None = Field(None, description="whole-PDU power OID; overrides the preset")
    total_power_scale: float | None = Field(None, gt=0, description="W per unit of total_power_oid")
    total_energy_oid: str | None = Field(None, description="whole-PDU energy OID; overrides the preset")
    total_energy_scale: float | None = Field(None, gt=0, description="J per unit of total_energy_oid")
    energy_wrap: float | None = Field(None, gt=0, description="raw units after which the energy OIDs wrap "
                                                              "to 0 (4294967296: Unsigned32); default: preset")
    max_power: float = Field(100_000.0, gt=0, description="W; a reading above this is refused as out of range")

    @model_validator(mode="after")
    def _check(self) -> SnmpPduConfig:
        if isinstance(self.outlets, int) and self.outlets < 0:
            raise ValueError(f"`outlets` = {self.outlets}: give a count (0 or more), a list or a table")
        if not self.outlet_map() and not self.total:
            raise ValueError("nothing to read: set `outlets` and/or `total`")
        if isinstance(self.outlets, dict):
            bad = [k for k in self.outlets if not _INDEX.fullmatch(k)]
            if bad:
                raise ValueError(f"`outlets` keys must be outlet numbers (index suffixes), not {bad}")
        elif "{outlet}" not in self.probe:
            raise ValueError("`probe` must contain {outlet}, or every outlet would get the same name")
        for name in list(self.outlet_map().values()) + ([self.total] if self.total else []):
            site_probe(name, "site")
        for key in METRIC_KEYS:
            oid = getattr(self, f"{key}_oid")
            if oid is not None and getattr(self, f"{key}_scale") is None:
                raise ValueError(f"`{key}_oid` needs `{key}_scale` (SI units per unit of the agent)")
            if oid is not None:
                self._check_oid(key, oid)
        wanted = [k for k in METRIC_KEYS if k.removeprefix("total_") in self.metrics
                  and (self.total if k.startswith("total_") else self.outlet_map())]
        missing = [k for k in wanted if self.metric(k) is None]
        if missing:
            raise ValueError(f"preset {self.preset!r} needs {', '.join(f'`{k}_oid`' for k in missing)} "
                             "(with the scales), or leave them out of `metrics`/`outlets`/`total`")
        return self

    def _check_oid(self, key: str, oid: str) -> None:
        if not key.startswith("total_") and "{outlet}" not in oid:
            raise ValueError(f"`{key}_oid` must contain {{outlet}}")
        text = fill(oid, f"{key}_oid", outlet=1, pdu=1, input=1)
        if not _OID.fullmatch(text):
            raise ValueError(f"`{key}_oid` = {oid!r} is not a numeric OID (like 1.3.6.1.4.1.318.1.1.26.9.4.3.1.7.{{outlet}})")

    def outlet_map(self) -> dict[str, str]:
        """outlet index (as in OIDs) -> probe name, before the site is added."""
        if isinstance(self.outlets, dict):
            return dict(self.outlets)
        numbers = range(1, self.outlets + 1) if isinstance(self.outlets, int) else self.outlets
        return {str(o): fill(self.probe, "probe", outlet=o, host=host_label(self.host)) for o in numbers}

    def metric(self, key: str) -> Metric | None:
        """The preset's metric ``key`` with the configuration's overrides."""
        base = PRESETS[self.preset].metric(key)
        oid, scale = getattr(self, f"{key}_oid"), getattr(self, f"{key}_scale")
        wrap = self.energy_wrap if "energy" in key else None
        if oid is not None:
            return Metric(oid, scale, wrap=wrap, name=f"{key}_oid")
        if base is None:
            return None
        return Metric(base.oid, scale or base.scale, base.digits_oid if scale is None else None,
                      wrap or base.wrap, base.name)


class Row:
    """One value of a read: which probe, which metric, which OID and how to scale it."""

    __slots__ = ("div", "key", "metric", "mul", "oid", "outlet", "probe", "unavailable")

    def __init__(self, probe: str, key: str, oid: str, metric: Metric, outlet: str | None,
                 unavailable: int | None) -> None:
        self.probe, self.key, self.oid, self.metric, self.outlet = probe, key, oid, metric, outlet
        # value * mul / div: a scale of 0.1 divides by 10 (1073 -> 107.3, not 107.30000000000001)
        inverse = 1 / metric.scale
        self.mul, self.div = (1.0, round(inverse)) if abs(inverse - round(inverse)) < 1e-9 else (metric.scale, 1)
        self.unavailable = unavailable  # the vendor's "not available" value, for its own OIDs

    @property
    def is_energy(self) -> bool:
        return self.key.endswith("energy")

    def series(self) -> Series:
        if not self.is_energy:
            return Series(self.probe, "power", "W")
        wrap = self.metric.wrap
        return Series(self.probe, "energy", "J", wrapping_counter(wrap * self.mul / self.div) if wrap else "counter")


class SnmpPduDriver(Driver):
    """Metered PDUs over SNMP: power and energy of each outlet and of the PDU, in one GET per read.

    Presets for APC, Eaton, Raritan, Server Technology and Liebert, or OIDs given."""

    Config = SnmpPduConfig
    SAMPLE = SAMPLE

    def __init__(self, config: SnmpPduConfig, *, site: str, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(config, site=site, clock=clock)
        self.rows = self._plan()
        self.oids = [r.oid for r in self.rows]
        names = [r.probe for r in self.rows]
        self.client = SnmpClient(config, what=f"{config.preset} PDU (probes {names[0]} ... {names[-1]})")
        self._ready = not any(r.metric.digits_oid for r in self.rows)
        self.series = tuple(r.series() for r in self.rows)
        self.sidx = np.arange(len(self.rows), dtype=np.uint32)

    def _id(self, name: str) -> str:
        return name if "." in name else f"{self.site}.{name}"

    def _plan(self) -> list[Row]:
        cfg, preset = self.config, PRESETS[self.config.preset]
        index = {"pdu": cfg.pdu_index if cfg.pdu_index is not None else preset.pdu,
                 "input": cfg.input_index if cfg.input_index is not None else preset.input}
        rows = []

        def na(key: str) -> int | None:
            return preset.unavailable if getattr(cfg, f"{key}_oid") is None else None

        for outlet, name in cfg.outlet_map().items():
            for m in cfg.metrics:
                metric = cfg.metric(m)
                rows.append(Row(self._id(name), m, metric.oid.format(outlet=outlet, **index).lstrip("."),
                                metric, outlet, na(m)))
        if cfg.total:
            for m in cfg.metrics:
                metric = cfg.metric(f"total_{m}")
                rows.append(Row(self._id(cfg.total), f"total_{m}", metric.oid.format(**index).lstrip("."),
                                metric, None, na(f"total_{m}")))
        self._index = index
        return rows

    def probes(self) -> list[Probe]:
        cfg, seen, out = self.config, set(), []
        for r in self.rows:
            if r.probe in seen:
                continue
            seen.add(r.probe)
            where = f"outlet {r.outlet}" if r.outlet is not None else "whole PDU (input)"
            out.append(Probe(r.probe, driver=cfg.type, period=cfg.period,
                             description=f"{where} of the {cfg.preset} PDU {cfg.agent} (SNMP)"))
        return out

    def read(self) -> Batch:
        if not self._ready:
            self._read_digits()
        raw = self.client.get(self.oids)
        t = int(self.clock())
        missing = [(r, v) for r, v in zip(self.rows, raw) if isinstance(v, Missing)]
        if missing:  # SNMPv1 stops at the first bad OID: report that one, not those it skipped
            raise self._missing(*next((m for m in missing if m[1].kind != "unknown"), missing[0]))
        values = np.fromiter((self._value(r, v) for r, v in zip(self.rows, raw)), np.float64, len(self.rows))
        return Batch(self.series, self.sidx, np.full(len(values), t, np.int64), values)

    def _read_digits(self) -> None:
        """Raritan: each sensor's decimal digits, read once (they do not change)."""
        where = {id(r): r.metric.digits_oid.format(outlet=r.outlet, **self._index).lstrip(".")
                 for r in self.rows if r.metric.digits_oid}
        oids = list(dict.fromkeys(where.values()))
        digits = dict(zip(oids, self.client.get(oids)))
        for r in self.rows:
            if id(r) not in where:
                continue
            v = digits[where[id(r)]]
            if not isinstance(v, int) or not 0 <= v <= 9:
                raise self._bad(r, f"has decimal digits at {where[id(r)]} answering {type_name(v)} "
                                   "(expected 0..9): check `pdu_index`, `input_index`, `outlets` and the preset")
            r.div *= 10**v
        self.series = tuple(r.series() for r in self.rows)
        self._ready = True

    def _value(self, row: Row, v) -> float:
        cfg = self.config
        if not isinstance(v, int):
            raise self._bad(row, f"answered {type_name(v)}, not a number: is the preset right?")
        if v == row.unavailable:
            raise self._bad(row, f"answered {v}, which the {cfg.preset} MIB uses for 'not available': "
                                    "this PDU does not measure it; leave it out of `metrics`/`outlets`")
        si = v * row.mul / row.div
        if si < 0 or (not row.is_energy and si > cfg.max_power):
            limit = "0 and up" if row.is_energy else f"0..{cfg.max_power:g} W (`max_power`)"
            raise self._bad(row, f"answered {v} = {si:g} {'J' if row.is_energy else 'W'}, out of range "
                                    f"({limit}): a wrong OID or scale?")
        return si

    def _what(self, row: Row) -> str:
        where = f"outlet {row.outlet}" if row.outlet is not None else "the whole PDU"
        return (f"OID {row.oid} ({self.config.preset} preset: {row.metric.name or row.key} of {where}, "
                f"probe {row.probe})")

    def _bad(self, row: Row, text: str) -> MeterReplyError:
        return MeterReplyError(f"{self._what(row)} {text}", probe=self.config.agent)

    def _missing(self, row: Row, v: Missing) -> MeterReplyError:
        key = row.key.removeprefix("total_")
        if row.outlet is not None:
            hint = (f"does the PDU have outlet {row.outlet}, and meter its {key}? Set `outlets` to the outlets "
                    f"it has, leave \"{key}\" out of `metrics`, or set `{key}_oid` and `{key}_scale` for this "
                    "model (and `pdu_index`/`input_index` for a daisy chain)")
        else:
            hint = (f"set `total_{key}_oid` and `total_{key}_scale` for this model, check "
                    "`pdu_index`/`input_index`, or set `total = \"\"`")
        return MeterReplyError(f"{self._what(row)} answered {v.kind}: {hint}", probe=self.config.agent)

    def close(self) -> None:
        self.client.close()
