"""Kwapi-style PNG graphs: a stacked summary of probes, or one probe, over a period or a range.

``/graph/<period>/`` and ``/graph/<period>/<probe>/`` (see :mod:`.data`) draw the last
minute, hour, day, week, month (30 days) or year (365 days), ending at "now" rounded down
to a period-dependent step: images of one step are identical, so they are cached (an LRU
of rendered PNGs per app) and carry an ETag and a ``Cache-Control: max-age`` up to the
next step.  Data are bucketed to about one point per pixel (rollups for steps of whole
minutes); network counters become rates in B/s; a probe with only an energy counter is
drawn as the counter's rate (W).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..consumers.api.catalog import ENERGY, NET_IN, NET_OUT, POWER, ProbeView
from ..consumers.api.params import iso
from ..errors import QueryError
from .graphs_render import TOP, Chart, Curve, render_png
from .selection import Selection, bucket_arrays, display_step, grid, has_metric, rates

S, MIN, H, DAY = 1_000, 60_000, 3_600_000, 86_400_000
#: Period name -> (length, refresh step: "now" is rounded down to it, and images are cached that long).
PERIODS = {"minute": (MIN, 5 * S), "hour": (H, MIN), "day": (DAY, 5 * MIN), "week": (7 * DAY, 30 * MIN),
           "month": (30 * DAY, 2 * H), "year": (365 * DAY, DAY)}
#: Above TOP + this many probes in a stack, the others are read at whole hours (see _ranked).
FINE_OTHERS = 50
SIZE_LIMITS = {"width": (200, 4000), "height": (120, 3000)}
LABELS = {POWER: ("power", "W"), NET_IN: ("network in", "B/s"), NET_OUT: ("network out", "B/s"),
          "network": ("network (in above, out below)", "B/s")}


def check_period(period: str) -> tuple[int, int]:
    """``(length_ms, refresh_ms)`` of a period name; QueryError naming the valid ones."""
    if period not in PERIODS:
        raise QueryError(f"period {period!r} is not known: use one of {', '.join(PERIODS)} "
                         "(e.g. /graph/day/ or /graph/hour/<probe>/)")
    return PERIODS[period]


def check_size(width: int, height: int) -> tuple[int, int]:
    """The image size in pixels, within :data:`SIZE_LIMITS`, or a QueryError saying the limits."""
    for name, value in (("width", width), ("height", height)):
        lo, hi = SIZE_LIMITS[name]
        if not lo <= value <= hi:
            raise QueryError(f"{name}={value} is outside {lo}..{hi} pixels")
    return width, height


def period_range(period: str, now_ms: int) -> tuple[int, int]:
    """``(start, end)`` of the last ``period`` with ``end`` = now rounded down to its refresh step."""
    length, refresh = check_period(period)
    end = now_ms // refresh * refresh
    return end - length, end


# -- data -----------------------------------------------------------------------------------


@dataclass
class Lines:
    """Per probe: the bucket grid's mean, min and max (NaN where a bucket is empty)."""

    t: np.ndarray
    avg: dict[str, np.ndarray]
    lo: dict[str, np.ndarray]
    hi: dict[str, np.ndarray]


def load(store, views: list[ProbeView], metric: str, start_ms: int, end_ms: int, step: int) -> Lines:
    """``metric`` (power, network_in or network_out) of each probe on a grid of ``step`` buckets."""
    first = start_ms - start_ms % step
    gauges = [v for v in views if metric == POWER and POWER in v.metrics]
    counters = [(v, ENERGY if metric == POWER else metric) for v in views if v not in gauges]
    b = bucket_arrays(store, [(v.id, POWER) for v in gauges], first, end_ms, step)
    c = bucket_arrays(store, [(v.id, m) for v, m in counters], first - step, end_ms, step)
    avg, lo, hi = {}, {}, {}
    for v in gauges:
        x = b[(v.id, POWER)]
        avg[v.id], lo[v.id], hi[v.id] = (x["t"], x["avg"]), (x["t"], x["min"]), (x["t"], x["max"])
    for v, m in counters:
        avg[v.id] = rates(c[(v.id, m)], step)
    t, avg = grid(avg, first, end_ms, step)
    _, lo = grid(lo, first, end_ms, step)
    _, hi = grid(hi, first, end_ms, step)
    return Lines(t, avg, lo, hi)


