"""Turn a validated :class:`~wattsight.inventory.Inventory` into a wattsight TOML configuration.

Rules (docs/inventory.md says them to users):

- a **measured PDU per outlet** gives one ``snmp`` section reading the outlets that feed nodes,
  and one probe per outlet whose ``nodes`` are the nodes on it (several: a shared outlet);
- a **PDU measured as a whole** gives one probe for the PDU, mapped to every node it feeds;
- a **PDU that is not measured** gives nothing: its nodes are named in a comment, and a node
  with no measured feed gets no probe (none is invented);
- a node with several probes (two PSUs, two PDUs) is their sum;
- a **BMC** gives one ``ipmi`` or ``redfish`` section; its probe is mapped to the node only
  when no PDU outlet measures the node (else the node would be counted twice);
- a **switch** gives one ``snmp-switch`` section; a port leading to a node is mapped to it, an
  uplink to another switch is read but mapped to no node.

The driver keys live in :mod:`wattsight.inventory_drivers` (the only module that knows them).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field

import tomli_w

from . import inventory_drivers as drivers
from .config.explain import Issue
from .inventory import Inventory, Source

DEFAULT_KEY = "/etc/wattsight/bus.key"


@dataclass
class ProbeMeta:
    """What the ``[probes."<id>"]`` section of one probe will say, and where it came from."""

    nodes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    origins: list[str] = field(default_factory=list)  # "file:line key" of the mappings
    power: bool = True
    wanted: list[str] = field(default_factory=list)  # aliases asked for (given unless taken)


@dataclass
class Section:
    """One ``[drivers.<name>]`` section and its probes."""

    name: str
    keys: dict
    comments: list[str]
    probes: dict[str, ProbeMeta]


@dataclass
class Plan:
    """Everything the TOML will say."""

    site: str
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def probes(self) -> dict[str, ProbeMeta]:
        return {pid: meta for s in self.sections for pid, meta in s.probes.items()}


def _node_id(inv: Inventory, name: str) -> str:
    return f"{inv.site}.{name}"


def _feeds(inv: Inventory, src: Source) -> dict[str, dict[int | None, list[tuple[str, str]]]]:
    """PDU -> port -> [(node, where the feed is written)]."""
    out: dict[str, dict[int | None, list[tuple[str, str]]]] = {}
    for name, node in inv.nodes.items():
        for i, feed in enumerate(node.pdu):
            where = f"{src.where(('nodes', name, 'pdu', i))} nodes.{name}.pdu[{i}]"
            out.setdefault(feed.uid, {}).setdefault(feed.port, []).append((name, where))
    return out


def _pdu_sections(inv: Inventory, src: Source, plan: Plan) -> None:
    feeds = _feeds(inv, src)
    for name, pdu in inv.pdus.items():
        where = f"{src.where(('pdus', name))} pdus.{name}"
        what = " ".join(x for x in (pdu.vendor, pdu.model) if x) or "PDU"
        fed = feeds.get(name, {})
        nodes = list(dict.fromkeys(n for port in fed.values() for n, _ in port))
        if not pdu.monitored:
            plan.notes.append(f"PDU {name} ({what}, {where}) is not measured (monitored: false): "
                              f"no probe for it; it feeds {', '.join(nodes) or 'no listed node'}")
            continue
        if pdu.per_outlet and not fed:
            plan.notes.append(f"PDU {name} ({where}) feeds no node of the inventory: no outlet to read")
            continue
        outlets = sorted(p for p in fed if p is not None) if pdu.per_outlet else None
        keys, ids = drivers.snmp_pdu(name, pdu, outlets, inv.period, src, ("pdus", name), site=inv.site)
        probes: dict[str, ProbeMeta] = {}
        if outlets is None:
            origins = [w for port in fed.values() for _, w in port]
            shared = f", shared by {len(nodes)} nodes" if len(nodes) > 1 else ""
            probes[ids[None]] = ProbeMeta([_node_id(inv, n) for n in nodes], [],
                                          f"{name}: the whole PDU ({what}){shared}", origins)
        for outlet in outlets or ():
            on = fed[outlet]
            shared = f", shared by {len(on)} nodes" if len(on) > 1 else ""
            probes[ids[outlet]] = ProbeMeta([_node_id(inv, n) for n, _ in on], [],
                                            f"{name} outlet {outlet} ({what}){shared}", [w for _, w in on])
        comments = [f"from {where}: {what}, " + ("per outlet" if outlets is not None else "measured as a whole")]
        plan.sections.append(Section(name, keys, comments, probes))


def _bmc_sections(inv: Inventory, src: Source, plan: Plan) -> None:
    measured = {n for s in plan.sections for m in s.probes.values() for n in m.nodes}
    for name, node in inv.nodes.items():
        if node.bmc is None:
            continue
        bmc, node_id = node.bmc, _node_id(inv, name)
        loc = ("nodes", name, "bmc")
        where = f"{src.where(loc)} nodes.{name}.bmc"
        section = f"{name}-bmc"
        keys, pid = drivers.bmc(section, name, bmc, inv.period, src, loc, site=inv.site)
        if node_id in measured:
            meta = ProbeMeta([], [], f"BMC of {node_id} ({bmc.type}); not added to the node, which its PDU "
                             "outlets already measure", [where])
        else:
            meta = ProbeMeta([node_id], [], f"BMC of {node_id} ({bmc.type})", [where])
        plan.sections.append(Section(section, keys, [f"from {where}: the {bmc.type} BMC of {name}"], {pid: meta}))


def _switch_sections(inv: Inventory, src: Source, plan: Plan) -> None:
    for name, sw in inv.switches.items():
        where = f"{src.where(('switches', name))} switches.{name}"
        if not sw.ports:
            plan.notes.append(f"switch {name} ({where}) lists no port: nothing to read")
            continue
        keys, ids = drivers.snmp_switch(name, sw, list(sw.ports), inv.period, src, ("switches", name),
                                         site=inv.site)
        probes = {}
        for port, end in sw.ports.items():
            at = f"{src.where(('switches', name, 'ports', port))} switches.{name}.ports.{port}"
            if end.node:
                iface = f" {end.interface}" if end.interface else ""
                node_id = _node_id(inv, end.node)
                meta = ProbeMeta([node_id], [], f"{name} port {port} -> {end.node}{iface}", [at], power=False,
                                 wanted=[f"{node_id}.{end.interface}"] if end.interface else [])
            elif end.uplink:
                meta = ProbeMeta([], [], f"{name} port {port}: uplink to {end.uplink} (no node)", [at], power=False)
            else:
                meta = ProbeMeta([], [], f"{name} port {port} (no node)", [at], power=False)
            if end.description:
                meta.description += f"; {end.description}"
            probes[ids[port]] = meta
        what = " ".join(x for x in (sw.vendor, sw.model) if x) or "switch"
        plan.sections.append(Section(name, keys, [f"from {where}: {what}, {len(sw.ports)} port(s)"], probes))


def _aliases(plan: Plan) -> None:
    """``<site>.<node>`` for a node's only power probe; ``<site>.<node>.psu<k>`` for each of several;
    ``<site>.<node>.<interface>`` for a switch port naming the node's interface."""
    probes = plan.probes()
    taken = set(probes)
    power: dict[str, list[str]] = {}
    for pid, meta in probes.items():
        for n in meta.nodes:
            if meta.power:
                power.setdefault(n, []).append(pid)

    def give(pid: str, alias: str) -> None:
        if alias in taken:
            plan.notes.append(f"alias {alias} of {pid} left out: the name is already taken")
            return
        taken.add(alias)
        probes[pid].aliases.append(alias)

    for node, pids in power.items():
        own = [p for p in pids if probes[p].nodes == [node]]
        if len(pids) == 1 and own:
            give(own[0], node)
        elif len(pids) > 1:
            for k, pid in enumerate(pids, 1):
                if pid in own:
                    give(pid, f"{node}.psu{k}")
    for pid, meta in probes.items():
        for alias in meta.wanted:
            give(pid, alias)


