"""Kwapi driver sections -> wattsight ``[drivers.*]`` sections that validate against the real drivers.

One function per Kwapi driver family, each faithful to how that Kwapi driver read its meter
(openstack-archive/kwapi and kwapi-g5k, ``kwapi/drivers/*.py``):

* ``Snmp``, ``Raritan``, ``Eaton`` walk one OID and give the n-th row of the walk to the n-th
  probe, publishing the raw integer in the ``data_type`` unit -> ``snmp``: the vendor preset
  when the OID is that vendor's outlet power column, else ``preset = "generic"`` with
  ``power_oid = "<oid>.{outlet}"``; ``outlets`` maps each position to its full Kwapi probe id.
* ``SnmpIn``, ``SnmpOut`` and ``Snmp`` sections of network bytes walk IF-MIB octet counters
  -> ``snmp-switch`` (both directions in one section; ``ports`` maps positions to probe ids).
* ``Ipmi`` ran ``ipmitool -I <interface> -H <host> sensor reading "<sensor>"`` -> ``ipmi`` with
  ``source = "sdr"``; kwapi-g5k took the BMC from each probe id ``<site>.<host>.<n>``.
* ``Wattsup`` read one meter on ``device`` at 115200 bit/s for one probe -> ``serial``.
* ``Json_url`` read ``reply[<name>]["watt"]`` (and ``timestamp``) with ``<name>`` from
  ``probes_names`` -> ``http``.
* ``Dummy``, ``DummyWatts``, ``DummyNet`` -> ``dummy``.

Anything else, and what a wattsight driver cannot do the Kwapi way, stays as commented-out
text saying why: never dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import tomli_w

from .drivers.snmp_presets import PRESETS
from .drivers.snmp_switch import NAMES, OCTETS
from .errors import ConfigError
from .kwapi_ini import Channel, KwapiSection

#: Kwapi data_type names -> wattsight metric families.
METRICS = {"power": "power", "energy": "energy", "network_in": "network", "network_out": "network",
           "switch.port.receive.bytes": "network", "switch.port.transmit.bytes": "network"}
#: Kwapi data_type name -> the direction of the bytes it meant.
DIRECTION = {"network_in": "in", "switch.port.receive.bytes": "in",
             "network_out": "out", "switch.port.transmit.bytes": "out"}
POWER_SCALE = {"W": 1.0, "kW": 1000.0, "mW": 0.001}
ENERGY_SCALE = {"J": 1.0, "kJ": 1000.0, "Wh": 3600.0, "kWh": 3_600_000.0}
#: The outlet power column (without its index) of the presets whose outlets are indexed
#: [pdu.]outlet, as Kwapi's walk of it meets them: APC rPDU2 and Eaton (strapping index first).
APC_POWER = PRESETS["apc"].power.oid.split(".{")[0]
EATON_POWER = PRESETS["eaton"].power.oid.split(".{")[0]
#: Raritan's first MIB (PDU-MIB, Dominion PX), outletActivePower in W: what Kwapi's Raritan class walked.
RARITAN_PDU_MIB_POWER = "1.3.6.1.4.1.13742.4.1.2.2.1.7"
#: IF-MIB octet columns -> (direction, counter bits, MIB name).
IF_OCTETS = {oid: (d, str(bits), NAMES[bits][i]) for bits, pair in OCTETS.items() for i, (d, oid)
             in enumerate(zip(("in", "out"), pair))}


# -- TOML text ------------------------------------------------------------------------------------
def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value) -> str:
    """A value on one line, as people write them (inline lists and tables)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


def kv(key: str, value) -> str:
    return f"{toml_key(key)} = {toml_value(value)}"


@dataclass
class Section:
    """One ``[drivers.<name>]`` being written: its lines, then its sub-tables."""

    name: str
    lines: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    def set(self, key: str, value) -> None:
        self.lines.append(kv(key, value))

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def table(self, key: str, rows: dict) -> None:
        """A sub-table ``[drivers.<name>.<key>]``, one row a line (a 48-port switch stays readable)."""
        self.tables += [f"[drivers.{toml_key(self.name)}.{toml_key(key)}]", *(kv(k, v) for k, v in rows.items())]

    def text(self) -> list[str]:
        return [f"\n[drivers.{toml_key(self.name)}]", *self.lines, *self.tables]


@dataclass
class Converted:
    """What one Kwapi section became: TOML blocks, and the nodes each probe feeds."""

    blocks: list[list[str]]
    nodes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Context:
    site: str
    dummy_network: dict[tuple, str] = field(default_factory=dict)  # probe ids -> first dummy section
    switch_ports: dict[tuple, str] = field(default_factory=dict)  # (host, position, probe) -> section


def commented(ks: KwapiSection, why: str) -> Converted:
    """The Kwapi section kept as comments, with the reason it has no wattsight equivalent."""
    lines = [f"\n# Kwapi [{ks.name}] (driver {ks.driver}) is not converted: {why}.", "# Its Kwapi text:"]
    return Converted([lines + [f"#   {raw}".rstrip() for raw in ks.ini.raw]])


