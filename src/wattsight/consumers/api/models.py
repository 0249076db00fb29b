"""Shapes shared by the routes: the error answer, documented responses, JSON cleaning."""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

import numpy as np
from fastapi.responses import Response
from pydantic import BaseModel, Field


class Problem(BaseModel):
    """Every 4xx/5xx answer: what was wrong and what to do about it."""

    detail: str = Field(
        examples=["no probe named 'lyon.taurus-77'; GET /api/v1/probes lists the known probes"])


NOT_FOUND = {404: {"model": Problem, "description": "unknown probe, node or metric"}}
BAD_QUERY = {422: {"model": Problem, "description": "a parameter that cannot be used as given"}}
ERRORS = {**NOT_FOUND, **BAD_QUERY}


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars, paths and tuples made JSON-friendly; NaN and inf become null."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def fast_json(body: dict[str, Any]) -> Response:
    """``body`` (plain lists, floats, strings: no NaN) as JSON, without FastAPI's encoder, which takes
    about twice as long as computing a /series answer of 100,000 points; anything else goes
    through :func:`plain` first."""
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = json.dumps(plain(body), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(text.encode("utf-8"), media_type="application/json")
