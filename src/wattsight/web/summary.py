"""The overview's legend and totals: per probe min/max/avg/last, energy and cost; per site and node.

Power: min, max, plain mean and last of the samples in the range, exact, from the store's
rollup cells (whole minutes, hours, days) plus raw samples at both edges; energy and cost
come from :func:`~wattsight.consumers.api.queries.energy_report` (counter preferred, else
integrated power), node totals too (a node sums all its probes, shared ones marked).
Network: rates in bytes/s; ``avg`` is the bytes counted
(:func:`~wattsight.consumers.api.queries.traffic_report`) over the time covered; min, max
and last are those of the rate per display bucket (``step`` s).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..consumers.api.catalog import POWER, Catalog
from ..consumers.api.params import finite
from ..consumers.api.queries import energy_report, span_json, traffic_report
from ..energy import J_PER_KWH
from ..sample import site_of
from .selection import Selection, bucket_arrays, display_step, rates

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def _ceil(x: int, size: int) -> int:
    return -(-x // size) * size


def _pieces(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """[start, end] (inclusive) as pieces whose single bucket the rollups answer: raw edges,
    whole minutes, whole hours (or days), whole minutes."""
    a, b = _ceil(start_ms, MINUTE), (end_ms + 1) // MINUTE * MINUTE
    if a >= b:
        return [(start_ms, end_ms)]
    out = [(start_ms, a - 1)]
    ha, hb = _ceil(a, HOUR), b // HOUR * HOUR
    if ha < hb:
        da, db = _ceil(ha, DAY), hb // DAY * DAY
        mids = [(ha, da - 1), (da, db - 1), (db, hb - 1)] if da < db else [(ha, hb - 1)]
        out += [(a, ha - 1), *mids, (hb, b - 1)]
    else:
        out.append((a, b - 1))
    out.append((b, end_ms))
    return [(lo, hi) for lo, hi in out if lo <= hi]


def range_stats(store, keys: list[tuple[str, str]], start_ms: int, end_ms: int) -> dict:
    """Per key over [start, end]: n, min, max, avg (plain mean) and last of the finite samples."""
    acc = {k: {"n": 0, "sum": 0.0, "min": np.inf, "max": -np.inf, "last": None} for k in keys}
    for lo, hi in _pieces(start_ms, end_ms):
        got = _one_bucket(store, keys, lo, hi)
        for k in keys:
            b = got.get(k)
            if b is None or not len(b["t"]):
                continue
            a = acc[k]  # one bucket per piece (_one_bucket): plain floats, no numpy call
            n1, s1 = int(b["n"][0]), float(b["avg"][0]) * int(b["n"][0])
            a["n"] += n1
            a["sum"] += 0.0 if math.isnan(s1) else s1  # as nansum
            a["min"] = min(a["min"], float(b["min"][0]))
            a["max"] = max(a["max"], float(b["max"][0]))
            a["last"] = float(b["last"][-1])
    return {k: {"n": a["n"], "min": a["min"] if a["n"] else None, "max": a["max"] if a["n"] else None,
                "avg": a["sum"] / a["n"] if a["n"] else None, "last": a["last"]} for k, a in acc.items()}


def _one_bucket(store, keys, lo: int, hi: int) -> dict:
    """Per key, the one bucket of [lo, hi] (a step of the whole piece)."""
    step = hi - lo + 1
    if hasattr(store, "buckets"):
        return store.buckets(keys, lo, hi, step)
    return bucket_arrays(store, keys, lo, hi + 1, step)


def summary_report(store, catalog: Catalog, selection: Selection, start_ms: int, end_ms: int, *,
                   max_gap_s: float, price_per_kwh: float, currency: str, max_points: int = 1000) -> dict:
    """The legend and totals of a selection over [start, end] (see the module doc)."""
    head = {**span_json(start_ms, end_ms), "metric": selection.metric, "price_per_kwh": price_per_kwh,
            "currency": currency, "count": len(selection.views), "skipped": selection.skipped}
    if selection.metric == POWER:
        return {**head, **_power(store, catalog, selection, start_ms, end_ms, max_gap_s, price_per_kwh,
                                  currency)}
    return {**head, **_network(store, catalog, selection, start_ms, end_ms, max_gap_s, max_points)}


def _probe_head(view, unit: str) -> dict[str, Any]:
    return {"site": site_of(view.id), "nodes": list(view.probe.fed_nodes), "shared": view.probe.shared,
            "aliases": list(view.probe.aliases), "unit": unit}


def _power(store, catalog, selection, start_ms, end_ms, max_gap_s, price, currency) -> dict:
    views = selection.views
    with_power = [v for v in views if POWER in v.metrics]
    stats = range_stats(store, [(v.id, POWER) for v in with_power], start_ms, end_ms)
    nodes = sorted({n for v in views for n in v.probe.fed_nodes if n in catalog.nodes})
    report = {"probes": {}, "nodes": {}}
    if views:  # energy_report without probes nor nodes would report every probe
        report = energy_report(store, catalog, start_ms, end_ms, probes=[v.id for v in views], nodes=nodes,
                               max_gap_s=max_gap_s, price_per_kwh=price, currency=currency)
    probes = {}
    for v in views:
        e = report["probes"][v.id]
        s = stats.get((v.id, POWER), {"n": 0, "min": None, "max": None, "avg": None, "last": None})
        unit = v.metrics[POWER].series.unit if POWER in v.metrics else "W"
        probes[v.id] = {**_probe_head(v, unit), "min": s["min"], "max": s["max"], "avg": s["avg"],
                        "last": s["last"], "samples": s["n"],
                        "mean_power_w": e["joules"] / e["covered_s"] if e["covered_s"] else None,
                        "energy": {k: e[k] for k in ("joules", "kwh", "cost", "coverage", "method")}}
    node_totals = {n: report["nodes"][n] for n in nodes}
    duration_s = (end_ms - start_ms) / 1000.0
    return {"unit": "W", "probes": probes, "sites": _sites(probes, price, duration_s), "nodes": node_totals,
            "total": _sum(list(probes.values()), price, duration_s)}


def _sum(entries: list[dict], price: float, duration_s: float) -> dict[str, Any]:
    joules = sum(e["energy"]["joules"] for e in entries)
    kwh = joules / J_PER_KWH
    return {"probes": len(entries), "joules": joules, "kwh": kwh, "cost": kwh * price,
            "coverage": min((e["energy"]["coverage"] for e in entries), default=0.0),
            "mean_power_w": joules / duration_s if duration_s else None,
            "last": sum(e["last"] for e in entries if e["last"] is not None)}


def _sites(probes: dict[str, dict], price: float, duration_s: float) -> dict[str, dict]:
    by_site: dict[str, list[dict]] = {}
    for entry in probes.values():
        by_site.setdefault(entry["site"], []).append(entry)
    return {site: _sum(entries, price, duration_s) for site, entries in sorted(by_site.items())}


def _network(store, catalog, selection, start_ms, end_ms, max_gap_s, max_points) -> dict:
    metric = selection.metric
    views = selection.views
    traffic = traffic_report(store, catalog, start_ms, end_ms, probes=[v.id for v in views],
                             max_gap_s=max_gap_s) if views else {"probes": {}}
    step = display_step(views, start_ms, end_ms, max_points)
    first = start_ms - start_ms % step
    keys = [(v.id, metric) for v in views]
    buckets = bucket_arrays(store, keys, first - step, end_ms, step)
    probes = {}
    for v in views:
        t, r = rates(buckets[(v.id, metric)], step)
        r = r[t >= first]
        ok = r[np.isfinite(r)]
        amount = traffic["probes"][v.id].get(metric, {"bytes": 0.0, "coverage": 0.0, "covered_s": 0.0})
        unit = v.metrics[metric].series.unit
        probes[v.id] = {**_probe_head(v, f"{unit}/s"),
                        "min": finite(ok.min()) if len(ok) else None,
                        "max": finite(ok.max()) if len(ok) else None,
                        "avg": amount["bytes"] / amount["covered_s"] if amount["covered_s"] else None,
                        "last": finite(ok[-1]) if len(ok) else None, "bytes": amount["bytes"],
                        "coverage": amount["coverage"], "step": step / 1000.0}
    return {"unit": "B/s", "step": step / 1000.0, "probes": probes,
            "sites": _traffic_totals(probes, lambda e: [e["site"]], end_ms - start_ms),
            "nodes": _traffic_totals(probes, lambda e: e["nodes"], end_ms - start_ms),
            "total": _traffic_totals(probes, lambda e: ["all"], end_ms - start_ms).get("all", _empty_total())}


def _empty_total() -> dict[str, Any]:
    return {"probes": 0, "bytes": 0.0, "rate": None, "coverage": 0.0, "last": 0.0, "shared_probes": []}


def _traffic_totals(probes: dict[str, dict], groups, range_ms: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for pid, e in probes.items():
        for g in groups(e):
            t = out.setdefault(g, {**_empty_total(), "coverage": 1.0, "probe_ids": []})
            t["probes"] += 1
            t["probe_ids"].append(pid)
            t["bytes"] += e["bytes"]
            t["coverage"] = min(t["coverage"], e["coverage"])
            t["last"] += e["last"] or 0.0
            if e["shared"]:
                t["shared_probes"].append(pid)
    for t in out.values():
        t["rate"] = t["bytes"] / (range_ms / 1000.0) if range_ms else None
        t["shared"] = bool(t["shared_probes"])
    return dict(sorted(out.items()))

