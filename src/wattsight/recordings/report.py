"""The energy of a recording, of each of its steps, and of a job: computed from stored data.

A report is a pure function of the store, a :class:`~wattsight.consumers.api.catalog.Catalog`
and the stored recording or job, so it can be asked for any past recording at any time (a
running one is reported up to now).  Energy per probe and node comes from
:func:`~wattsight.consumers.api.queries.energy_report` (counters preferred, rollups used);
this module adds mean and peak power and the totals.

The figures of one range (``R`` in docs/recordings.md)::

    {"from", "to", "duration_s",
     "energy": {"joules", "kwh", "cost", "currency", "coverage", "covered_s"},
     "mean_power_w", "peak_power_w",
     "probes": {id: {"joules", "kwh", "cost", "coverage", "covered_s", "method", "provenance",
                     "mean_power_w", "peak_power_w"}},
     "nodes": {node: {... the same, plus "probes", "shared", "shared_probes"}}}

* provenance of a probe = that of the stored series its energy comes from (``measured``,
  ``derived`` or ``modelled``; null without data); of a node, its probes' when they agree,
  else ``mixed``.
* mean power = energy / covered time (of a probe); for a node or the total, the sum of
  their probes' means: what the set drew while it was measured.
* peak power of a probe = its highest power *sample* in the range; of a node or the total,
  the highest sum of its probes' power averaged over buckets of 1 s (ranges up to 1 h)
  or of whole minutes (longer ranges: at most 3600 buckets, read from the rollups).  It is
  the peak of the power samples, which can be below the mean power: the mean comes from the
  energy counter (every joule between two readings), the samples are instants (1 Hz or less).
* the total's coverage is the lowest of its probes' (a set is measured as far as its
  least-measured probe); its energy is the sum over probes, each counted once even when
  it feeds several nodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import timeseries
from ..consumers.api.catalog import ENERGY, POWER, Catalog, read
from ..consumers.api.queries import energy_report, span_json

HOUR_MS, MINUTE_MS = 3_600_000, 60_000


def span_report(store, catalog: Catalog, probes: list[str], nodes: list[str], start_ms: int, end_ms: int,
                config, *, everything: bool = False) -> dict[str, Any]:
    """The figures ``R`` of ``[start_ms, end_ms]`` for those probes and nodes (``everything``: all probes)."""
    end_ms = max(int(end_ms), int(start_ms))
    price, currency = config.price_per_kwh, config.currency
    if probes or nodes or everything:
        rep = energy_report(store, catalog, start_ms, end_ms, probes=probes, nodes=nodes,
                            max_gap_s=config.max_gap, price_per_kwh=price, currency=currency)
    else:  # an environment that names nothing known (a job on unmatched nodes): nothing measured
        rep = {"probes": {}, "nodes": {}}
    peaks = _peaks(store, catalog, list(rep["probes"]), start_ms, end_ms)
    out_probes = {}
    for pid, e in rep["probes"].items():
        out_probes[pid] = {**e, "mean_power_w": _mean(e),
                           "peak_power_w": peaks.peak([pid], single=True),
                           "provenance": _provenance(catalog.probes[pid], e["method"])}
    out_nodes = {}
    for node, e in rep["nodes"].items():
        members = e["probes"]
        out_nodes[node] = {**e, "covered_s": min((out_probes[p]["covered_s"] for p in members), default=0.0),
                           "mean_power_w": _sum_means(out_probes, members),
                           "peak_power_w": peaks.peak(members),
                           "provenance": _agreed(out_probes[p]["provenance"] for p in members)}
    joules = sum(p["joules"] for p in out_probes.values())
    coverage = min((p["coverage"] for p in out_probes.values()), default=0.0)
    covered = min((p["covered_s"] for p in out_probes.values()), default=0.0)
    return {
        **span_json(start_ms, end_ms),
        "duration_s": (end_ms - start_ms) / 1000.0,
        "energy": {"joules": joules, "kwh": joules / 3.6e6, "cost": joules / 3.6e6 * price,
                   "currency": currency, "coverage": coverage, "covered_s": covered},
        "mean_power_w": _sum_means(out_probes, list(out_probes)),
        "peak_power_w": peaks.peak(list(out_probes)),
        "probes": out_probes,
        "nodes": out_nodes,
    }


def _provenance(view, method: str | None) -> str | None:
    """Where a probe's figure comes from (measured, derived, modelled): that of the series it was
    computed from (the energy counter or the power), as stored; None when it has no data."""
    info = view.metrics.get(ENERGY if method == "counter" else POWER) if method else None
    return None if info is None else info.series.provenance


def _agreed(provenances) -> str | None:
    """The provenance of a sum: its parts' when they agree, "mixed" when not, None with no part."""
    kinds = {p for p in provenances if p is not None}
    return None if not kinds else kinds.pop() if len(kinds) == 1 else "mixed"


def _mean(e: dict) -> float | None:
    return e["joules"] / e["covered_s"] if e["covered_s"] > 0 else None


def _sum_means(probes: dict, members: list[str]) -> float | None:
    means = [probes[p]["mean_power_w"] for p in members if probes[p]["mean_power_w"] is not None]
    return float(sum(means)) if means else None


class _Peaks:
    """Power buckets of some probes over a range, to find the peak of one probe or of a sum."""

    def __init__(self, buckets: dict[str, dict]) -> None:
        self.buckets = buckets

    def peak(self, probes: list[str], *, single: bool = False) -> float | None:
        """The highest sample of one probe (``single``), or the highest bucket sum of ``probes``."""
        got = [self.buckets[p] for p in probes if p in self.buckets and len(self.buckets[p]["t"])]
        if not got:
            return None
        if single:
            return float(np.nanmax(np.concatenate([b["max"] for b in got])))
        t = np.concatenate([b["t"] for b in got])
        avg = np.concatenate([b["avg"] for b in got])
        ok = np.isfinite(avg)
        if not ok.any():
            return None
        times, where = np.unique(t[ok], return_inverse=True)
        return float(np.bincount(where, weights=avg[ok], minlength=len(times)).max())


def bucket_plan(start_ms: int, end_ms: int) -> tuple[int, int]:
    """``(first bucket start, step)``: 1 s buckets up to an hour, whole minutes beyond (<= 3600 buckets)."""
    if end_ms - start_ms <= HOUR_MS:
        return start_ms, 1000
    step = -(-(end_ms - start_ms) // (3600 * MINUTE_MS)) * MINUTE_MS
    return start_ms - start_ms % MINUTE_MS, step


def _peaks(store, catalog: Catalog, probes: list[str], start_ms: int, end_ms: int) -> _Peaks:
    keys = [(p, POWER) for p in probes if POWER in catalog.probes[p].metrics]
    if not keys or end_ms <= start_ms:
        return _Peaks({})
    first, step = bucket_plan(start_ms, end_ms)
    if hasattr(store, "buckets"):
        got = store.buckets(keys, first, end_ms, step)
    else:
        data = read(store, keys, first, end_ms)
        got = {k: timeseries.buckets(*data[k], first, end_ms + 1, step) for k in keys}
    return _Peaks({k[0]: b for k, b in got.items()})
