"""The inventory of a site (PDUs, BMCs, nodes, switches) read from YAML, validated with lines.

An inventory says what is wired to what: which PDU outlets feed each node (several for a node
with two PSUs, or fed by two PDUs), which PDUs are measured (an upstream PDU may not be), each
node's BMC, and which switch port leads to each node or to another switch.  The shapes follow
the Grid'5000 reference repository (``nodes.<n>.pdu: [{uid, port}]``, switch ports naming their
neighbour).  :mod:`wattsight.inventory_toml` turns it into a wattsight configuration.

Every problem is reported like the configuration's: ``file:line: key: problem (expected ...).
Hint: ...``, one per line, gathered in one :class:`~wattsight.errors.ConfigError`.  The lines
come from the YAML parser's node marks.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config.explain import Issue, translate
from .config.load import read_text
from .errors import SampleError
from .inventory_yaml import Source, parse_yaml
from .sample import check_probe_id

#: Vendor names (as inventories write them, lower case) -> the SNMP driver's preset.
VENDORS = {"apc": "apc", "american power conversion": "apc", "schneider electric": "apc",
           "eaton": "eaton", "eaton corporation": "eaton", "raritan": "raritan",
           "server technology": "servertech", "servertech": "servertech", "sentry": "servertech",
           "legrand": "servertech", "liebert": "liebert", "vertiv": "liebert"}
_SITE = re.compile(r"^[A-Za-z0-9_-]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Snmp(_Model):
    """How to reach an SNMP agent (a PDU or a switch)."""

    version: Literal["1", "2c", "3"] = Field("2c", description='the SNMP version: "1", "2c" or "3"')
    community: str = Field("public", description="the community (versions 1 and 2c)")
    port: int = Field(161, ge=1, le=65535, description="the agent's UDP port")
    user: str | None = Field(None, description="the USM user (version 3)")
    auth_protocol: str | None = Field(None, description="version 3: e.g. SHA or MD5")
    auth_key: str | None = Field(None, description="version 3: the authentication pass phrase")
    priv_protocol: str | None = Field(None, description="version 3: e.g. AES or DES")
    priv_key: str | None = Field(None, description="version 3: the privacy pass phrase")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v):
        # YAML reads `version: 2` as a number; "2" is how people say 2c.
        v = str(v).lower() if isinstance(v, (int, str)) and not isinstance(v, bool) else v
        return {"2": "2c", "v1": "1", "v2c": "2c", "v3": "3"}.get(v, v)

    @model_validator(mode="after")
    def _v3_user(self) -> Snmp:
        if self.version == "3" and not self.user:
            raise ValueError("SNMP version 3 needs `user` (and auth_key / priv_key if the agent asks)")
        return self


class Oids(_Model):
    """Custom OIDs, for a PDU without a preset or to override one (numbers as snmpwalk -On prints them)."""

    outlet_power: str | None = Field(None, description="W per outlet: an OID prefix (the outlet number is "
                                                       "appended) or a template with {outlet}")
    outlet_power_scale: float = Field(1.0, gt=0, description="W per unit of outlet_power (0.1: tenths of W)")
    outlet_energy: str | None = Field(None, description="energy per outlet: an OID prefix or a template with {outlet}")
    outlet_energy_scale: float = Field(3600.0, gt=0, description="J per unit of outlet_energy (3600: Wh)")
    total_power: str | None = Field(None, description="W of the whole PDU: one OID")
    total_power_scale: float = Field(1.0, gt=0, description="W per unit of total_power")

    @field_validator("total_power", mode="before")
    @classmethod
    def _one(cls, v):
        if isinstance(v, list) and len(v) == 1:  # Grid'5000 writes total_oids as a list
            return v[0]
        if isinstance(v, list):
            raise ValueError(f"{len(v)} OIDs: the PDU driver reads one total; list its outlets instead "  # noqa: TRY004
                             "(per_outlet: true), or describe each input as its own PDU")
        return v

    @field_validator("outlet_power", "outlet_energy")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        return v if "{outlet}" in v else _oid(v) + ".{outlet}"

    @field_validator("total_power")
    @classmethod
    def _numeric(cls, v: str | None) -> str | None:
        return None if v is None else _oid(v)


def _oid(text: str) -> str:
    """A numeric OID; ``iso.3.6...`` (as snmpwalk prints them) is accepted and written ``1.3.6...``."""
    text = text.strip().lstrip(".")
    text = "1" + text[3:] if text.startswith("iso.") else text
    if not re.fullmatch(r"\d+(\.\d+)+(\.\{outlet\})?", text):
        raise ValueError(f"{text!r} is not a numeric OID such as 1.3.6.1.4.1.534.6.6.7.6.5.1.3.0")
    return text


class Pdu(_Model):
    """A PDU or a wattmeter: measured per outlet, as a whole, or not at all."""

    vendor: str = Field("", description="the maker (APC, Eaton, Raritan, Server Technology, Liebert): picks the OIDs")
    preset: str | None = Field(None, description="the SNMP driver's preset (apc, eaton, raritan, servertech, "
                                                 "liebert), when the vendor name does not give it")
    model: str = Field("", description="free text, copied to the probes' description")
    host: str | None = Field(None, description="the PDU's address (default: its name)")
    snmp: Snmp = Field(default_factory=Snmp, description="version, community, port (v3: user and keys)")
    per_outlet: bool = Field(True, description="true: one probe per outlet; false: one probe for the whole PDU")
    monitored: bool = Field(True, description="false: not measured (e.g. an upstream PDU): its nodes get no probe")
    outlets: int | None = Field(None, ge=1, description="the number of outlets, to check the ports")
    oids: Oids = Field(default_factory=Oids, description="custom OIDs (outlet_power, outlet_energy, total_power)")
    period: float | None = Field(None, gt=0, description="seconds between reads (default: the driver's)")


class Feed(_Model):
    """One power feed of a node: a PDU (by its ``uid``) and the outlet (``port``)."""

    uid: str = Field(description="the PDU's name, a key of `pdus`")
    port: int | None = Field(None, ge=0, description="the outlet number (none: a PDU measured as a whole)")
    kind: str = Field("", description="free text (Grid'5000 writes e.g. wattmetre-only)")


class Bmc(_Model):
    """A node's BMC, read over IPMI or Redfish."""

    type: Literal["ipmi", "redfish"] = Field(description="ipmi or redfish")
    host: str = Field(description="the BMC's address")
    port: int | None = Field(None, ge=1, le=65535, description="the BMC's port (default: the protocol's)")
    username: str | None = Field(None, description="the BMC user")
    password: str | None = Field(None, description="the BMC password (or password_file)")
    password_file: str | None = Field(None, description="a file whose first line is the password")
    verify_tls: bool = Field(True, description="redfish: check the BMC's https certificate (false: self-signed)")
    period: float | None = Field(None, gt=0, description="seconds between reads (default: the driver's)")


