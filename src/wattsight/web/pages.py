"""The web UI's pages and static assets (in progress)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
