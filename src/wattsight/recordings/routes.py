"""``/api/v1/recordings`` and ``/api/v1/jobs`` (in progress)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