class Node(_Model):
    """A node: the outlets feeding it and its BMC."""

    pdu: list[Feed] = Field([], description="the outlets feeding it: [{uid: <pdu>, port: <outlet>}, ...]")
    bmc: Bmc | None = Field(None, description="its BMC: {type: ipmi|redfish, host, username, password}")
    description: str = Field("", description="free text")


class SwitchPort(_Model):
    """What is at the other end of a switch port: a node, or another switch (an uplink)."""

    node: str | None = Field(None, description="the node on this port, a key of `nodes` (or a new node)")
    interface: str | None = Field(None, description="the node's interface (eth0, ...), for the description")
    uplink: str | None = Field(None, description="the switch or router at the other end (not a node)")
    description: str = Field("", description="free text")

    @model_validator(mode="after")
    def _one_end(self) -> SwitchPort:
        if self.node and self.uplink:
            raise ValueError("a port leads to a node or to an uplink, not both")
        return self


class Switch(_Model):
    """A switch read over SNMP (IF-MIB byte counters of the listed ports)."""

    vendor: str = Field("", description="free text")
    model: str = Field("", description="free text")
    host: str | None = Field(None, description="the switch's address (default: its name)")
    snmp: Snmp = Field(default_factory=Snmp, description="version, community, port (v3: user and keys)")
    ports: dict[str, SwitchPort] = Field({}, description="port (ifName or ifIndex) -> {node, interface} or {uplink}")
    period: float | None = Field(None, gt=0, description="seconds between reads (default: the driver's)")


