"""Which probes a web request is about, and their data cut into buckets as numpy arrays.

A selection names probes (ids or aliases), nodes (their probes), a job (its nodes), a site
and a regular expression.  Probes, nodes and the job add up; ``site`` and ``regex`` then
narrow what was named (or every probe when nothing was).  Only the probes that have the
asked metric are kept; the named ones that lack it are listed in ``skipped``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .. import timeseries
from ..consumers.api.catalog import NET_IN, NET_OUT, POWER, Catalog, ProbeView, UnknownName, read
from ..consumers.api.queries import ROLLUP_STEP_MS, rolled_buckets
from ..errors import QueryError
from ..sample import site_of

#: The metrics the web UI draws; ``network`` is both directions (in above the axis, out below).
METRICS = (POWER, NET_IN, NET_OUT)
GRAPH_METRICS = (*METRICS, "network")


@dataclass
class Selection:
    """The probes picked for one metric, and what was named but left out."""

    metric: str
    views: list[ProbeView] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [v.id for v in self.views]


def check_metric(metric: str, allowed: tuple[str, ...] = METRICS) -> str:
    """``metric`` if the web routes draw it, else a QueryError naming those they do."""
    if metric not in allowed:
        raise QueryError(f"metric={metric!r} is not drawn by the web UI: use one of {', '.join(allowed)}")
    return metric


def has_metric(view: ProbeView, metric: str) -> bool:
    """Whether a probe has data for ``metric`` (power: a power series or an energy counter)."""
    if metric == POWER:
        return view.energy_method is not None
    if metric == "network":
        return view.is_network
    return metric in view.metrics


def select(catalog: Catalog, metric: str, *, probes=(), nodes=(), site: str | None = None,
           regex: str | None = None, job_nodes=()) -> Selection:
    """The probes of a selection that have ``metric`` (see the module doc), in id order."""
    named: dict[str, ProbeView] = {}
    for name in probes:
        view = catalog.resolve(name)
        named[view.id] = view
    for node in [*nodes, *job_nodes]:
        for pid in catalog.node(node):
            named[pid] = catalog.probes[pid]
    explicit = set(named)
    pool = named if (probes or nodes or job_nodes) else dict(catalog.probes)
    if site:
        sites = sorted({site_of(p) for p in catalog.probes})
        if site not in sites:
            raise UnknownName(f"no probe in site {site!r}; the sites are: {', '.join(sites) or 'none yet'}")
        pool = {p: v for p, v in pool.items() if site_of(p) == site}
    if regex:
        pattern = _compile(regex)
        pool = {p: v for p, v in pool.items() if any(pattern.search(n) for n in (p, *v.probe.aliases))}
    out = Selection(metric)
    for pid in sorted(pool):
        view = pool[pid]
        if has_metric(view, metric):
            out.views.append(view)
        elif pid in explicit:
            has = ", ".join(sorted(view.metrics)) or "no samples yet"
            out.skipped.append({"probe": pid, "reason": f"no {metric} data (it has: {has})"})
    return out


def _compile(regex: str) -> re.Pattern:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise QueryError(f"regex={regex!r} is not a regular expression ({exc}); "
                         r"e.g. regex=taurus-\d+ or regex=^lyon\.") from None


def job_nodes(job: str | None, recorder=None, catalog: Catalog | None = None) -> list[str]:
    """The nodes of job ``job`` (:func:`wattsight.recordings.jobs.nodes_of`); [] without a job."""
    if not job:
        return []
    from ..recordings import jobs

    return list(jobs.nodes_of(job, recorder, catalog))


# -- buckets as arrays ----------------------------------------------------------------------


def bucket_arrays(store, keys: list[tuple[str, str]], start_ms: int, end_ms: int, step_ms: int) -> dict:
    """Per key, buckets of ``step_ms`` over [start, end): t (start), n, min, avg, max, last arrays.

    ``start_ms`` should be a multiple of the step; steps that are whole minutes come from the
    store's rollups (``store.buckets``), others from raw samples.  Empty buckets are left out.
    """
    if not keys:
        return {}
    if step_ms % ROLLUP_STEP_MS == 0 and hasattr(store, "buckets"):
        # a last bucket cut by the end (now) from minute rollups, not every probe's raw samples
        got = rolled_buckets(store, keys, start_ms, end_ms, step_ms) if end_ms > start_ms else {}
        return {k: got.get(k) or _empty() for k in keys}
    data = read(store, keys, start_ms, end_ms)
    out = {}
    for k in keys:
        b = timeseries.buckets(*data[k], start_ms, end_ms, step_ms)
        out[k] = {"t": b["t"], "n": b["count"], "min": b["min"], "avg": b["avg"], "max": b["max"],
                  "last": b["last"]}
    return out


def _empty() -> dict:
    z = np.zeros(0, np.float64)
    return {"t": np.zeros(0, np.int64), "n": np.zeros(0, np.int64), "min": z, "avg": z, "max": z, "last": z}


def display_step(views: list[ProbeView], start_ms: int, end_ms: int, points: int) -> int:
    """A nice step giving at most ``points`` buckets over the range, and no shorter than the
    slowest probe's period (1 s when unknown): shorter buckets would be mostly empty."""
    period_ms = max([int((v.probe.period or 1.0) * 1000) for v in views] or [1000])
    step = timeseries.step_for(start_ms, end_ms, max(points, 1))
    return max(step, timeseries.step_for(0, period_ms, 1))


def rates(b: dict, step_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """A counter's rate per bucket (units/s) from its buckets' last values: ``(t, rate)``.

    A bucket's rate is the increase since the previous bucket's last sample over the time
    between the two buckets (one step, or two when a jittered sample left one bucket empty);
    the first bucket, one after a longer gap and one where the counter went down (a reset or a
    wrap) have no rate (NaN).
    """
    t, last = np.asarray(b["t"], np.int64), np.asarray(b["last"], np.float64)
    out = np.full(len(t), np.nan)
    if len(t) > 1:
        inc, dt = np.diff(last), np.diff(t)
        ok = (dt <= 2 * step_ms) & (inc >= 0)
        out[1:][ok] = inc[ok] / (dt[ok] / 1000.0)
    return t, out


def sample_rates(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A counter's rate (units/s) between each two consecutive samples, ``len(t) - 1`` values;
    NaN where the counter went down (a reset or a wrap)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.diff(v) / (np.diff(t) / 1000.0)
    return np.where(r >= 0, r, np.nan)


def grid(series: dict[str, tuple[np.ndarray, np.ndarray]], start_ms: int, end_ms: int, step_ms: int
         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bucket times over [start, end) and each series' values on them (NaN where it has none)."""
    t = np.arange(start_ms, end_ms, step_ms, dtype=np.int64)
    out = {}
    for name, (bt, bv) in series.items():
        row = np.full(len(t), np.nan)
        idx = (np.asarray(bt, np.int64) - start_ms) // step_ms
        ok = (idx >= 0) & (idx < len(t))
        row[idx[ok]] = np.asarray(bv, np.float64)[ok]
        out[name] = row
    return t, out
