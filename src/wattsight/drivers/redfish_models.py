"""Where a Redfish service keeps a chassis' or an outlet's power, and how to read it.

Discovery walks the tree once (:class:`Walker` keeps what it fetched, so that a discovery cut
short by the time-out goes on from there at the next read) and returns a :class:`Reader` per
meter: the resources and JSON properties that hold its power (W) and energy (J), summed when there
are several (the power supplies of a chassis). Reading is then a few GETs and :func:`value`.

A chassis is read from the first of these it has (``source = "auto"``):

1. ``EnvironmentMetrics``: ``PowerWatts.Reading``; energy ``EnergyJoules`` or ``EnergykWh``;
2. ``PowerSubsystem``: the sum of ``PowerSupplies/*/Metrics`` ``InputPowerWatts.Reading`` (absent
   bays skipped), energy the sum of their ``EnergykWh`` when every supply has one;
3. ``Power`` (legacy, iLO 4/5 and most BMCs before 2021): ``PowerControl[0].PowerConsumedWatts``, or the
   top-level ``PowerConsumedWatts`` of iLO 4; found through ``Power`` or iLO 4's ``links.PowerMetrics``;
4. ``Sensors``: the ``Power`` sensor (and an energy sensor) whose ``PhysicalContext`` is ``Chassis``.

HPE's ``Power/FastPowerMeter`` (``source = "FastPowerMeter"``) is read as a history of averages
with the iLO's own timestamps. Outlets of a rack PDU: ``PowerWatts.Reading`` and ``EnergykWh.Reading``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import MeterReplyError
from .base import iso_ms
from .redfish_http import NotFound

ROOT = "/redfish/v1/"
KWH = 3.6e6                          # J in a kWh
ENERGY_SCALE = {"EnergyJoules": 1.0, "EnergyWh": 3600.0, "EnergykWh": KWH}   # Sensor ReadingType -> J
AUTO_ORDER = ("EnvironmentMetrics", "PowerSubsystem", "Power", "Sensors")
EXPAND = "?$expand=.($levels=1)"


def norm(path: str) -> str:
    """A resource path as a key: no scheme, host, query, fragment or trailing slash."""
    return urlsplit(path).path.rstrip("/") or "/"


def link(doc: dict, name: str) -> str | None:
    """The path ``doc`` links as ``name``: ``{"name": {"@odata.id"}}``, or iLO 4's ``links.name.href``."""
    for holder, key in ((doc, "@odata.id"), (doc.get("Links"), "@odata.id"), (doc.get("links"), "href")):
        ref = holder.get(name) if isinstance(holder, dict) else None
        if isinstance(ref, dict) and isinstance(ref.get(key), str):
            return urlsplit(ref[key]).path or None
    return None


def member_ids(collection: dict | None) -> list[str]:
    """The last path segment of each member of a collection (to say which ids there are)."""
    refs = (collection or {}).get("Members") or []
    return [norm(m["@odata.id"]).rsplit("/", 1)[-1] for m in refs
            if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)]


def ident(path: str, doc: dict) -> str:
    """A resource's ``Id``, else the last segment of its path."""
    rid = doc.get("Id")
    return rid if isinstance(rid, str) and rid else norm(path).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Source:
    """One number in one resource: ``pointer`` into the JSON, ``scale`` to SI."""

    path: str
    pointer: tuple = ()
    scale: float = 1.0

    def label(self) -> str:
        return norm(self.path) + "#/" + "/".join(map(str, self.pointer))


@dataclass(frozen=True)
class Reader:
    """How to read one meter: its power and energy sources (summed), or an HPE power history."""

    kind: str
    power: tuple[Source, ...] = ()
    energy: tuple[Source, ...] = ()
    history: str | None = None

    @property
    def paths(self) -> list[str]:
        """The resources to GET, each once, in order."""
        out = {norm(s.path): s.path for s in (*self.power, *self.energy)}
        if self.history:
            out[norm(self.history)] = self.history
        return list(out.values())


