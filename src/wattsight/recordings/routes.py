"""``/api/v1/recordings`` and ``/api/v1/jobs``: scenarios, their steps, jobs and their energy.

Routes are thin: times are turned into ms here, the rules live in :mod:`.rules`, storage
in :mod:`.db` and the figures in :mod:`.report`.  Writes need ``Authorization: Bearer
<token>`` when ``[recorder]`` sets a token; reads too with ``read_token_required``.
Plain ``def`` routes: FastAPI runs them in worker threads (SQLite and store reads block).
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..consumers.api.app import ApiContext, context
from ..consumers.api.catalog import Catalog
from ..consumers.api.params import MAX_MS, parse_time_ms
from ..errors import QueryError
from .rules import future_warnings
from .service import Recorder, job_json, recording_json, step_json

router = APIRouter(prefix="/api/v1", tags=["recordings"])
ERRORS = {401: {"description": "a token is needed"}, 404: {"description": "no such recording, step or job"},
          409: {"description": "conflicts with what is stored"}, 422: {"description": "bad times or fields"}}
TimeValue = float | str | None
TIME_DOC = "epoch seconds in the caller's clock (ISO 8601 and 'now' are accepted too); default: server now"


MAX_METADATA = 65_536  # bytes of JSON: metadata describes a run, it is not a place for its data


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("metadata", check_fields=False)
    @classmethod
    def _small(cls, v: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(v))
        if size > MAX_METADATA:
            raise ValueError(f"is {size} bytes of JSON, more than {MAX_METADATA}: keep metadata small "
                             "(names, versions, links)")
        return v


class RecordingIn(_Body):
    """The body of ``POST /recordings``."""

    scenario: str = Field(min_length=1, max_length=200, description="what is recorded (a test case's name)")
    environment: dict[str, Any] = Field(default_factory=dict, description=(
        '{"probes": [...]}, {"nodes": [...]} or {"job": "<id>"}; empty: every probe with power or '
        'energy data'))
    start: TimeValue = Field(None, description=TIME_DOC)
    client_time: TimeValue = Field(None, description="the caller's now (epoch s): gives the clock offset")
    metadata: dict[str, Any] = Field(default_factory=dict, description="free JSON kept with the recording")


class StepIn(_Body):
    """The body of ``POST /recordings/{id}/steps``."""

    name: str = Field(min_length=1, max_length=200)
    time: TimeValue = Field(None, description=TIME_DOC)
    client_time: TimeValue = Field(None, description="the caller's now (epoch s): gives the clock offset")


class TimeIn(_Body):
    """The body of ``.../end`` and ``.../stop`` (both fields optional)."""

    time: TimeValue = Field(None, description=TIME_DOC)
    client_time: TimeValue = Field(None, description="the caller's now (epoch s): gives the clock offset")


class JobIn(_Body):
    """The body of ``POST /jobs``."""

    id: str = Field(min_length=1, max_length=200,
                    description="the scheduler's job id (no '/': it is a path segment of /api/v1/jobs/<id>)")
    nodes: list[str] = Field(min_length=1, description="the nodes the job ran on")
    start: TimeValue = Field(description="when the job started (epoch s)")
    end: TimeValue = Field(None, description="when it ended; null: still running")
    user: str | None = None
    name: str | None = None
    state: str | None = None
    source: str | None = Field(None, description="where the job came from: rest, slurm, oar")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _no_slash(cls, v: str) -> str:
        if "/" in v:  # %2F reaches the routes decoded: /jobs/a/b would not name this job
            raise ValueError(f"a job id cannot hold '/' ({v!r}): it is a path segment of /api/v1/jobs/<id>; "
                             "register it with another separator (e.g. '_')")
        return v


# -- dependencies ---------------------------------------------------------------------------


Ctx = Annotated[ApiContext, Depends(context)]


def recorder(ctx: Ctx) -> Recorder:
    """The process's recorder; 503 when this API runs without one."""
    if getattr(ctx, "recorder", None) is None:
        raise HTTPException(503, "this API runs without the recorder's database (run the api role with a "
                                 "[recorder] section, or `wattsight run`)")
    return ctx.recorder


def _check_token(request: Request, rec: Recorder, what: str) -> None:
    if rec.token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    hint = ("pass the header `Authorization: Bearer <token>` with the token of the server's [recorder] "
            "token or token_file (curl -H \"Authorization: Bearer $WATTSIGHT_TOKEN\" ...)")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(401, f"{what} needs a token: {hint}", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), rec.token.get_secret_value().encode()):
        raise HTTPException(401, f"the bearer token given is not the one configured: {hint}",
                            headers={"WWW-Authenticate": "Bearer"})


