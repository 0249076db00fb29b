"""What the store holds, joined with the topology: probes, their series and nodes.

A :class:`Catalog` is a snapshot taken once per request from ``store.series()`` and the
:class:`~wattsight.sample.Topology`; every query works from it, so one answer sees one
consistent list of probes.  Pure functions of those two inputs, reusable by the web UI
and the recorder.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import QueryError
from ...sample import Probe, Topology, counter_range, is_counter, site_of
from .params import finite, iso, seconds

POWER, ENERGY, NET_IN, NET_OUT = "power", "energy", "network_in", "network_out"


class UnknownName(QueryError, LookupError):
    """A probe, node or metric that is not known (the API answers 404)."""


@dataclass(frozen=True)
class ProbeView:
    """One probe: its metadata and the store's summary of each of its series."""

    probe: Probe
    metrics: dict[str, Any] = field(default_factory=dict)  # metric -> SeriesInfo

    @property
    def id(self) -> str:
        return self.probe.id

    def has_counter(self, metric: str) -> bool:
        info = self.metrics.get(metric)
        return info is not None and is_counter(info.series.kind)

    def counter_range(self, metric: str) -> float | None:
        """The range after which this probe's ``metric`` counter wraps (None: it only resets)."""
        info = self.metrics.get(metric)
        return None if info is None else counter_range(info.series.kind)

    @property
    def energy_method(self) -> str | None:
        """How this probe's energy is found: "counter" (preferred), "integrated" or None."""
        if self.has_counter(ENERGY):
            return "counter"
        return "integrated" if POWER in self.metrics else None

    @property
    def is_network(self) -> bool:
        return NET_IN in self.metrics or NET_OUT in self.metrics


class Catalog:
    """The probes known to the store or the topology, and the nodes they feed."""

    def __init__(self, store, topology: Topology) -> None:
        self.topology = topology
        grouped: dict[str, dict[str, Any]] = {}
        for info in store.series():
            metrics = grouped.setdefault(info.series.probe, {})
            old = metrics.get(info.series.metric)
            metrics[info.series.metric] = info if old is None else _merged(old, info)
        ids = sorted(set(grouped) | set(topology.probes))
        self.probes: dict[str, ProbeView] = {
            pid: ProbeView(topology.probes.get(pid) or Probe(pid), grouped.get(pid, {})) for pid in ids
        }
        self.nodes: dict[str, list[str]] = {}
        for view in self.probes.values():
            for node in view.probe.fed_nodes:
                self.nodes.setdefault(node, []).append(view.id)

    def resolve(self, name: str) -> ProbeView:
        """The probe named ``name`` (an id or an alias); UnknownName if there is none."""
        view = self.probes.get(self.topology.resolve(name))
        if view is None:
            raise UnknownName(f"no probe named {name!r}{_close(name, self.probes)}; "
                              "GET /api/v1/probes lists the known probes and their aliases")
        return view

    def node(self, name: str) -> list[str]:
        """The probes feeding node ``name``; UnknownName if no probe feeds it."""
        if name not in self.nodes:
            raise UnknownName(f"no node named {name!r}{_close(name, self.nodes)}; "
                              "GET /api/v1/probes lists each probe with the nodes it feeds")
        return self.nodes[name]

    def metric(self, view: ProbeView, metric: str):
        """The SeriesInfo of ``metric`` on a probe; UnknownName naming the metrics it has."""
        info = view.metrics.get(metric)
        if info is None:
            has = ", ".join(sorted(view.metrics)) or "none yet"
            raise UnknownName(f"probe {view.id!r} has no metric {metric!r} (it has: {has})")
        return info

    def shared_probes(self, node: str) -> list[str]:
        """The probes of ``node`` that also feed other nodes (their figure is not the node's alone)."""
        return [p for p in self.node(node) if self.probes[p].probe.shared]


def _merged(a, b):
    """One summary for a (probe, metric) stored under two descriptions (a unit or provenance
    changed): the newest description and last value, the earliest start, the total count."""
    newest = a if a.last_t >= b.last_t else b
    return dataclasses.replace(newest, count=a.count + b.count, first_t=min(a.first_t, b.first_t))


def read(store, keys: list[tuple[str, str]], start_ms: int, end_ms: int) -> dict:
    """``store.read`` with an empty pair of arrays for every key that has no sample in range."""
    got = store.read(list(keys), int(start_ms), int(end_ms)) if keys else {}
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float64))
    return {k: got.get(k, empty) for k in keys}


def _close(name: str, known) -> str:
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.75)
    return f" (did you mean {', '.join(map(repr, near))}?)" if near else ""


# -- JSON views -----------------------------------------------------------------------------


def last_value(info) -> dict[str, Any]:
    """The last sample of a series as JSON: value, unit, kind, provenance, times."""
    s = info.series
    return {
        "value": finite(info.last_v),
        "unit": s.unit,
        "kind": s.kind,
        "provenance": s.provenance,
        "measured_at": seconds(info.last_t),
        "measured_at_iso": iso(info.last_t),
        "first_at": seconds(info.first_t),
        "samples": int(info.count),
    }


def probe_json(view: ProbeView) -> dict[str, Any]:
    """A probe's metadata, its metrics and their last values (``last`` null without samples)."""
    p = view.probe
    return {
        "id": p.id,
        "site": site_of(p.id),
        "driver": p.driver or None,
        "aliases": list(p.aliases),
        "nodes": list(p.fed_nodes),
        "shared": p.shared,
        "period": p.period,
        "description": p.description,
        "metrics": sorted(view.metrics),
        "last": {m: last_value(view.metrics[m]) for m in sorted(view.metrics)} or None,
    }