@dataclass
class Walker:
    """GETs during discovery, each resource once; ``expand`` when the service offers ``$expand``."""

    get: Callable[[str], dict]
    expand: bool = False
    seen: dict[str, dict | None] = field(default_factory=dict)

    def doc(self, path: str) -> dict:
        key = norm(path)
        if key not in self.seen:
            try:
                self.seen[key] = self.get(path)
            except NotFound:
                self.seen[key] = None
                raise
        if self.seen[key] is None:
            raise NotFound(f"GET {path}: HTTP 404, no such resource", probe=None, path=path)
        return self.seen[key]

    def optional(self, path: str | None) -> dict | None:
        """The resource, or None if there is no link or the link leads nowhere (404)."""
        if not path:
            return None
        try:
            return self.doc(path)
        except NotFound:
            return None

    def members(self, path: str) -> tuple[list[tuple[str, dict]], bool]:
        """(path, resource) of each member of a collection, and whether ``$expand`` gave them all."""
        coll = self.doc(path + EXPAND if self.expand else path)
        refs = [m for m in coll.get("Members") or []
                if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)]
        out, expanded = [], bool(refs)
        for m in refs:
            mpath = urlsplit(m["@odata.id"]).path
            if any(not k.startswith("@odata.") for k in m):     # expanded: the member, not a bare link
                self.seen.setdefault(norm(mpath), m)
                out.append((mpath, m))
            else:
                expanded = False
                doc = self.optional(mpath)
                if doc is not None:
                    out.append((mpath, doc))
        return out, expanded and self.expand


def expand_supported(root: dict) -> bool:
    """Whether the service root announces ``$expand`` of subordinate resources."""
    q = (root.get("ProtocolFeaturesSupported") or {}).get("ExpandQuery") or {}
    return bool(q.get("ExpandAll") or q.get("Levels"))


# -- chassis ------------------------------------------------------------------------------------
def _has_reading(doc: dict | None, key: str) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get(key), dict) and "Reading" in doc[key]


def from_environment(w: Walker, chassis: dict, energy: bool) -> Reader | None:
    path = link(chassis, "EnvironmentMetrics")
    doc = w.optional(path)
    if doc is None or "PowerWatts" not in doc:
        return None
    counters = (("EnergyJoules", 1.0), ("EnergykWh", KWH))     # joules first: the finer resolution
    joules = next((Source(path, (key, "Reading"), scale) for key, scale in counters
                   if _has_reading(doc, key)), None)
    return Reader("EnvironmentMetrics", (Source(path, ("PowerWatts", "Reading")),),
                  (joules,) if energy and joules else ())


def from_power_subsystem(w: Walker, chassis: dict, energy: bool) -> Reader | None:
    subsystem = w.optional(link(chassis, "PowerSubsystem"))
    supplies = link(subsystem, "PowerSupplies") if subsystem else None
    if not supplies:
        return None
    try:
        psus, _ = w.members(supplies)
    except NotFound:
        return None
    power, joules = [], []
    for _, psu in psus:
        if (psu.get("Status") or {}).get("State") == "Absent":
            continue
        path = link(psu, "Metrics")
        metrics = w.optional(path)
        if not _has_reading(metrics, "InputPowerWatts"):
            return None                      # a supply we cannot read: the sum would fall short
        power.append(Source(path, ("InputPowerWatts", "Reading")))
        if _has_reading(metrics, "EnergykWh"):
            joules.append(Source(path, ("EnergykWh", "Reading"), KWH))
    if not power:
        return None
    every = energy and len(joules) == len(power)
    return Reader("PowerSubsystem", tuple(power), tuple(joules) if every else ())


def from_power(w: Walker, chassis: dict, energy: bool) -> Reader | None:
    path = link(chassis, "Power") or link(chassis, "PowerMetrics")
    doc = w.optional(path)
    if doc is None:
        return None
    control = doc.get("PowerControl")
    first = control[0] if isinstance(control, list) and control else None
    if isinstance(first, dict) and "PowerConsumedWatts" in first:
        return Reader("Power", (Source(path, ("PowerControl", 0, "PowerConsumedWatts")),))
    if "PowerConsumedWatts" in doc:          # iLO 4 before 2.30: only the top-level copy
        return Reader("Power", (Source(path, ("PowerConsumedWatts",)),))
    return None


def from_sensors(w: Walker, chassis: dict, energy: bool) -> Reader | None:
    path = link(chassis, "Sensors")
    if not path:
        return None
    try:
        sensors, _ = w.members(path)
    except NotFound:
        return None
    whole = [(p, s) for p, s in sensors if s.get("PhysicalContext") == "Chassis" and "Reading" in s]
    # The chassis' total first, should it also have partial power sensors.
    power = sorted((s.get("ElectricalContext") != "Total", p) for p, s in whole
                   if s.get("ReadingType") == "Power")
    if not power:
        return None
    joules = [Source(p, ("Reading",), ENERGY_SCALE[s["ReadingType"]]) for p, s in whole
              if s.get("ReadingType") in ENERGY_SCALE]
    return Reader("Sensors", (Source(power[0][1], ("Reading",)),), (joules[0],) if energy and joules else ())