def begin(ks: KwapiSection, name: str, wtype: str, params: dict) -> Section:
    """A new ``[drivers.<name>]`` of type ``wtype``, saying where it comes from; Kwapi's ``resolution``
    (the seconds kwapi-g5k's Snmp driver slept between reads) becomes ``period``."""
    s = Section(name)
    s.note(f"from Kwapi [{ks.name}], driver {ks.driver}" + (f", data_type {ks.data_type}" if ks.data_type else ""))
    s.set("type", wtype)
    if "resolution" in params:
        s.set("period", _number(ks, "resolution", params.pop("resolution")))
    return s


def _number(ks: KwapiSection, key: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {value!r} is not a number", **ks.where("parameters")) from None


def need(ks: KwapiSection, params: dict, key: str, what: str) -> str:
    """The parameter ``key``, taken out of ``params``; a ConfigError naming the section if it is missing."""
    if params.get(key) in (None, ""):
        raise ConfigError(f"no {key!r}", **ks.where("parameters"), expected=f"{{'{key}': {what}, ...}}")
    return str(params.pop(key))


def leftovers(s: Section, params: dict, why: str = "") -> None:
    """The parameters nothing took, as a comment: nothing is dropped silently."""
    if params:
        s.note("Kwapi parameters without a wattsight equivalent" + why + ": "
               + ", ".join(f"{k} = {v!r}" for k, v in params.items()))


def finish(s: Section, channels: list[Channel]) -> Converted:
    """The section written, and the nodes its probes feed."""
    return Converted([s.text()], {c.probe: c.nodes for c in channels})


# -- dummy ----------------------------------------------------------------------------------------
def dummy(ks: KwapiSection, ctx: Context, metric: str) -> Converted:
    params = dict(ks.params)
    s = begin(ks, ks.name, "dummy", params)
    ids = [c.probe for c in ks.channels]
    s.set("probes", ids)
    if metric != "power":
        s.set("metrics", [metric])
    if metric == "network":  # the dummy's network gives both directions: one section is enough
        first = ctx.dummy_network.setdefault(tuple(ids), ks.name)
        if first != ks.name:
            s.note(f"the dummy's network metric already gives both directions in [drivers.{first}]")
            s.set("enabled", False)
    for key in ("min", "max"):
        if key in params:
            s.set(key, _number(ks, key, params.pop(key)))
    leftovers(s, params)
    return finish(s, ks.channels)


# -- SNMP -----------------------------------------------------------------------------------------
def _oid(ks: KwapiSection, text: str) -> str:
    """A numeric OID: kwapi-g5k wrote them as snmpwalk prints them (``iso.3.6.1...``)."""
    oid = text.strip()
    oid = ("1." + oid[4:] if oid.startswith("iso.") else oid).lstrip(".")
    if not re.fullmatch(r"\d+(\.\d+)+", oid):
        raise ConfigError(f"oid {text!r} is not a numeric OID", **ks.where("parameters"),
                          expected="digits and dots, e.g. '1.3.6.1.4.1.318.1.1.26.9.4.3.1.7'")
    return oid


def _agent(ks: KwapiSection, s: Section, params: dict, version: str | None) -> tuple[str, str]:
    """host, version and credentials as Kwapi sent them; returns the host and the version."""
    host = need(ks, params, "ip", "the agent's address")
    s.set("host", host)
    if version is None:
        version = str(params.pop("protocol", "")).strip()
        if version not in ("1", "2c", "3"):
            s.note((f"Kwapi's protocol {version!r} is not 1, 2c or 3" if version else "Kwapi had no protocol")
                   + ": it read nothing; wattsight's default is 2c")
            version = "2c"
    s.set("version", version)
    if version == "3":
        s.set("user", need(ks, params, "user", "the SNMPv3 user"))
        s.note("Kwapi sent SNMPv3 without authentication nor privacy (noAuthNoPriv): better set auth_key and "
               "priv_key, with auth_protocol and priv_protocol, on the agent and here")
        s.set("auth_protocol", "none")
        s.set("priv_protocol", "none")
    elif params.get("community") is not None:
        s.set("community", str(params.pop("community")))
    return host, version


def _preset(oid: str, metric: str) -> tuple[str, int | None]:
    """The preset whose outlet power column Kwapi walked (and Eaton's strapping index), else generic."""
    if metric == "power" and oid == APC_POWER:
        return "apc", None
    if metric == "power" and re.fullmatch(re.escape(EATON_POWER) + r"(\.\d+)?", oid):
        return "eaton", int(oid[len(EATON_POWER) + 1:] or 0)  # .0: the first PDU of a daisy chain
    return "generic", None


def snmp(ks: KwapiSection, ctx: Context, metric: str) -> Converted:
    """A PDU Kwapi walked -> ``snmp`` (its n-th row is outlet n); network bytes -> ``snmp-switch``."""
    cls = ks.driver.lower()
    if metric == "network" or cls in ("snmpin", "snmpout"):
        return _switch(ks, ctx)
    params = dict(ks.params)
    fixed = {"raritan": (RARITAN_PDU_MIB_POWER, 20), "eaton": (EATON_POWER, 24)}.get(cls)
    oid, rows = fixed if fixed else (_oid(ks, need(ks, params, "oid", "the OID walked")), None)
    unit = str(ks.data_type.get("unit", "W" if metric == "power" else "Wh"))
    scales = POWER_SCALE if metric == "power" else ENERGY_SCALE
    if unit not in scales:
        return commented(ks, f"its values are in {unit!r}, which is no {metric} unit wattsight knows "
                             f"({', '.join(scales)})")
    s = begin(ks, ks.name, "snmp", params)
    host, _ = _agent(ks, s, params, "3" if fixed else None)
    channels = [c for c in ks.channels if rows is None or c.position <= rows]
    if len(channels) < len(ks.channels):
        s.note(f"Kwapi's {ks.driver} driver read the first {rows} outlets only: probes "
               f"{[c.probe for c in ks.channels if c.position > rows]} were never read, and are not here")
    preset, strap = _preset(oid, metric)
    s.set("preset", preset)
    if strap is not None:
        s.set("pdu_index", strap)
    elif preset == "generic":
        s.set(f"{metric}_oid", oid + ".{outlet}")
        s.set(f"{metric}_scale", scales[unit])
    s.set("metrics", [metric])
    if preset != "generic":
        s.note(f"the {preset} preset also reads each outlet's energy counter: add \"energy\" to `metrics` "
               "(wattsight prefers it to integrating the power)")
    example = PRESETS[preset].power.oid.format(pdu=strap, outlet="<n>") if strap is not None \
        else f"{oid}.<n>"
    s.note(f"Kwapi walked {oid} and gave its n-th row to its n-th probe; wattsight reads {example} for "
           "outlet n" + (": the same rows, this table being indexed by outlet number" if preset != "generic"
                         else ": the same rows when the table's rows are numbered 1, 2, 3... (check with "
                              f"`snmpwalk -v <version> -c <community> {host} {oid}`)"))
    if ks.skipped:
        s.note(f"positions Kwapi skipped (None, not read): {', '.join(map(str, ks.skipped))}")
    leftovers(s, params)
    s.table("outlets", {str(c.position): c.probe for c in channels})
    return finish(s, channels)


def _switch(ks: KwapiSection, ctx: Context) -> Converted:
    """An IF-MIB octets column Kwapi walked -> ``snmp-switch`` (both directions; a later section on
    the same ports of the same switch is written with ``enabled = false``)."""
    params = dict(ks.params)
    oid = _oid(ks, need(ks, params, "oid", "the IF-MIB octets column walked"))
    if oid not in IF_OCTETS:
        return commented(ks, f"the snmp-switch driver reads the IF-MIB octet counters (ifHCInOctets "
                             f"{OCTETS[64][0]}, ifHCOutOctets {OCTETS[64][1]}, or their 32-bit ifInOctets/"
                             f"ifOutOctets); {oid} is none of them")
    direction, bits, mib = IF_OCTETS[oid]
    s = begin(ks, ks.name, "snmp-switch", params)
    host, version = _agent(ks, s, params, None)
    if bits == "64" and version == "1":
        s.note(f"SNMPv1 cannot carry the 64-bit {mib} Kwapi asked for (it read nothing): wattsight reads the "
               "32-bit counters")
        bits = "32"
    s.set("counters", bits)
    label = str(ks.data_type.get("name", ""))
    other = "out" if direction == "in" else "in"
    if DIRECTION.get(label, direction) != direction:
        s.note(f"Kwapi labelled these bytes {label} (seen from the node: what a node sends, its port "
               f"receives); wattsight names the port's direction: {mib} is network_{direction}")
    s.note(f"wattsight reads both directions of each port: network_{direction} ({mib}) and network_{other}")
    keys = {c.probe: (host, c.position, c.probe) for c in ks.channels}
    seen = {ctx.switch_ports[k] for k in keys.values() if k in ctx.switch_ports}
    fresh = [c for c in ks.channels if keys[c.probe] not in ctx.switch_ports]
    if not fresh:
        s.note(f"[drivers.{min(seen)}] already reads both directions of these ports")
        s.set("enabled", False)
        fresh = ks.channels
    elif seen:
        s.note(f"ports already read by [drivers.{', '.join(sorted(seen))}] are left out")
    for c in fresh:
        ctx.switch_ports.setdefault(keys[c.probe], ks.name)
    s.set("ports_by", "ifindex")
    s.note(f"Kwapi walked {oid} and gave its n-th row to its n-th probe; the keys of `ports` are those "
           "positions taken as ifIndex: right when the switch numbers its interfaces 1, 2, 3... without gaps "
           f"(check with `snmpwalk -v <version> -c <community> {host} 1.3.6.1.2.1.31.1.1.1.1`); otherwise key "
           "each probe by its interface name (ifName) and remove ports_by")
    if ks.skipped:
        s.note(f"positions Kwapi skipped (None, not read): {', '.join(map(str, ks.skipped))}")
    leftovers(s, params)
    s.table("ports", {str(c.position): c.probe for c in fresh})
    return finish(s, fresh)