Rec = Annotated[Recorder, Depends(recorder)]


def writer(request: Request, rec: Rec) -> Recorder:
    """The recorder, once the request has shown the token (when one is configured)."""
    _check_token(request, rec, "writing recordings and jobs")
    return rec


def reader(request: Request, rec: Rec) -> Recorder:
    """The recorder, once the request has shown the token if reads need it too."""
    if rec.config.read_token_required:
        _check_token(request, rec, "reading recordings and jobs ([recorder] read_token_required = true)")
    return rec


Writer = Annotated[Recorder, Depends(writer)]
Limit = Annotated[int, Query(ge=1, le=10_000, description="at most this many, latest first")]
Reader = Annotated[Recorder, Depends(reader)]


def to_ms(value: TimeValue, now_ms: int, name: str) -> int:
    """A body's time in ms: epoch seconds, or any time the query parameters accept; None: now."""
    if value is None:
        return int(now_ms)
    if isinstance(value, str):
        return parse_time_ms(value, now_ms, name=name)
    if math.isfinite(value) and value > 1e11:
        raise QueryError(f"{name}={value!r} is too large for epoch seconds (milliseconds given?)")
    if not math.isfinite(value) or value < 0 or value * 1000 > MAX_MS:
        raise QueryError(f"{name}={value!r} is not a time: give epoch seconds, e.g. 1700000000.25")
    return round(value * 1000)


def _listing(key: str, items) -> dict[str, Any]:
    """A list answer: ``{"count": n, key: [...]}``."""
    found = list(items)
    return {"count": len(found), key: found}


def _offset(client_time: TimeValue, now_ms: int) -> int | None:
    return None if client_time is None else now_ms - to_ms(client_time, now_ms, "client_time")


# -- recordings -----------------------------------------------------------------------------


@router.post("/recordings", status_code=201, summary="Start a recording of a scenario", responses=ERRORS)
def create_recording(body: RecordingIn, response: Response, ctx: Ctx, rec: Writer) -> dict[str, Any]:
    """Start a recording at ``start`` (the caller's clock); its environment is checked now.  An identical
    retry (same scenario, start, environment and metadata) answers 200 with the stored recording."""
    now = ctx.clock()
    start, offset = to_ms(body.start, now, "start"), _offset(body.client_time, now)
    env = rec.check_environment(Catalog(ctx.store, ctx.topology), body.environment)
    warnings = rec.clock_warnings(offset, "start") + _future(rec, start, now, "the start")
    stored, new = rec.db.create_recording(body.scenario, env, start, offset, body.metadata, warnings)
    if not new:
        response.status_code = 200
    return {**recording_json(stored), "warnings": warnings}


@router.get("/recordings", summary="Recordings, latest first", responses=ERRORS)
def list_recordings(rec: Reader, limit: Limit = 100,
                    scenario: Annotated[str | None, Query(description="only this scenario's")] = None
                    ) -> dict[str, Any]:
    """Recordings without their steps, latest start first (of one scenario with ``scenario``)."""
    return _listing("recordings", map(recording_json, rec.db.recordings(scenario, limit)))


@router.get("/recordings/{rid}", summary="A recording with its steps", responses=ERRORS)
def get_recording(rid: str, rec: Reader) -> dict[str, Any]:
    """A recording with its steps, clock offset and warnings."""
    return recording_json(rec.db.recording(rid))


@router.get("/recordings/{rid}/steps", summary="The steps of a recording", responses=ERRORS)
def list_steps(rid: str, rec: Reader) -> dict[str, Any]:
    """The steps of a recording, in the order they began."""
    steps = rec.db.recording(rid)["steps"]
    return {"count": len(steps), "steps": [step_json(s) for s in steps]}


@router.post("/recordings/{rid}/steps", status_code=201, summary="Start a step (ends the open one)",
             responses=ERRORS)
def add_step(rid: str, body: StepIn, response: Response, ctx: Ctx,
             rec: Writer) -> dict[str, Any]:
    """The step starts at ``time`` (the caller's clock); the open step ends there.  An identical
    retry (same name and time) answers 200 with the stored step; another step of that name 409."""
    now = ctx.clock()
    t, offset = to_ms(body.time, now, "time"), _offset(body.client_time, now)
    warnings = rec.clock_warnings(offset, f"step {body.name!r}") + _future(rec, t, now, f"step {body.name!r}")
    step, new = rec.db.add_step(rid, body.name, t, offset, warnings)
    if not new:
        response.status_code = 200
    return {"step": step_json(step), "clock_offset_s": None if offset is None else offset / 1000,
            "warnings": warnings}


