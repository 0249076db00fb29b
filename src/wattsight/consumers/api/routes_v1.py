"""The ``/api/v1`` routes: thin wrappers over :mod:`.catalog` and :mod:`.queries`.

Routes are plain ``def`` functions: FastAPI runs them in its worker threads, so a slow
store read never blocks the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from ... import __version__
from .app import ApiContext, context, totals
from .catalog import Catalog, UnknownName, probe_json
from .models import ERRORS, NOT_FOUND, fast_json, plain
from .params import iso, parse_range, seconds, split_names
from .queries import energy_report, metric_report, series_report, traffic_report
from .totals import EnergyTotals

router = APIRouter(prefix="/api/v1", tags=["wattsight"])

From = Annotated[str, Query(alias="from",
                            description="start: epoch seconds, ISO 8601, or relative (-1h, now)")]
To = Annotated[str, Query(alias="to", description="end: epoch seconds, ISO 8601, or relative (-5m, now)")]


def _catalog(ctx: ApiContext) -> Catalog:
    return Catalog(ctx.store, ctx.topology)


@router.get("/probes", summary="Every probe with its metadata and last values")
def list_probes(ctx: ApiContext = Depends(context)) -> dict[str, Any]:
    """Probes in the store or the topology; ``last`` is null for a probe with no sample yet."""
    views = _catalog(ctx).probes.values()
    return {"count": len(views), "probes": [probe_json(v) for v in views]}


@router.get("/probes/{probe}", summary="One probe (an id or an alias)", responses=NOT_FOUND)
def get_probe(probe: str, ctx: ApiContext = Depends(context)) -> dict[str, Any]:
    return probe_json(_catalog(ctx).resolve(probe))


@router.get("/probes/{probe}/{metric}", summary="A metric's last value, and energy since the first sample",
            responses=NOT_FOUND)
def get_probe_metric(probe: str, metric: str, ctx: ApiContext = Depends(context),
                     running: EnergyTotals = Depends(totals)) -> dict[str, Any]:
    """For ``power`` and ``energy``: the energy since the first sample (counter preferred);
    for other counters: their increase since the first sample."""
    catalog = _catalog(ctx)
    try:
        view = catalog.resolve(probe)
    except UnknownName:
        if f"{probe}/{metric}" in catalog.probes:  # an id with a '/' in its name
            return probe_json(catalog.probes[f"{probe}/{metric}"])
        raise
    return metric_report(ctx.store, catalog, view, metric, running)


@router.get("/probes/{path:path}", include_in_schema=False)
def get_probe_path(path: str, ctx: ApiContext = Depends(context),
                   running: EnergyTotals = Depends(totals)) -> dict[str, Any]:
    """Probe ids that hold a '/' (``site.pdu/12``), alone or followed by a metric; trailing '/'."""
    path = path.rstrip("/")
    if not path:
        return list_probes(ctx)
    catalog = _catalog(ctx)
    head, _, metric = path.rpartition("/")
    if not head or catalog.topology.resolve(path) in catalog.probes:
        return probe_json(catalog.resolve(path))
    return metric_report(ctx.store, catalog, catalog.resolve(head), metric, running)


@router.get("/series", summary="Points of one metric for some probes over a range", responses=ERRORS,
            response_model=dict[str, Any])
def get_series(
    probes: str = Query(..., description="probe ids or aliases, comma-separated"),
    metric: str = Query("power", description="power, energy, network_in, network_out, ..."),
    start: From = "-1h",
    end: To = "now",
    resolution: str = Query("auto", description="raw, auto, or a step such as 500ms, 10s, 1m, 1h"),
    agg: Literal["avg", "min", "max", "minmax"] = Query(
        "minmax", description="bucket columns: one aggregate, or minmax = min, avg and max"),
    ctx: ApiContext = Depends(context),
) -> Response:
    """``raw`` is refused (422) when a series would exceed ``max_points``; ``auto`` picks the
    smallest nice step within it.  Empty buckets are left out (gaps, not zeros)."""
    start_ms, end_ms = parse_range(start, end, ctx.clock())
    return fast_json(series_report(ctx.store, _catalog(ctx), split_names(probes), metric, start_ms, end_ms,
                                   resolution=resolution.strip(), agg=agg, max_points=ctx.config.max_points))


@router.get("/energy", summary="Energy per probe and per node over a range, with cost", responses=ERRORS)
def get_energy(
    probes: str | None = Query(None, description="probe ids or aliases, comma-separated"),
    nodes: str | None = Query(None, description="node names, comma-separated"),
    start: From = "-1h",
    end: To = "now",
    ctx: ApiContext = Depends(context),
) -> dict[str, Any]:
    """An energy counter is preferred (method "counter"); else power is integrated
    ("integrated").  A node is the sum of its probes; probes that also feed other nodes
    are listed in ``shared_probes`` and counted whole, never split.  Without ``probes``
    and ``nodes``: every probe with power or energy data and every node."""
    start_ms, end_ms = parse_range(start, end, ctx.clock())
    cfg = ctx.config
    return energy_report(ctx.store, _catalog(ctx), start_ms, end_ms, probes=split_names(probes),
                         nodes=split_names(nodes), max_gap_s=cfg.max_gap,
                         price_per_kwh=cfg.price_per_kwh, currency=cfg.currency)


@router.get("/traffic", summary="Bytes received and sent by network probes over a range", responses=ERRORS)
def get_traffic(
    probes: str | None = Query(None, description="probe ids or aliases, comma-separated; default: all"),
    start: From = "-1h",
    end: To = "now",
    ctx: ApiContext = Depends(context),
) -> dict[str, Any]:
    start_ms, end_ms = parse_range(start, end, ctx.clock())
    return traffic_report(ctx.store, _catalog(ctx), start_ms, end_ms, probes=split_names(probes),
                          max_gap_s=ctx.config.max_gap)


@router.get("/health", summary="Runner, bus and store state, and the version")
def get_health(ctx: ApiContext = Depends(context)) -> dict[str, Any]:
    """``status`` is "degraded" when a driver is not ok; ``drivers`` and ``bus`` are null
    when no runner or bus subscriber runs in this process."""
    now = ctx.clock()
    drivers = plain(ctx.runner_state()) if ctx.runner_state else None
    problems = [f"driver {d.get('driver')}: {d.get('status')}"
                + (f" ({d['last_error']})" if d.get("last_error") else "")
                for d in drivers or () if d.get("status") not in ("ok", "stopped")]
    return {
        "status": "degraded" if problems else "ok",
        "problems": problems,
        "version": __version__,
        "time": seconds(now),
        "time_iso": iso(now),
        "drivers": drivers,
        "bus": plain(ctx.bus_stats()) if ctx.bus_stats else None,
        "store": plain(ctx.store.stats()),
    }


@router.get("/storage", summary="Disk use, and per metric: samples, bytes, oldest and newest sample")
def get_storage(ctx: ApiContext = Depends(context)) -> dict[str, Any]:
    """From ``store.usage()`` when the store has it (the embedded store: segments, log, rollups
    and retention rules); otherwise the store's counters and the per-metric summary."""
    usage = getattr(ctx.store, "usage", None)
    if usage is not None:
        out = plain(usage())
    else:
        stats = plain(ctx.store.stats())
        metrics: dict[str, dict[str, Any]] = {}
        for info in ctx.store.series():
            m = metrics.setdefault(info.series.metric, {"series": 0, "samples": 0, "oldest_ms": info.first_t,
                                                        "newest_ms": info.last_t})
            m["series"] += 1
            m["samples"] += info.count
            m["oldest_ms"] = min(m["oldest_ms"], info.first_t)
            m["newest_ms"] = max(m["newest_ms"], info.last_t)
        out = {"backend": stats.get("backend"), "bytes_on_disk": stats.get("bytes_on_disk"),
               "metrics": dict(sorted(metrics.items()))}
    for m in out.get("metrics", {}).values():
        for end in ("oldest", "newest"):
            ms = m.pop(f"{end}_ms")
            m[end], m[f"{end}_iso"] = seconds(ms), iso(ms)
    return out


@router.get("/drivers", summary="The runner's state of each driver")
def get_drivers(ctx: ApiContext = Depends(context)) -> dict[str, Any]:
    """``runner`` is false (and ``drivers`` empty) when no runner runs in this process."""
    if ctx.runner_state is None:
        return {"runner": False, "drivers": []}
    return {"runner": True, "drivers": plain(ctx.runner_state())}