FINDERS = {"EnvironmentMetrics": from_environment, "PowerSubsystem": from_power_subsystem,
           "Power": from_power, "Sensors": from_sensors}


def fast_power_meter(w: Walker, chassis: dict) -> Reader | None:
    """HPE iLO's 20-minute history of 10-s averages, linked from the Power resource's Oem part."""
    power = from_power(w, chassis, False)
    if power is None:
        return None
    path = power.power[0].path
    oem = w.doc(path).get("Oem") or {}
    for vendor in ("Hpe", "Hp"):
        href = link(oem.get(vendor) or {}, "FastPowerMeter")
        if href:
            return Reader("FastPowerMeter", history=href)
    return Reader("FastPowerMeter", history=norm(path) + "/FastPowerMeter")


def chassis_reader(w: Walker, chassis: dict, source: str, energy: bool) -> Reader | None:
    """How to read a chassis' power from ``source`` ("auto": the first of AUTO_ORDER it has)."""
    if source == "FastPowerMeter":
        return fast_power_meter(w, chassis)
    for kind in AUTO_ORDER if source == "auto" else (source,):
        reader = FINDERS[kind](w, chassis, energy)
        if reader is not None:
            return reader
    return None


def outlet_reader(path: str, outlet: dict, energy: bool) -> Reader | None:
    """How to read a PDU outlet; None for an outlet that measures nothing (un-monitored)."""
    if "PowerWatts" not in outlet:
        return None
    counts = energy and _has_reading(outlet, "EnergykWh")
    joules = (Source(path, ("EnergykWh", "Reading"), KWH),) if counts else ()
    return Reader("Outlet", (Source(path, ("PowerWatts", "Reading")),), joules)


# -- values -------------------------------------------------------------------------------------
def value(doc: dict, src: Source, *, limit: float | None, probe: str) -> float:
    """The number at ``src`` in ``doc``, in SI units; MeterReplyError if missing, null, not a number
    or out of range (below 0, above ``limit``)."""
    node = doc
    for key in src.pointer:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise MeterReplyError(f"{src.label()} is missing from the reply (the meter stopped reporting "
                                  "it?)", probe=probe) from None
    if node is None:
        raise MeterReplyError(f"{src.label()} is null: the meter has no reading now (host powered off, "
                              "sensor not ready?)", probe=probe)
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise MeterReplyError(f"{src.label()} = {node!r} is not a number", probe=probe)
    v = float(node) * src.scale
    if not math.isfinite(v) or v < 0 or (limit is not None and v > limit):
        hint = "0 or more" if limit is None else f"0 to {limit:g} W; raise `max_power` if the meter is right"
        raise MeterReplyError(f"{src.label()} = {node!r} is out of range ({hint})", probe=probe)
    return v


def parse_time(text, *, where: str, probe: str) -> int:
    """ms since the epoch of an ISO 8601 time; one without a zone is taken as UTC."""
    try:
        return iso_ms(text)
    except (AttributeError, TypeError, ValueError):
        raise MeterReplyError(f"{where}: Time {text!r} is not an ISO 8601 time", probe=probe) from None


def history(doc: dict, path: str, *, after_ms: int, limit: float, probe: str) -> list[tuple[int, float]]:
    """(ms, W) of the ``PowerDetail`` averages of an HPE power meter newer than ``after_ms``, oldest first."""
    rows = doc.get("PowerDetail")
    if not isinstance(rows, list):
        raise MeterReplyError(f"{norm(path)}: no PowerDetail list in the reply", probe=probe)
    out = []
    for i, row in enumerate(rows):
        where = Source(path, ("PowerDetail", i))
        if not isinstance(row, dict):
            raise MeterReplyError(f"{where.label()} is not an object", probe=probe)
        t = parse_time(row.get("Time"), where=where.label(), probe=probe)
        if t > after_ms:
            out.append((t, value(doc, Source(path, ("PowerDetail", i, "Average")), limit=limit, probe=probe)))
    return sorted(out)
