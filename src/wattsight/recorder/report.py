"""``wattsight report``: a recording's (or a job's) energy as a table, and its power over time as a PNG.

Data come from the server: ``GET /api/v1/recordings/{id}/report`` (or ``/api/v1/jobs/{id}/energy``,
which holds the job) for the figures, ``GET /api/v1/series`` for the power curves.  The plot is a
matplotlib ``Figure`` drawn by the Agg canvas (no pyplot, no display), the steps shaded in turn.
rich and matplotlib are imported here, when the verb runs, never by the SDK.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from .api import ApiDown, ApiRefused, Client, quote

#: Step shading colours, in turn (Okabe-Ito, colour-blind safe), and their opacity.
SHADES = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
SHADE_ALPHA = 0.25
MAX_CURVES = 8


def fetch(client: Client, recording: str | None, job: str | None) -> dict:
    """``{"title", "start", "end", "total": R, "steps": [...], "currency"}`` from the server.

    The id is a path segment, escaped: a job id from a scheduler or a mistyped recording id
    holding ``?``, ``#``, ``%``, a space or non-ASCII letters then names that id, not a shorter
    one (``a?b`` is not job ``a``) nor an invalid URL."""
    if recording:
        r = client.call("GET", f"/api/v1/recordings/{quote(recording)}/report")
        rec = r.get("recording") or {}
        return {"title": f"recording {recording} ({rec.get('scenario', '?')})", "start": rec.get("start"),
                "end": rec.get("end") or datetime.now(UTC).timestamp(),
                "total": r.get("total") or {}, "steps": r.get("steps") or [], "raw": r}
    energy = client.call("GET", f"/api/v1/jobs/{quote(job)}/energy")
    meta = energy["job"]  # the job as GET /api/v1/jobs/{id} shows it
    title = f"job {job}" + (f" ({meta['name']})" if meta.get("name") else "")
    end = meta.get("end") or datetime.now(UTC).timestamp()
    return {"title": title, "start": meta.get("start"), "end": end, "total": energy, "steps": [],
            "raw": {"job": meta, "energy": energy}}


def series(client: Client, probes: list[str], start: float, end: float) -> tuple[dict[str, list], list[str]]:
    """Power points (t, W) per probe over the span, and notes on the probes that have none."""
    out, notes = {}, []
    for pid in probes[:MAX_CURVES]:
        try:
            params = {"probes": pid, "metric": "power", "from": f"{start:.3f}", "to": f"{end:.3f}",
                      "agg": "avg"}
            r = client.call("GET", "/api/v1/series", params=params)
        except ApiRefused as exc:
            notes.append(f"{pid}: no power curve ({exc.detail})")
            continue
        for s in r.get("series") or []:
            col = s["columns"].index("avg") if "avg" in s["columns"] else s["columns"].index("value")
            out[s["probe"]] = [(p[0], p[col]) for p in s["points"] if p[col] is not None]
    if len(probes) > MAX_CURVES:
        notes.append(f"{len(probes) - MAX_CURVES} more probe(s) not plotted (at most {MAX_CURVES} curves)")
    return out, notes


def plot(data: dict, curves: dict[str, list]):
    """The Figure: power of each probe over time, each step shaded (its ``gid`` is the step's name)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), dpi=100)
    ax = fig.add_subplot()
    t0 = data["start"] or 0.0
    for pid, points in curves.items():
        if points:
            ax.plot([t - t0 for t, _ in points], [w for _, w in points], linewidth=1.2, label=pid)
    for i, s in enumerate(data["steps"]):
        end = s.get("end") or data["end"]
        ax.axvspan(s["start"] - t0, end - t0, color=SHADES[i % len(SHADES)], alpha=SHADE_ALPHA, linewidth=0,
                   gid=s["name"], label=f"step {s['name']}")
    ax.set_xlim(0, max((data["end"] or t0) - t0, 1e-3))
    ax.set_xlabel(f"seconds since {datetime.fromtimestamp(t0, UTC).isoformat(timespec='seconds')}")
    ax.set_ylabel("power (W)")
    ax.set_title(f"power of {data['title']}")
    ax.grid(True, alpha=0.3)
    if curves or data["steps"]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    return fig


def write_png(fig, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).print_png(path)


def _row(name: str, r: dict, duration: float | None = None) -> list[str]:
    e = r.get("energy") or r
    dur = r.get("duration_s", duration)
    return [name, _num(dur, 1), _num(e.get("joules"), 1), _num(e.get("kwh"), 6),
            _num(r.get("mean_power_w"), 1), _num(r.get("peak_power_w"), 1),
            "-" if e.get("coverage") is None else f"{e['coverage']:.1%}", _num(e.get("cost"), 4)]


def _num(v, digits: int) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def tables(data: dict):
    """rich Tables: per step (and total), then per node and probe of the total."""
    from rich.table import Table

    total = data["total"]
    currency = (total.get("energy") or total).get("currency") or "cost"
    steps = Table(title=f"energy of {data['title']}")
    for c in ["step", "duration (s)", "energy (J)", "energy (kWh)", "mean (W)", "peak (W)", "coverage",
              f"cost ({currency})"]:
        steps.add_column(c, justify="left" if c == "step" else "right", no_wrap=c == "step")
    for s in data["steps"]:
        steps.add_row(*_row(s["name"], s))
    steps.add_row(*_row("total", total, (data["end"] or 0) - (data["start"] or 0)), style="bold")
    parts = Table(title="per node and probe (total)")
    for c in ["", "node / probe", "energy (J)", "energy (kWh)", "mean (W)", "peak (W)", "coverage", "method"]:
        parts.add_column(c, justify="left" if c in ("", "node / probe", "method") else "right",
                         no_wrap=c == "node / probe")
    for kind in ("nodes", "probes"):
        for pid, e in (total.get(kind) or {}).items():
            method = e.get("method") or ("sum of its probes" if kind == "nodes" else "-")
            parts.add_row(kind[:-1], pid, _num(e.get("joules"), 1), _num(e.get("kwh"), 6),
                          _num(e.get("mean_power_w"), 1), _num(e.get("peak_power_w"), 1),
                          "-" if e.get("coverage") is None else f"{e['coverage']:.1%}", str(method))
    return steps, parts


def main(args) -> int:
    """The ``report`` verb: fetch, print, plot; exit 1 when the server cannot answer."""
    import os

    from rich.console import Console

    token = args.token if args.token is not None else os.environ.get("WATTSIGHT_TOKEN")
    client = Client(args.api, token, 30.0)
    try:
        data = fetch(client, args.recording, args.job)
    except (ApiDown, ApiRefused) as exc:
        print(f"wattsight report: {exc}; check --api (GET /api/v1/recordings lists the recordings)",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data["raw"], indent=2))
    else:
        console = Console(width=max(Console().width, 120))
        for t in tables(data):
            console.print(t)
    if args.png:
        probes = list((data["total"].get("probes") or {}).keys())
        try:
            curves, notes = series(client, probes, data["start"], data["end"])
        except ApiDown as exc:
            print(f"wattsight report: no power curves: {exc}", file=sys.stderr)
            curves, notes = {}, []
        write_png(plot(data, curves), args.png)
        for n in notes:
            print(f"wattsight report: {n}", file=sys.stderr)
        print(f"wattsight report: wrote {args.png}", file=sys.stderr)
    return 0
