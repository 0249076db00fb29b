"""The web UI's pages and static assets, served by the API app.

Every page is one HTML shell (``templates/page.html``) that loads ES modules from
``static/js``; the modules draw with uPlot, whose build is served from the installed
``uplot-python`` package at ``/static/vendor/`` (never a CDN, never a copy in this
repository).  Pages:

- ``/``: overview, a stacked graph of all (or the selected) probes, legend and totals;
- ``/select``: pick probes by search, site, node, job or regex; stacked or side by side;
- ``/probe/<id>``: one probe over every period, its metadata and health;
- ``/network``: bytes in above and out below the axis, per port or per node.

The selection and the period live in the URL query (see docs/web-ui.md), so any page can be
shared; the server only fills the page's name and, for a probe page, the probe id.
"""

from __future__ import annotations

import html
import importlib.resources
from functools import cache
from pathlib import Path
from string import Template

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)

WEB = Path(__file__).parent
STATIC = WEB / "static"
#: What the vendor route serves from ``uplot.static``: the only third-party files of the UI.
VENDOR = {"uPlot.iife.js": "text/javascript", "uPlot.min.css": "text/css"}
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}
#: Assets change with the installed version: revalidate (ETag) rather than trust a stale copy.
REVALIDATE = {"Cache-Control": "no-cache"}
PAGES = {
    "overview": ("Overview", "Power overview"),
    "select": ("Selection", "Selection"),
    "network": ("Network", "Network traffic"),
    "probe": ("Probe", "Probe"),
}


@cache
def _template() -> Template:
    return Template((WEB / "templates" / "page.html").read_text(encoding="utf-8"))


def render(page: str, **attrs: str) -> HTMLResponse:
    """The HTML shell of ``page``, with ``attrs`` as ``data-*`` attributes of its body."""
    title, heading = PAGES[page]
    if page == "probe":
        title = heading = attrs["probe"]
    data = " ".join(f'data-{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
    body = _template().substitute(title=html.escape(title), heading=html.escape(heading), page=page, attrs=data,
                                  preload=_preload())
    return HTMLResponse(body, headers=REVALIDATE)


@cache
def _preload() -> str:
    """``modulepreload`` links for every module: fetched at once rather than import by import."""
    names = sorted(p.name for p in (STATIC / "js").glob("*.js") if p.name != "main.js")
    return "\n".join(f'<link rel="modulepreload" href="/static/js/{n}">' for n in names)


@router.get("/", response_class=HTMLResponse)
def overview() -> HTMLResponse:
    """The overview: a stacked summary graph, its legend table and the totals."""
    return render("overview")


@router.get("/select", response_class=HTMLResponse)
def select() -> HTMLResponse:
    """The selection page: filters, then stacked and side-by-side graphs."""
    return render("select")


@router.get("/network", response_class=HTMLResponse)
def network() -> HTMLResponse:
    """The network page: in above / out below the axis, per port or per node."""
    return render("network")


@router.get("/probe/{probe:path}", response_class=HTMLResponse)
def probe(probe: str) -> HTMLResponse:
    """One probe's page; an unknown id is reported by the page itself (it asks the API)."""
    return render("probe", probe=probe.rstrip("/"))


@cache
def _vendor_file(name: str) -> bytes:
    return (importlib.resources.files("uplot.static") / name).read_bytes()


@router.get("/static/vendor/{name}")
def vendor(name: str) -> Response:
    """uPlot's JS and CSS from the installed ``uplot-python`` package."""
    if name not in VENDOR:
        raise HTTPException(404, f"no vendor file {name!r}; there are: {', '.join(VENDOR)}")
    try:
        body = _vendor_file(name)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise HTTPException(500, f"uPlot is missing ({exc}): pip install uplot-python") from exc
    return Response(body, media_type=VENDOR[name], headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/{path:path}")
def static(path: str) -> FileResponse:
    """The UI's own scripts, styles and icons (``web/static``)."""
    root = STATIC.resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file() or target.suffix not in TYPES:
        raise HTTPException(404, f"no static file {path!r}")
    return FileResponse(target, media_type=TYPES[target.suffix], headers=REVALIDATE)
