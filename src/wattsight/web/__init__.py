"""The web UI: pages, their assets, live updates, PNG graphs and exports.

``router`` is included by the API app (:func:`wattsight.consumers.api.app.create_app`).
The pages (:mod:`.pages`) are HTML + JS drawing with uPlot, whose build comes from the
installed ``uplot-python`` package; the data routes (:mod:`.data`) serve what the pages
draw: downsampled series, the live stream, server-side PNG graphs and export archives.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import data, pages

router = APIRouter()
router.include_router(data.router)
router.include_router(pages.router)
