"""The REST API application: ``create_app(ApiContext) -> FastAPI``.

The app only reads: it owns no thread and no loop of its own.  Everything it shows comes
from the objects in :class:`ApiContext` (the store, the topology, and when a runner or a
bus subscriber live in the same process, callables returning their state).  Routes are
thin; the computations live in :mod:`.queries` and :mod:`.catalog`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ... import __version__
from ...config import ApiConfig
from ...errors import QueryError, StoreError
from ...sample import Topology, now_ms
from .catalog import UnknownName
from .totals import EnergyTotals


@dataclass
class ApiContext:
    """What the API reads from: the store, the probe topology and optional live state."""

    store: Any  # wattsight.consumers.store.Store: series(), read(), stats()
    topology: Topology = field(default_factory=Topology)
    config: ApiConfig = field(default_factory=ApiConfig)
    #: Runner.state() when a runner runs in this process, else None.
    runner_state: Callable[[], list[dict]] | None = None
    #: Subscriber.stats() when a bus subscriber runs in this process, else None.
    bus_stats: Callable[[], dict] | None = None
    clock: Callable[[], int] = now_ms
    #: The energy recorder (wattsight.recordings.service.Recorder: database, [recorder] settings,
    #: token); None: /api/v1/recordings and /api/v1/jobs answer 503.
    recorder: Any = None


def context(request: Request) -> ApiContext:
    """The ApiContext of the app serving ``request`` (a FastAPI dependency)."""
    return request.app.state.ctx


def totals(request: Request) -> EnergyTotals:
    """The app's running energy totals (a FastAPI dependency)."""
    return request.app.state.totals


def create_app(ctx: ApiContext) -> FastAPI:
    """The FastAPI app serving ``/api/v1``, Kwapi's ``/v1`` and ``/metrics`` from ``ctx``."""
    from ...recordings import routes as recordings
    from ...web import router as web_router
    from . import kwapi, metrics, routes_v1

    app = FastAPI(
        title="wattsight",
        version=__version__,
        description="Power, energy and network samples of every probe: last values, series, "
                    "energy over a range with coverage, Kwapi-compatible reads and Prometheus metrics.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.totals = EnergyTotals(ctx.config.max_gap)
    app.state.registry = metrics.registry_for(ctx, app.state.totals)
    app.include_router(routes_v1.router)
    app.include_router(kwapi.router)
    app.include_router(metrics.router)
    app.include_router(recordings.router)
    app.include_router(web_router)
    _install_error_handlers(app)
    return app


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UnknownName)
    async def _unknown(request: Request, exc: UnknownName) -> JSONResponse:
        return _problem(404, str(exc))

    @app.exception_handler(QueryError)
    async def _bad_query(request: Request, exc: QueryError) -> JSONResponse:
        # 422, or the status an error class carries (the recorder's 404 / 409 / 422)
        return _problem(getattr(exc, "status", 422), str(exc))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return _problem(503, f"the store cannot answer: {exc}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem(422, "; ".join(_describe(e) for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = (f"no endpoint at {request.url.path}; the API is described at /api/v1/docs "
                      "(/api/v1/openapi.json)")
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


def _describe(error: dict) -> str:
    """One validation error as 'query parameter 'agg': Input should be ...'."""
    loc = [str(p) for p in error.get("loc", ())]
    where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else ".".join(loc) or "request"
    message = error.get("msg", "invalid")
    if error.get("type") == "missing":
        message = "is required"
    return f"{where}: {message}"
