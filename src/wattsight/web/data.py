"""The routes that feed the web UI: summary, live stream, PNG graphs and export archives.

Thin wrappers: the work is in :mod:`.summary`, :mod:`.live`, :mod:`.graphs` and
:mod:`.export`, on top of :mod:`wattsight.consumers.api.queries` and ``.catalog``.
Blocking routes are plain ``def`` (FastAPI runs them in worker threads); the live stream
is async and reads the store in a thread.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..consumers.api.app import ApiContext, context
from ..consumers.api.catalog import ENERGY, POWER, Catalog
from ..consumers.api.models import ERRORS, plain
from ..consumers.api.params import parse_range, split_names
from ..sample import is_counter
from . import export, graphs, live
from .selection import GRAPH_METRICS, METRICS, Selection, check_metric, has_metric, job_nodes, select
from .summary import summary_report

router = APIRouter()

From = Annotated[str, Query(alias="from",
                            description="start: epoch seconds, ISO 8601, or relative (-1h, now)")]
To = Annotated[str, Query(alias="to", description="end: epoch seconds, ISO 8601, or relative (-5m, now)")]
Probes = Annotated[str | None, Query(description="probe ids or aliases, comma-separated")]
Nodes = Annotated[str | None, Query(description="node names, comma-separated (each adds its probes)")]
Site = Annotated[str | None, Query(description="only the probes of this site")]
Regex = Annotated[str | None, Query(description="only the probes whose id or an alias matches (re.search)")]
Job = Annotated[str | None, Query(description="a job id: adds the probes of its nodes")]
Metric = Annotated[str, Query(description="power, network_in or network_out")]
Ctx = Annotated[ApiContext, Depends(context)]
GraphMetric = Annotated[str, Query(description="power, network_in, network_out or network")]


def _selection(ctx: ApiContext, metric: str, probes, nodes, site, regex, job,
               allowed: tuple[str, ...] = METRICS) -> tuple[Catalog, Selection]:
    catalog = Catalog(ctx.store, ctx.topology)
    sel = select(catalog, check_metric(metric, allowed), probes=split_names(probes), nodes=split_names(nodes),
                 site=site, regex=regex, job_nodes=job_nodes(job, getattr(ctx, "recorder", None), catalog))
    return catalog, sel


@router.get("/api/v1/summary", tags=["web"], responses=ERRORS,
            summary="Per probe min/max/avg/last, energy and cost; totals per site and node")
def get_summary(ctx: Ctx, probes: Probes = None, nodes: Nodes = None, site: Site = None,
                regex: Regex = None, job: Job = None, metric: Metric = "power", start: From = "-1h",
                end: To = "now") -> JSONResponse:
    """The overview's legend: see docs/web-graphs.md.  Power in W with energy (J, kWh) and cost;
    network metrics as rates in B/s with the bytes counted.  Without a selection: every probe."""
    start_ms, end_ms = parse_range(start, end, ctx.clock())
    catalog, sel = _selection(ctx, metric, probes, nodes, site, regex, job)
    cfg = ctx.config
    body = summary_report(ctx.store, catalog, sel, start_ms, end_ms, max_gap_s=cfg.max_gap,
                          price_per_kwh=cfg.price_per_kwh, currency=cfg.currency,
                          max_points=min(cfg.max_points, 1000))
    return JSONResponse(plain(body))  # FastAPI's encoder would add ~0.3 s per 1,000 probes


PNG = {200: {"content": {"image/png": {}}, "description": "the graph"},
       304: {"description": "the image is the one named by If-None-Match"}, **ERRORS}


@router.api_route("/graph/{period}", methods=["GET", "HEAD"], include_in_schema=False)
def get_graph_summary(request: Request, period: str, ctx: Ctx, metric: str = "power", width: int = 800,
                      height: int = 320, probes: Probes = None, nodes: Nodes = None, site: Site = None,
                      regex: Regex = None, job: Job = None) -> Response:
    return get_graph(request, period, ctx, "", metric, width, height, probes, nodes, site, regex, job)


@router.api_route("/graph/{period}/{probe:path}", methods=["GET", "HEAD"], tags=["web"],
                  response_class=Response, responses=PNG,
                  summary="A PNG graph of the last minute|hour|day|week|month|year (Kwapi style)")
def get_graph(request: Request, period: str, ctx: Ctx, probe: str = "",
              metric: GraphMetric = "power",
              width: Annotated[int, Query(description="pixels")] = 800,
              height: Annotated[int, Query(description="pixels")] = 320,
              probes: Probes = None, nodes: Nodes = None, site: Site = None, regex: Regex = None,
              job: Job = None) -> Response:
    """``/graph/day/``: every probe (or the selection) stacked; ``/graph/day/<probe>/``: one probe,
    its mean per bucket and min-max band.  Cached per period step (ETag, Cache-Control)."""
    graphs.check_period(period)
    graphs.check_size(width, height)
    check_metric(metric, GRAPH_METRICS)
    probe = probe.strip("/")
    if probe:
        catalog = Catalog(ctx.store, ctx.topology)
        view = catalog.resolve(probe)
        if not has_metric(view, metric):
            catalog.metric(view, metric)  # UnknownName naming the metrics it has (404)
        sel = Selection(metric, [view])
    else:
        view = None
        _, sel = _selection(ctx, metric, probes, nodes, site, regex, job, GRAPH_METRICS)
    png, etag, max_age = graphs.period_png(ctx.store, sel, period, ctx.clock(), width, height,
                                           graphs.cache_of(request.app), probe=view)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(png, media_type="image/png", headers=headers)


@router.get("/api/v1/live", tags=["web"], response_class=StreamingResponse, responses=ERRORS,
            summary="New samples as they are stored: Server-Sent Events (text/event-stream)")
async def get_live(request: Request, ctx: Ctx, probes: Probes = None, nodes: Nodes = None, site: Site = None,
                   regex: Regex = None, job: Job = None, metric: Metric = "power",
                   since: Annotated[int | None, Query(description="ms since the epoch: send the samples "
                                                      "measured after it (default: from now on)")] = None,
                   raw: Annotated[bool, Query(description="counters as stored, not as rates")] = False,
                   limit: Annotated[int, Query(ge=1, le=live.MAX_PROBES,
                                               description="most probes streamed")] = live.DEFAULT_CAP,
                   ) -> StreamingResponse:
    """Each event: ``{"metric", "unit", "t": [ms...], "probes": {id: [values or null]}}`` with the
    samples measured since the last event; a ``: keep-alive`` comment when none came.  The event
    id is the newest time sent (``Last-Event-ID`` resumes, as ``since`` does)."""
    resume = request.headers.get("last-event-id", "").strip()
    if since is None and resume.isdigit():
        since = int(resume)

    started = False

    def tracks() -> list[tuple[tuple[str, str], bool, int]]:
        """The keys to follow: at the start from ``since`` (or each probe's last sample), later
        (probes that joined the selection) from ``since`` or their first sample."""
        nonlocal started
        default = since if since is not None else (0 if started else None)
        started = True
        _, sel = _selection(ctx, metric, probes, nodes, site, regex, job)
        return [_track(v, sel.metric, default) for v in sel.views]

    feed = await anyio.to_thread.run_sync(
        lambda: live.Feed(ctx.store, tracks, rate=not raw, limit=limit, now_ms=ctx.clock))
    counter_unit = "B" if raw else "B/s"
    head = {"metric": metric, "unit": "W" if metric == POWER else counter_unit}
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Probes-Omitted": str(feed.omitted)}
    return StreamingResponse(live.stream(feed, head, request.is_disconnected), media_type="text/event-stream",
                             headers=headers)


def _track(view, metric: str, since: int | None) -> tuple[tuple[str, str], bool, int]:
    """``(key, is_counter, since)`` of a probe: its ``metric``, or for power an energy counter
    (streamed as its rate, W) when it has no power series; ``since`` None: its last sample."""
    if metric == POWER and POWER not in view.metrics:
        metric = ENERGY
    info = view.metrics[metric]
    return (view.id, metric), is_counter(info.series.kind), info.last_t if since is None else since


@router.get("/api/v1/export.zip", tags=["web"], response_class=Response, responses={
    200: {"content": {"application/zip": {}}, "description": "data.csv, data.parquet, PNGs, README.txt"},
    **ERRORS}, summary="A zip of what the graphs show: CSV, Parquet, one PNG per graph, README.txt")
def get_export(request: Request, ctx: Ctx, probes: Probes = None, nodes: Nodes = None, site: Site = None,
               regex: Regex = None, job: Job = None, metric: GraphMetric = "power", start: From = "-1h",
               end: To = "now",
               resolution: Annotated[str, Query(description="raw, auto, or a step such as 10s, 1m")] = "auto",
               ) -> Response:
    """Rows of the selection in long form (README.txt in the archive names the columns)."""
    start_ms, end_ms = parse_range(start, end, ctx.clock())
    _, sel = _selection(ctx, metric, probes, nodes, site, regex, job, GRAPH_METRICS)
    body = export.export_zip(ctx.store, sel, start_ms, end_ms, resolution=resolution.strip(),
                             max_points=ctx.config.max_points, query=str(request.url),
                             made_ms=ctx.clock())
    name = f"wattsight-{sel.metric}-{start_ms // 1000}-{end_ms // 1000}.zip"
    return Response(body, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
