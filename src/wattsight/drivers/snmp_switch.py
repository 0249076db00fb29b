"""wattsight driver for switches over SNMP: bytes in and out of each port (IF-MIB), per node.

Each configured port feeds the probe of the node plugged into it, as ``network_in`` and
``network_out`` byte counters, all ports in **one SNMP GET** per read.  The 64-bit counters
(ifHCInOctets / ifHCOutOctets) are read where the agent has them; where it does not (old
agents, SNMPv1), the 32-bit ifInOctets / ifOutOctets, published with the kind
``wrapping_counter(2**32)`` so that the traffic maths adds what passed before each wrap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..errors import MeterReplyError
from ..sample import Batch, Probe, Series, now_ms, wrapping_counter
from .base import Driver, site_probe
from .snmp_common import Missing, SnmpClient, SnmpConfig, fill, host_label, int_as_text, type_name

IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
#: (in, out) octet counters by width: IF-MIB ifXTable (Counter64) and ifTable (Counter32).
OCTETS = {64: ("1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.10"),
          32: ("1.3.6.1.2.1.2.2.1.10", "1.3.6.1.2.1.2.2.1.16")}
NAMES = {64: ("ifHCInOctets", "ifHCOutOctets"), 32: ("ifInOctets", "ifOutOctets")}
KIND = {64: "counter", 32: wrapping_counter(2**32)}

SAMPLE = """\
# A switch over SNMP: bytes in and out of each port (IF-MIB), credited to the node on the port.
# All ports in one SNMP GET per period; 64-bit counters, or 32-bit ones where the agent has no other.
[drivers.switch-1]
type = "snmp-switch"
period = 1.0                  # s between reads
host = "switch-1.example.org" # the switch's SNMP agent
version = "2c"                # "1", "2c" or "3" (v1 has no 64-bit counters)
community = "public"          # v1/v2c; for v3: user, auth_protocol, auth_key, priv_protocol, priv_key
ports = {"1" = "node-1", "2" = "node-2", "Gi1/0/3" = "node-3"}  # ifIndex or ifName -> probe name
counters = "auto"             # "auto": 64-bit where present, else 32-bit; or "64", "32"
"""

_DIGITS = re.compile(r"\d+")


class SnmpSwitchConfig(SnmpConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "snmp-switch"``: one switch."""

    type: Literal["snmp-switch"] = "snmp-switch"
    ports: int | list[int] | dict[str, str] = Field(
        description="ports to read: a count N (ifIndex 1..N), a list of ifIndex, or a table "
                    "ifIndex or ifName -> probe name of the node on that port")
    probe: str = Field("{host}-port-{port}",
                       description="probe name of a port given by number, with {port} (its ifIndex) and {host} "
                                   "(dots as dashes)")
    ports_by: Literal["auto", "ifindex", "ifname"] = Field(
        "auto", description="how `ports` table keys name ports: auto (digits: ifIndex, else ifName), "
                            "ifindex, ifname")
    counters: Literal["auto", "64", "32"] = Field(
        "auto", description="octet counters: auto (64-bit where the agent has them, else 32-bit), 64, 32")

    _counters_text = field_validator("counters", mode="before")(int_as_text)

    @model_validator(mode="after")
    def _check(self) -> SnmpSwitchConfig:
        if not self.ports:
            raise ValueError("`ports` is empty: give a count, a list of ifIndex or a table")
        if self.version == "1" and self.counters == "64":
            raise ValueError('SNMPv1 has no 64-bit counters: set counters = "32" (or "auto"), or version = "2c"')
        if not isinstance(self.ports, dict) and "{port}" not in self.probe:
            raise ValueError("`probe` must contain {port}, or every port would get the same name")
        if self.ports_by == "ifindex" and isinstance(self.ports, dict):
            bad = [k for k in self.ports if not _DIGITS.fullmatch(k)]
            if bad:
                raise ValueError(f'ports_by = "ifindex" but `ports` keys {bad} are not numbers')
        for name in self.port_map().values():
            site_probe(name, "site")
        return self

    def port_map(self) -> dict[str, str]:
        """port (ifIndex digits or ifName) -> probe name, before the site is added."""
        if isinstance(self.ports, dict):
            return dict(self.ports)
        numbers = range(1, self.ports + 1) if isinstance(self.ports, int) else self.ports
        return {str(i): fill(self.probe, "probe", port=i, host=host_label(self.host)) for i in numbers}

    def by_name(self, key: str) -> bool:
        return self.ports_by == "ifname" or (self.ports_by == "auto" and not _DIGITS.fullmatch(key))