def chart(store, selection: Selection, start_ms: int, end_ms: int, width: int, *,
          probe: ProbeView | None = None, what: str = "") -> Chart:
    """The chart of a selection (stacked) or of one probe (a line with its min-max band)."""
    metric = selection.metric
    views = [probe] if probe is not None else selection.views
    name, unit = LABELS[metric]
    parts = (NET_IN, NET_OUT) if metric == "network" else (metric,)
    step = display_step(views, start_ms, end_ms, width)
    t = np.arange(start_ms - start_ms % step, end_ms, step, dtype=np.int64)
    curves = []
    for m in parts:
        suffix = f" {m.split('_')[1]}" if metric == "network" else ""
        chosen = [v for v in views if has_metric(v, m)]
        if probe is None and len(chosen) > TOP + FINE_OTHERS and step % H:
            curves.append(_ranked(store, chosen, m, start_ms, end_ms, step, suffix))
            continue
        lines = load(store, chosen, m, start_ms, end_ms, step)
        curves.append([Curve(f"{pid}{suffix}", lines.avg[pid], lines.lo.get(pid), lines.hi.get(pid))
                       for pid in lines.avg])
    who = probe.id if probe is not None else _who(selection)
    title = f"{who}: {name}, {what or _span(start_ms, end_ms)}"
    hint = (f"no {name} data for {who} in this range" if views
            else f"no probe with {name} data: add a driver (wattsight plugins) or try wattsight run --demo")
    return Chart(title, f"{name} ({unit})" if metric != "network" else "B/s (in above 0, out below)",
                 unit, start_ms, end_ms, t, up=curves[0], down=curves[1] if len(curves) > 1 else [],
                 stacked=probe is None, empty=hint)


def _ranked(store, views: list[ProbeView], metric: str, start_ms: int, end_ms: int, step: int,
            suffix: str) -> list[Curve]:
    """The :data:`TOP` heaviest probes at ``step`` and the others summed at whole hours.

    With many probes, reading every one at a step shorter than an hour reads the store's
    1 min cells of them all (about 1 s for 1,000 probes over a day); the others' sum is a
    background, drawn from the 1 h cells (each bucket takes its hour's value).
    """
    coarse = -(-step // H) * H
    rough = load(store, views, metric, start_ms, end_ms, coarse)
    weight = {pid: float(np.nansum(v)) for pid, v in rough.avg.items()}
    top = sorted(weight, key=lambda p: -weight[p])[:TOP]
    fine = load(store, [v for v in views if v.id in top], metric, start_ms, end_ms, step)
    curves = [Curve(f"{pid}{suffix}", fine.avg[pid]) for pid in top]
    rest = [rough.avg[p] for p in weight if p not in top]
    total = np.nansum(np.vstack(rest), axis=0)
    at = np.clip((fine.t - rough.t[0]) // coarse, 0, len(total) - 1)
    curves.append(Curve(f"others ({len(rest)} probes, hourly){suffix}", total[at], others=True))
    return curves


def _who(selection: Selection) -> str:
    n = len(selection.views)
    return selection.views[0].id if n == 1 else f"{n or 'no'} probes"


def _span(start_ms: int, end_ms: int) -> str:
    return f"{iso(start_ms)[:16]} to {iso(end_ms)[:16]} UTC"


# -- cache ----------------------------------------------------------------------------------


class PngCache:
    """A thread-safe LRU of rendered PNGs: key -> (bytes, etag)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.hits = self.misses = 0
        self._items: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_render(self, key: tuple, render) -> tuple[bytes, str, bool]:
        """``(png, etag, hit)``; ``render()`` makes the PNG on a miss (outside the lock)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return (*self._items[key], True)
            self.misses += 1
        png = render()
        etag = '"' + hashlib.sha256(png).hexdigest()[:32] + '"'
        with self._lock:
            self._items[key] = (png, etag)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return png, etag, False


def cache_of(app) -> PngCache:
    """The app's PNG cache (created on first use)."""
    cache = getattr(app.state, "web_png_cache", None)
    if cache is None:
        cache = app.state.web_png_cache = PngCache()
    return cache


def period_png(store, selection: Selection, period: str, now_ms: int, width: int, height: int,
               cache: PngCache, probe: ProbeView | None = None) -> tuple[bytes, str, int]:
    """``(png, etag, max_age_s)`` of a period graph, from the cache when this step's image exists."""
    start, end = period_range(period, now_ms)
    refresh = PERIODS[period][1]
    key = (period, end, selection.metric, probe.id if probe else tuple(selection.ids), width, height)
    png, etag, _ = cache.get_or_render(
        key, lambda: render_png(chart(store, selection, start, end, width, probe=probe,
                                      what=f"last {period} to {iso(end)[:16]} UTC"), width, height))
    return png, etag, max(1, (end + refresh - now_ms) // 1000)