class Inventory(_Model):
    """A whole inventory file."""

    site: str = Field(description="the site: the first part of every probe and node id")
    period: float | None = Field(None, gt=0, description="seconds between reads of every device, unless it sets its own")
    pdus: dict[str, Pdu] = Field({}, description="PDUs and wattmeters by name")
    nodes: dict[str, Node] = Field({}, description="nodes by name, with the outlets feeding them and their BMC")
    switches: dict[str, Switch] = Field({}, description="switches by name, with their ports")

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        if not _SITE.match(v):
            raise ValueError(f"{v!r} is not a site name: letters, digits, '-' or '_', e.g. 'lyon'")
        return v


# -- validation -----------------------------------------------------------------------------


def _unwrap(tp):
    """``X`` for ``X | None``; other types unchanged."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    is_union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    return args[0] if is_union and len(args) == 1 else tp


def _owner(loc: tuple) -> tuple[type[BaseModel], int]:
    """The model that owns the last key of ``loc`` and where its part of ``loc`` starts."""
    model, start, current = Inventory, 0, Inventory
    for i, part in enumerate(loc):
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            model, start = current, i
            if str(part) not in current.model_fields:
                break
            current = _unwrap(current.model_fields[str(part)].annotation)
        elif origin in (dict, list):
            current = _unwrap(typing.get_args(current)[-1])
        else:
            break
    return model, start


def _pydantic_issues(exc: ValidationError) -> list[Issue]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        model, start = _owner(loc)
        out.append(translate({**err, "loc": loc[start:]}, model, loc[:start]))
    return out


def _close(name: str, known) -> str | None:
    near = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {near[0]!r}?" if near else None


def _names(inv: Inventory) -> list[Issue]:
    """Names that cannot make probe ids, and devices sharing a name."""
    issues = []
    for group in ("pdus", "nodes", "switches"):
        for name in getattr(inv, group):
            try:
                check_probe_id(f"{inv.site}.{name}")
            except SampleError:
                issues.append(Issue((group, name), f"{name!r} cannot be part of a probe id",
                                    "letters, digits and - _ . : / @ +", "rename it"))
    for sw, switch in inv.switches.items():
        for port, end in switch.ports.items():
            try:
                check_probe_id(f"{inv.site}.{sw}.{port}")
                check_probe_id(f"{inv.site}.{end.node or 'x'}")
            except SampleError:
                issues.append(Issue(("switches", sw, "ports", port), "the port or its node cannot be part of a "
                                    "probe id", "letters, digits and - _ . : / @ +"))
    for name in set(inv.pdus) & set(inv.switches):
        issues.append(Issue(("switches", name), "a PDU has the same name, so their probes would too",
                            hint="give each device its own name"))
    return issues


def _feeds(inv: Inventory) -> list[Issue]:
    """Every node's outlets name a known PDU and an outlet it has."""
    issues = []
    seen: dict[tuple[str, int | None], str] = {}
    for name, node in inv.nodes.items():
        for i, feed in enumerate(node.pdu):
            loc = ("nodes", name, "pdu", i)
            pdu = inv.pdus.get(feed.uid)
            if pdu is None:
                issues.append(Issue(loc + ("uid",), f"no PDU named {feed.uid!r}", "a name listed under `pdus`",
                                    _close(feed.uid, inv.pdus) or "add it under `pdus` (monitored: false "
                                    "if it is not measured)"))
                continue
            if feed.port is None and pdu.monitored and pdu.per_outlet:
                issues.append(Issue(loc, "missing `port`: this PDU is measured per outlet",
                                    "the outlet number, e.g. port: 3",
                                    "or set per_outlet: false on the PDU if it is measured as a whole"))
            if feed.port is not None and pdu.outlets is not None and feed.port > pdu.outlets:
                issues.append(Issue(loc + ("port",), f"outlet {feed.port} is past the PDU's {pdu.outlets} outlets",
                                    f"0 to {pdu.outlets}", f"check pdus.{feed.uid}.outlets or the port"))
            if (feed.uid, feed.port) in seen and seen[(feed.uid, feed.port)] == name:
                issues.append(Issue(loc, f"{feed.uid} port {feed.port} is listed twice for this node",
                                    hint="list each outlet once"))
            seen.setdefault((feed.uid, feed.port), name)
    return issues