class SnmpSwitchDriver(Driver):
    """Switch ports over SNMP (IF-MIB): bytes in and out per port, credited to the node's probe."""

    Config = SnmpSwitchConfig
    SAMPLE = SAMPLE

    def __init__(self, config: SnmpSwitchConfig, *, site: str, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(config, site=site, clock=clock)
        self.ports = [(key, name if "." in name else f"{site}.{name}") for key, name in config.port_map().items()]
        first, last = self.ports[0][1], self.ports[-1][1]
        self.client = SnmpClient(config, what=f"switch (probes {first} ... {last})")
        start = 32 if config.counters == "32" or config.version == "1" else 64
        self.bits = [start] * len(self.ports)
        self.index: list[int] | None = None  # ifIndex of each port, once names are resolved
        self._plan()

    def _plan(self) -> None:
        self.series = tuple(Series(probe, metric, "B", KIND[bits])
                            for (_, probe), bits in zip(self.ports, self.bits)
                            for metric in ("network_in", "network_out"))
        self.sidx = np.arange(len(self.series), dtype=np.uint32)

    def probes(self) -> list[Probe]:
        cfg = self.config
        return [Probe(probe, driver=cfg.type, period=cfg.period,
                      description=f"switch port {key} of {cfg.agent} (SNMP IF-MIB)") for key, probe in self.ports]

    def oids(self, ports: range | list[int]) -> list[str]:
        out = []
        for p in ports:
            in_oid, out_oid = OCTETS[self.bits[p]]
            out += [f"{in_oid}.{self.index[p]}", f"{out_oid}.{self.index[p]}"]
        return out

    def read(self) -> Batch:
        if self.index is None:
            self.index = self._resolve()
        everyone = range(len(self.ports))
        raw = self.client.get(self.oids(everyone))
        t = int(self.clock())
        lacking = [p for p in everyone if any(isinstance(v, Missing) for v in raw[2 * p:2 * p + 2])]
        if lacking and self.config.counters == "auto" and self.config.version != "1":
            retry = [p for p in lacking if self.bits[p] == 64]
            for p in retry:  # this agent has no 64-bit counters here: fall back, once and for all
                self.bits[p] = 32
            if retry:
                self._plan()
                again = self.client.get(self.oids(retry))
                t = int(self.clock())
                for n, p in enumerate(retry):
                    raw[2 * p:2 * p + 2] = again[2 * n:2 * n + 2]
        bad = [(i, v) for i, v in enumerate(raw) if isinstance(v, Missing)]
        if bad:  # SNMPv1 stops at the first bad OID: report that one, not those it skipped
            i, v = next((b for b in bad if b[1].kind != "unknown"), bad[0])
            raise self._bad(*divmod(i, 2), v)
        values = np.fromiter((self._value(i, v) for i, v in enumerate(raw)), np.float64, len(raw))
        return Batch(self.series, self.sidx, np.full(len(values), t, np.int64), values)

    def _value(self, i: int, v) -> float:
        p, direction = divmod(i, 2)
        bits = self.bits[p]
        if not isinstance(v, int) or not 0 <= v < 2**bits:
            raise self._bad(p, direction, v)
        return float(v)

    def _bad(self, p: int, direction: int, v) -> MeterReplyError:
        cfg, (key, probe), bits = self.config, self.ports[p], self.bits[p]
        oid = f"{OCTETS[bits][direction]}.{self.index[p]}"
        what = f"OID {oid} ({NAMES[bits][direction]} of port {key}, ifIndex {self.index[p]}, probe {probe})"
        if not isinstance(v, Missing):
            return MeterReplyError(f"{what} answered {type_name(v)}: not a {bits}-bit counter", probe=cfg.agent)
        if cfg.by_name(key):
            self.index = None  # interfaces may have been renumbered: look the names up again next time
        if bits == 64 and cfg.counters == "64":
            hint = 'this agent has no 64-bit counters for it: set counters = "auto" or "32"'
        else:
            hint = "no such interface: check `ports` (`ports_by`) against the switch's ifIndex/ifName"
        return MeterReplyError(f"{what} answered {v.kind}: {hint}", probe=cfg.agent)

    def _resolve(self) -> list[int]:
        """The ifIndex of each port: numbers as given, names looked up in ifName (else ifDescr)."""
        cfg = self.config
        named = [key for key, _ in self.ports if cfg.by_name(key)]
        table: dict[str, int] = {}
        if named:
            for column in (IF_NAME, IF_DESCR):  # ifName first; ifDescr for agents without ifXTable
                for oid, v in self.client.walk(column):
                    name = v.decode(errors="replace") if isinstance(v, bytes) else str(v)
                    table.setdefault(name, int(oid.rsplit(".", 1)[1]))
                if all(k in table for k in named):
                    break
            unknown = [k for k in named if k not in table]
            if unknown:
                known = ", ".join(sorted(table)[:12]) or "none"
                raise MeterReplyError(f"the switch has no interface named {', '.join(unknown)} in ifName or ifDescr "
                                      f"(it has: {known}); fix `ports`", probe=cfg.agent)
        return [table[key] if cfg.by_name(key) else int(key) for key, _ in self.ports]

    def close(self) -> None:
        self.client.close()
