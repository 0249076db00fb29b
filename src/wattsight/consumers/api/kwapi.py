"""Kwapi's read API (``/v1``), answering as OpenStack Kwapi's ``kwapi/plugins/api/v1.py`` did.

Kwapi's collector kept, per probe, a record ``{"timestamp": <s>, "kwh": <kWh>, "w": <W>}``
and its API served it in four shapes::

    GET /v1/probe-ids/              {"probe_ids": [probe, ...]}
    GET /v1/probes/                 {"probes": {probe: record, ...}}
    GET /v1/probes/<probe>/         {probe: record}                (404 if unknown)
    GET /v1/probes/<probe>/<meter>/ {probe: {meter: record[meter]}} (404 if unknown)

Here ``w`` is the last power sample (or, for a probe with only an energy counter, the
rate over its last two readings), ``timestamp`` its measurement time in epoch seconds,
and ``kwh`` the energy since the store's first sample of the probe (counter preferred).
The probes are those with power or energy data.  Differences from Kwapi are listed in
``docs/consumers/api.md``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from ... import energy
from ...sample import counter_range
from .app import ApiContext, context, totals
from .catalog import ENERGY, POWER, Catalog, ProbeView, UnknownName, read
from .models import NOT_FOUND
from .params import finite
from .totals import EnergyTotals

router = APIRouter(prefix="/v1", tags=["kwapi"])
METERS = ("w", "kwh", "timestamp")
_CORS = {"Access-Control-Allow-Origin": "*"}  # as Kwapi's later versions sent


def _answer(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=_CORS)


def _kwapi_probes(ctx: ApiContext) -> tuple[Catalog, list[ProbeView]]:
    catalog = Catalog(ctx.store, ctx.topology)
    return catalog, [v for v in catalog.probes.values() if v.energy_method]


def _find(catalog: Catalog, name: str) -> ProbeView:
    """A probe by id, alias, or (as Kwapi ids had no site) a name unique across sites."""
    try:
        view = catalog.resolve(name)
    except UnknownName:
        same = [v for v in catalog.probes.values() if v.probe.name == name]
        if len(same) != 1:
            raise
        view = same[0]
    if view.energy_method is None:
        raise UnknownName(f"probe {view.id!r} has no power or energy data, so Kwapi has no record of it")
    return view


def record(store, view: ProbeView, running: EnergyTotals) -> dict[str, float | None]:
    """Kwapi's record of one probe: ``{"timestamp": s, "kwh": kWh, "w": W}``."""
    total = running.get(store, view)
    if POWER in view.metrics:
        info = view.metrics[POWER]
        w = finite(info.last_v)
    else:
        info = view.metrics[ENERGY]
        w = _last_rate(store, view.id, info)
    return {"timestamp": info.last_t / 1000.0, "kwh": total.energy.kwh if total else 0.0, "w": w}


def _last_rate(store, pid: str, info) -> float | None:
    """Watts from the last two readings of an energy counter (None with fewer than two)."""
    if info.count < 2:
        return None
    key = (pid, ENERGY)
    for back in (60_000, 3_600_000, info.last_t - info.first_t):
        t, v = read(store, [key], info.last_t - back, info.last_t)[key]
        if len(t) >= 2:
            _, rate = energy.rates(t[-2:], v[-2:], counter_range(info.series.kind))
            return finite(rate[-1])
    return None


@router.get("/", response_class=PlainTextResponse, summary="Kwapi's welcome line")
def welcome() -> str:
    return "Welcome to Kwapi!"


@router.get("/probe-ids/", summary="Kwapi: the ids of every probe")
def probe_ids(ctx: ApiContext = Depends(context)) -> JSONResponse:
    _, views = _kwapi_probes(ctx)
    return _answer({"probe_ids": [v.id for v in views]})


@router.get("/probes/", summary="Kwapi: the record of every probe")
def probes(ctx: ApiContext = Depends(context), running: EnergyTotals = Depends(totals)) -> JSONResponse:
    _, views = _kwapi_probes(ctx)
    return _answer({"probes": {v.id: record(ctx.store, v, running) for v in views}})


@router.get("/probes/{probe}/", summary="Kwapi: the record of one probe", responses=NOT_FOUND)
def probe_info(probe: str, ctx: ApiContext = Depends(context),
               running: EnergyTotals = Depends(totals)) -> JSONResponse:
    catalog, _ = _kwapi_probes(ctx)
    return _answer({probe: record(ctx.store, _find(catalog, probe), running)})


@router.get("/probes/{probe}/{meter}/", summary="Kwapi: one meter (w, kwh, timestamp) of one probe",
            responses=NOT_FOUND)
def probe_value(probe: str, meter: str, ctx: ApiContext = Depends(context),
                running: EnergyTotals = Depends(totals)) -> JSONResponse:
    catalog, _ = _kwapi_probes(ctx)
    view = _find(catalog, probe)
    if meter not in METERS:
        raise UnknownName(f"Kwapi has no meter {meter!r}; the meters are {', '.join(METERS)}")
    return _answer({probe: {meter: record(ctx.store, view, running)[meter]}})