@router.post("/recordings/{rid}/steps/{name:path}/end", summary="End a step", responses=ERRORS)
def end_step(rid: str, name: str, ctx: Ctx, rec: Writer, body: TimeIn | None = None) -> dict[str, Any]:
    """End a step at ``time``; a step closed by the next step or the stop may be ended earlier."""
    body, now = body or TimeIn(), ctx.clock()
    t, offset = to_ms(body.time, now, "time"), _offset(body.client_time, now)
    warnings = rec.clock_warnings(offset, f"end of step {name!r}")
    step, _ = rec.db.end_step(rid, name, t, warnings)
    return {"step": step_json(step), "warnings": warnings}


@router.post("/recordings/{rid}/stop", summary="Stop a recording (ends its open step)", responses=ERRORS)
def stop_recording(rid: str, ctx: Ctx, rec: Writer, body: TimeIn | None = None) -> dict[str, Any]:
    """Stop at ``time``, closing the open step there; an identical retry answers 200."""
    body, now = body or TimeIn(), ctx.clock()
    t, offset = to_ms(body.time, now, "time"), _offset(body.client_time, now)
    stored, _ = rec.db.stop(rid, t, rec.clock_warnings(offset, "stop"))
    return recording_json(stored)


@router.get("/recordings/{rid}/report", summary="Energy of a recording, in total and per step",
            responses=ERRORS)
def recording_report(rid: str, ctx: Ctx,
                     rec: Reader) -> dict[str, Any]:
    """Energy per step and in total, per node and probe, from stored data (running: up to now)."""
    return rec.recording_report(ctx.store, Catalog(ctx.store, ctx.topology), ctx.config, rid, ctx.clock())


# -- jobs -----------------------------------------------------------------------------------


@router.post("/jobs", status_code=201, summary="Register a job (or update it: same id)", responses=ERRORS)
def put_job(body: JobIn, response: Response, ctx: Ctx,
            rec: Writer) -> dict[str, Any]:
    """Register a job (201) or replace the job of that id (200): importers re-post running jobs."""
    now = ctx.clock()
    start = to_ms(body.start, now, "start")
    end = None if body.end is None else to_ms(body.end, now, "end")
    if end is not None and end < start:
        raise QueryError(f"job {body.id!r} ends ({end / 1000}) before it starts ({start / 1000})")
    nodes = list(dict.fromkeys(n.strip() for n in body.nodes if n.strip()))
    if not nodes:
        raise QueryError(f"job {body.id!r}: nodes is empty; give the nodes the job ran on")
    job, new = rec.db.put_job({"id": body.id, "nodes": nodes, "start_ms": start, "end_ms": end,
                               "user": body.user, "name": body.name, "state": body.state,
                               "source": body.source or "rest", "metadata": body.metadata})
    if not new:
        response.status_code = 200
    return job_json(job)


@router.get("/jobs", summary="Jobs, latest first", responses=ERRORS)
def list_jobs(rec: Reader, limit: Limit = 100,
              user: Annotated[str | None, Query(description="only this user's")] = None) -> dict[str, Any]:
    """Jobs, latest start first (of one user with ``user``)."""
    return _listing("jobs", map(job_json, rec.db.jobs(user, limit)))


@router.get("/jobs/{jid}", summary="A job", responses=ERRORS)
def get_job(jid: str, rec: Reader) -> dict[str, Any]:
    """A job: its nodes (as the scheduler names them), start, end, user, state."""
    return job_json(rec.db.job(jid))


@router.get("/jobs/{jid}/energy", summary="Energy of a job per node and probe", responses=ERRORS)
def job_energy(jid: str, ctx: Ctx, rec: Reader) -> dict[str, Any]:
    """Energy of a job over its run, per node and probe (running: up to now), like ``/energy``."""
    return rec.job_energy(ctx.store, Catalog(ctx.store, ctx.topology), ctx.config, jid, ctx.clock())


def _future(rec: Recorder, t_ms: int, now_ms: int, what: str) -> list[str]:
    return future_warnings(t_ms, now_ms, rec.config.max_clock_skew, what)
