"""The API's computations: energy per probe and node, traffic and series over a range.

Pure functions of a store, a :class:`~.catalog.Catalog` and plain parameters, returning
JSON-ready dicts, so the web UI and the recorder can reuse them without HTTP.  Errors are
:class:`~wattsight.errors.QueryError` (bad request) or :class:`~.catalog.UnknownName`
(not found).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import energy, timeseries
from ...errors import QueryError
from ...sample import counter_range, is_counter
from .catalog import ENERGY, NET_IN, NET_OUT, POWER, Catalog, ProbeView, last_value, read
from .params import finite, iso, parse_duration_ms, seconds

#: /series steps that are a multiple of this use ``store.buckets`` (rollups) when the store has it.
ROLLUP_STEP_MS = 60_000
AGGREGATES = {"avg": ("avg",), "min": ("min",), "max": ("max",), "minmax": ("min", "avg", "max")}


def span_json(start_ms: int, end_ms: int) -> dict[str, Any]:
    """The range an answer covers, in seconds and ISO 8601."""
    return {"from": seconds(start_ms), "to": seconds(end_ms),
            "from_iso": iso(start_ms), "to_iso": iso(end_ms)}


def amount_json(e: energy.Energy, price: float | None = None) -> dict[str, Any]:
    """Joules, kWh, coverage (and cost when a price is given) of an Energy."""
    out = {"joules": e.joules, "kwh": e.kwh, "coverage": e.coverage, "covered_s": e.covered_ms / 1000.0}
    if price is not None:
        out["cost"] = e.kwh * price
    return out


# -- energy ---------------------------------------------------------------------------------


def store_energy(store, keys: list[tuple[str, str]], start_ms: int, end_ms: int, gaps: list[int],
                 use_rollups: bool = True) -> dict | None:
    """``store.energy`` (whole rollup buckets + raw edges) when the store has it, else None."""
    fn = getattr(store, "energy", None)
    if fn is None or not use_rollups or not keys:
        return None
    return fn(keys, start_ms, end_ms, gaps)


def probe_energies(store, views: list[ProbeView], start_ms: int, end_ms: int,
                   max_gap_s: float, use_rollups: bool = True) -> dict[str, tuple[energy.Energy, str | None]]:
    """Energy of each probe over the range and how it was found ("counter", "integrated", None).

    An energy counter is preferred to integrating power when a probe has both.  A probe
    without energy data (known from the topology only) gets zero energy and no coverage.
    With a store that has rollups, whole buckets come from them (the same answer).
    """
    gaps = {v.id: energy.gap_limit_ms(v.probe.period, max_gap_s) for v in views}
    keys = {v.id: (v.id, ENERGY if v.energy_method == "counter" else POWER) for v in views if v.energy_method}
    fast = store_energy(store, list(keys.values()), start_ms, end_ms, [gaps[p] for p in keys], use_rollups)
    if fast is not None:
        return {v.id: (fast[keys[v.id]], v.energy_method) if v.id in keys
                else (energy.Energy.zero(end_ms - start_ms), None) for v in views}
    pad = max(gaps.values(), default=0)
    data = read(store, list(keys.values()), start_ms - pad, end_ms + pad)
    out = {}
    for v in views:
        if v.id not in keys:
            out[v.id] = (energy.Energy.zero(end_ms - start_ms), None)
            continue
        t, w = data[keys[v.id]]
        if v.energy_method == "counter":
            e = energy.counter_increase(t, w, start_ms, end_ms, gaps[v.id], v.counter_range(ENERGY))
        else:
            e = energy.integrate(t, w, start_ms, end_ms, gaps[v.id])
        out[v.id] = (e, v.energy_method)
    return out


def energy_report(store, catalog: Catalog, start_ms: int, end_ms: int, *, probes: list[str] = (),
                  nodes: list[str] = (), max_gap_s: float, price_per_kwh: float, currency: str,
                  use_rollups: bool = True) -> dict:
    """Energy per probe and per node over ``[start_ms, end_ms]``, with cost and coverage.

    With ``probes``: those probes only.  With ``nodes``: those nodes and their probes.
    With neither: every probe with power or energy data and every node they feed.  A
    node's energy is the sum of its probes; a probe that also feeds other nodes is listed
    in ``shared_probes`` and counted whole in each (never split).
    """
    views = [catalog.resolve(p) for p in probes]
    for v in views:
        if v.energy_method is None and v.metrics:
            raise QueryError(f"probe {v.id!r} has no power or energy metric "
                             f"(it has: {', '.join(sorted(v.metrics))}); "
                             "for network counters use GET /api/v1/traffic")
    node_names = list(nodes)
    if not probes and not nodes:
        views = [v for v in catalog.probes.values() if v.energy_method]
        node_names = sorted({n for v in views for n in v.probe.fed_nodes})
    seen = {v.id for v in views}
    for node in node_names:
        for pid in catalog.node(node):
            member = catalog.probes[pid]
            network_only = member.is_network and not member.energy_method
            if not network_only and pid not in seen:
                views.append(member)
                seen.add(pid)
    per_probe = probe_energies(store, views, start_ms, end_ms, max_gap_s, use_rollups)
    answer = {**span_json(start_ms, end_ms), "price_per_kwh": price_per_kwh, "currency": currency,
              "probes": {}, "nodes": {}}
    for pid, (e, method) in per_probe.items():
        answer["probes"][pid] = {**amount_json(e, price_per_kwh), "method": method}
    for node in node_names:
        answer["nodes"][node] = _node_json(catalog, node, per_probe, price_per_kwh)
    return answer


def _node_json(catalog: Catalog, node: str, per_probe, price: float) -> dict[str, Any]:
    members = [p for p in catalog.node(node) if p in per_probe]
    total = sum((per_probe[p][0] for p in members), energy.Energy.zero())
    coverage = min((per_probe[p][0].coverage for p in members), default=0.0)
    shared = [p for p in catalog.shared_probes(node) if p in members]
    return {"joules": total.joules, "kwh": total.kwh, "cost": total.kwh * price, "coverage": coverage,
            "probes": members, "shared": bool(shared), "shared_probes": shared}


def traffic_report(store, catalog: Catalog, start_ms: int, end_ms: int, *, probes: list[str] = (),
                   max_gap_s: float, use_rollups: bool = True) -> dict:
    """Bytes received and sent by network probes over the range (counter increases)."""
    views = [catalog.resolve(p) for p in probes] or [v for v in catalog.probes.values() if v.is_network]
    for v in views:
        if not v.is_network:
            raise QueryError(f"probe {v.id!r} has no network_in or network_out counter "
                             f"(it has: {', '.join(sorted(v.metrics)) or 'no samples yet'})")
    gaps = {v.id: energy.gap_limit_ms(v.probe.period, max_gap_s) for v in views}
    keys = [(v.id, m) for v in views for m in (NET_IN, NET_OUT) if m in v.metrics]
    amounts = store_energy(store, keys, start_ms, end_ms, [gaps[p] for p, _ in keys], use_rollups)
    if amounts is None:  # no rollups: the counters' increases from the raw samples
        pad = max(gaps.values(), default=0)
        data = read(store, keys, start_ms - pad, end_ms + pad)
        amounts = {(pid, m): energy.counter_increase(*data[(pid, m)], start_ms, end_ms, gaps[pid],
                                                     catalog.probes[pid].counter_range(m)) for pid, m in keys}
    answer = {**span_json(start_ms, end_ms), "probes": {v.id: {} for v in views}}
    for (pid, metric), e in amounts.items():
        answer["probes"][pid][metric] = {"bytes": e.joules, "coverage": e.coverage,
                                         "covered_s": e.covered_ms / 1000}
    return answer


# -- series ---------------------------------------------------------------------------------


def series_step(resolution: str, start_ms: int, end_ms: int, max_points: int) -> tuple[int | None, int]:
    """``(step_ms, bucket start)`` for a resolution: None for raw, a nice step for auto.

    Bucket boundaries are aligned on multiples of the step so that they stay put while a
    live graph slides; an explicit step that gives more than ``max_points`` is refused.
    """
    if resolution == "raw":
        return None, start_ms
    if resolution == "auto":
        step = timeseries.step_for(start_ms, end_ms, max_points)
        while -(-(end_ms - (start_ms - start_ms % step)) // step) > max_points:
            step = timeseries.step_for(start_ms - start_ms % step, end_ms, max_points)
        return step, start_ms - start_ms % step
    step = parse_duration_ms(resolution, name="resolution")
    aligned = start_ms - start_ms % step
    n = -(-(end_ms - aligned) // step)
    if n > max_points:
        least = timeseries.step_for(start_ms, end_ms, max_points)
        raise QueryError(f"resolution={resolution} over this range gives {n} points per series, above "
                         f"max_points={max_points}; use resolution=auto or a step of at least {least} ms")
    return step, aligned


def series_report(store, catalog: Catalog, names: list[str], metric: str, start_ms: int, end_ms: int,
                  *, resolution: str = "auto", agg: str = "minmax", max_points: int,
                  use_rollups: bool = True) -> dict:
    """Points of ``metric`` for each probe: raw samples or per-bucket aggregates.

    ``resolution``: ``raw`` (refused when a series has more than ``max_points`` samples in
    the range), ``auto`` (the smallest nice step that keeps within ``max_points``) or a
    step such as ``10s``.  Buckets hold the ``agg`` columns (``minmax`` = min, avg, max);
    empty buckets are left out: they are gaps, not zeros.
    """
    if not names:
        raise QueryError("no probe given: pass probes=<id>[,<id>...] (GET /api/v1/probes lists them)")
    step, first = series_step(resolution, start_ms, end_ms, max_points)
    views = [catalog.resolve(n) for n in names]
    infos = {v.id: catalog.metric(v, metric) for v in views}
    keys = [(v.id, metric) for v in views]
    rolled = use_rollups and step is not None and step % ROLLUP_STEP_MS == 0 and hasattr(store, "buckets")
    if rolled:  # whole buckets from the store's rollups, the others from raw samples: the same points
        data = rolled_buckets(store, keys, first, end_ms, step) if end_ms > first else {}
    else:
        data = read(store, keys, first, end_ms)
    out = []
    for v in views:
        if rolled:
            points, columns = _from_buckets(data.get((v.id, metric)), AGGREGATES[agg])
        elif step is None:
            points, columns = _raw(v.id, metric, *data[(v.id, metric)], max_points)
        else:
            points, columns = _bucketed(*data[(v.id, metric)], first, end_ms, step, AGGREGATES[agg])
        s = infos[v.id].series
        out.append({"probe": v.id, "metric": metric, "unit": s.unit, "kind": s.kind,
                    "provenance": s.provenance, "step": None if step is None else step / 1000.0,
                    "columns": columns, "count": len(points), "points": points})
    return {**span_json(first, end_ms), "resolution": resolution, "agg": None if step is None else agg,
            "step": None if step is None else step / 1000.0, "series": out}


def rolled_buckets(store, keys: list, first: int, end_ms: int, step: int) -> dict:
    """``store.buckets`` over [first, end) in steps of ``step`` (a whole number of minutes).

    The last bucket is usually cut by ``end`` (now): the store would read all of it raw (up
    to an hour of samples of every probe for 1 h buckets), so it is made of minute buckets
    (minute rollups, the last minute raw), merged into one: the same n, min, max, last, and
    the mean of the same samples."""
    tail = first + (end_ms - first) // step * step  # the start of a cut last bucket (== end_ms if none)
    if step == ROLLUP_STEP_MS or tail >= end_ms:
        return store.buckets(keys, first, end_ms - 1, step)
    head = store.buckets(keys, first, tail - 1, step) if tail > first else {}
    last = store.buckets(keys, tail, end_ms - 1, ROLLUP_STEP_MS)
    out = {}
    for k in keys:
        a, b = head.get(k), last.get(k)
        n = np.asarray(b["n"], np.int64) if b is not None else np.zeros(0, np.int64)
        full = n > 0
        if not full.any():
            if a is not None:
                out[k] = a
            continue
        n, col = n[full], {c: np.asarray(b[c], np.float64)[full] for c in ("min", "max", "avg", "last")}
        one = {"t": np.array([tail], np.int64), "n": np.array([n.sum()]), "min": np.array([col["min"].min()]),
               "max": np.array([col["max"].max()]), "avg": np.array([np.sum(col["avg"] * n) / n.sum()]),
               "last": np.array([col["last"][-1]])}
        out[k] = one if a is None else {c: np.concatenate([np.asarray(a[c]), one[c]]) for c in one}
    return out


def _raw(probe: str, metric: str, t: np.ndarray, v: np.ndarray, max_points: int):
    if len(t) > max_points:
        raise QueryError(f"resolution=raw would return {len(t)} points for {probe}/{metric}, above "
                         f"max_points={max_points}; use resolution=auto (or a step such as 1m), "
                         "or ask for a shorter range")
    return [[seconds(a), finite(b)] for a, b in zip(t.tolist(), v.tolist())], ["t", "value"]


def _from_buckets(b: dict | None, aggs: tuple[str, ...]):
    if b is None or not len(b["t"]):
        return [], ["t", *aggs]
    cols = [b["t"].tolist()] + [b[a].tolist() for a in aggs]
    points = [[seconds(row[0]), *map(finite, row[1:])] for row in zip(*cols)]
    return points, ["t", *aggs]


def _bucketed(t, v, start_ms: int, end_ms: int, step: int, aggs: tuple[str, ...]):
    return _from_buckets(timeseries.buckets(t, v, start_ms, end_ms, step), aggs)


# -- one probe, one metric ------------------------------------------------------------------


def metric_report(store, catalog: Catalog, view: ProbeView, metric: str, totals) -> dict:
    """A metric's last value and, for power and energy, the energy since the first sample."""
    info = catalog.metric(view, metric)
    answer = {"probe": view.id, "metric": metric, **last_value(info)}
    if metric in (POWER, ENERGY):
        total = totals.get(store, view)
        if total is not None:
            answer["energy"] = {**amount_json(total.energy), "method": total.method,
                                **span_json(total.since_ms, total.until_ms)}
    elif is_counter(info.series.kind):
        e = _increase_since_start(store, view, metric, info, totals.max_gap_s)
        answer["increase"] = {"amount": e.joules, "unit": info.series.unit, "coverage": e.coverage,
                              **span_json(info.first_t, info.last_t)}
    return answer


def _increase_since_start(store, view: ProbeView, metric: str, info, max_gap_s: float) -> energy.Energy:
    gap = energy.gap_limit_ms(view.probe.period, max_gap_s)
    t, v = read(store, [(view.id, metric)], info.first_t, info.last_t)[(view.id, metric)]
    return energy.counter_increase(t, v, info.first_t, info.last_t, gap, counter_range(info.series.kind))