def _unmeasured(inv: Inventory, src: Source, plan: Plan) -> None:
    power = {n for m in plan.probes().values() if m.power for n in m.nodes}
    for name, node in inv.nodes.items():
        if _node_id(inv, name) in power:
            continue
        why = ("it is fed only by PDUs that are not measured: " + ", ".join(dict.fromkeys(f.uid for f in node.pdu))
               if node.pdu else "no PDU outlet nor BMC is listed for it")
        plan.notes.append(f"node {_node_id(inv, name)} ({src.where(('nodes', name))}) has no power probe: {why}")


def plan(inv: Inventory, src: Source) -> Plan:
    """What the configuration will hold (sections, probes, notes), before it is written."""
    out = Plan(inv.site)
    _pdu_sections(inv, src, out)
    _bmc_sections(inv, src, out)
    _switch_sections(inv, src, out)
    names = [s.name for s in out.sections]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise src.error([Issue((), f"two devices would make the section [drivers.{twice[0]}]",
                               hint="rename one of them (a BMC section is <node>-bmc)")])
    _aliases(out)
    _unmeasured(inv, src, out)
    return out


# -- writing --------------------------------------------------------------------------------


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value})[4:].strip()


def render(p: Plan, source: str, *, bus_key: str = DEFAULT_KEY) -> str:
    """The TOML text of a plan, every section commented with where it came from."""
    out = [f"# Generated from the inventory {source} by `wattsight config from-inventory`.",
           "# Every section says which lines of the inventory it comes from. Check it with",
           "# `wattsight config check`; regenerate rather than edit when the inventory changes.",
           f"site = {_value(p.site)}", "", "[bus]",
           f"# the key every wattsight process of the site shares: head -c 32 /dev/urandom | base64 > {bus_key}",
           f"secret_file = {_value(bus_key)}"]
    for s in p.sections:
        out += ["", f"[drivers.{_key(s.name)}]", *(f"# {c}" for c in s.comments)]
        out += [f"{_key(k)} = {_value(v)}" for k, v in s.keys.items()]
        for pid, meta in s.probes.items():
            out += ["", f"[probes.{json.dumps(pid)}]", *(f"# from {o}" for o in meta.origins)]
            if not meta.nodes:
                out.append("# mapped to no node (the API shows it as a node of its own name)")
            out.append(f"nodes = {_value(meta.nodes)}")
            if meta.aliases:
                out.append(f"aliases = {_value(meta.aliases)}")
            out.append(f"description = {_value(meta.description)}")
    if p.notes:
        out += ["", "# Not configured (nothing is invented for these):"]
        out += [line for n in p.notes for line in textwrap.wrap(n, 106, initial_indent="# - ",
                                                                 subsequent_indent="#   ", break_on_hyphens=False)]
    return "\n".join(out) + "\n"


def generate(inv: Inventory, src: Source, *, bus_key: str = DEFAULT_KEY) -> str:
    """The wattsight TOML configuration for an inventory."""
    return render(plan(inv, src), src.path, bus_key=bus_key)
