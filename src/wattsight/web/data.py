"""The routes that feed the web UI: live stream, PNG graphs, exports (in progress)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