def preset_of(pdu: Pdu) -> str | None:
    """The SNMP driver's preset for a PDU: ``preset``, else its vendor's, else "generic" with custom OIDs."""
    if pdu.preset:
        return pdu.preset
    known = VENDORS.get(pdu.vendor.strip().lower())
    if known:
        return known
    return "generic" if (pdu.oids.outlet_power or pdu.oids.total_power) else None


def _presets(inv: Inventory) -> list[Issue]:
    """Every measured PDU has OIDs: a preset the driver knows, or custom ones."""
    try:
        from .drivers.snmp_presets import PRESETS
        known = list(PRESETS)
    except ImportError:  # the driver is not there: its own check will say so
        known = None
    issues = []
    for name, pdu in inv.pdus.items():
        loc = ("pdus", name)
        preset = preset_of(pdu)
        if not pdu.monitored:
            continue
        if preset is None:
            issues.append(Issue(loc + ("vendor",), f"no OIDs known for vendor {pdu.vendor!r}",
                                "a vendor with a preset (APC, Eaton, Raritan, Server Technology, Liebert)",
                                "set `preset:`, or give `oids:` (outlet_power or total_power)"))
        elif known is not None and preset not in known:
            issues.append(Issue(loc + ("preset",), f"unknown preset {preset!r}", "one of " + ", ".join(known),
                                _close(preset, known)))
        elif preset == "generic" and pdu.per_outlet and not pdu.oids.outlet_power:
            issues.append(Issue(loc + ("oids",), "missing `outlet_power`: the PDU is measured per outlet",
                                "oids: {outlet_power: <OID prefix>}", "or set per_outlet: false with total_power"))
        elif preset == "generic" and not pdu.per_outlet and not pdu.oids.total_power:
            issues.append(Issue(loc + ("oids",), "missing `total_power`: the PDU is measured as a whole",
                                "oids: {total_power: <OID>}"))
    return issues


def check(data, source: Source) -> Inventory:
    """The validated :class:`Inventory` of ``data``, or one ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise source.error([Issue((), "the file is not a mapping", "site:, pdus:, nodes:, switches: at the top")])
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise source.error(_pydantic_issues(exc)) from None
    issues = _names(inv) + _presets(inv) + _feeds(inv)
    if issues:
        raise source.error(issues)
    return inv


def loads(text: str, path: str = "<string>") -> tuple[Inventory, Source]:
    """Parse and validate an inventory text."""
    data, source = parse_yaml(text, str(path))
    return check(data, source), source


def load(path: str | Path) -> tuple[Inventory, Source]:
    """Read, parse and validate an inventory file."""
    text = read_text(path, what="the inventory", hint="docs/inventory.md describes the file")
    return loads(text, str(path))
