"""Draw a :class:`Chart` as a PNG with matplotlib's Agg canvas (no pyplot, no global state).

Stacked areas for a summary (the top probes by energy, the rest summed as "others"), a line
with its min-max band for one probe; network charts put *in* above the axis and *out* below.
Colours are Okabe and Ito's colourblind-safe palette.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field

import numpy as np

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
OTHERS = "#999999"
#: Probes drawn in their own colour in a stacked chart; the rest are summed as "others".
TOP = 7
_LOCK = threading.Lock()  # matplotlib's font cache and text layout are not meant for concurrent use


@dataclass
class Curve:
    """One series on a bucket grid: the plain mean per bucket, and its min and max when known."""

    label: str
    avg: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    others: bool = False  # the sum of the probes not drawn on their own (grey, last)

    @property
    def weight(self) -> float:
        return float(np.nansum(self.avg)) if len(self.avg) else 0.0


@dataclass
class Chart:
    """What one graph shows: a title, the unit, bucket times and curves above / below the axis."""

    title: str
    ylabel: str
    unit: str
    start_ms: int
    end_ms: int
    t: np.ndarray  # bucket starts, int64 ms
    up: list[Curve] = field(default_factory=list)
    down: list[Curve] = field(default_factory=list)  # drawn negative: network out
    stacked: bool = True
    empty: str = "no data in this range"


def _top(curves: list[Curve], n: int) -> list[Curve]:
    """The ``n`` heaviest curves, the others summed into one "others (k probes)" curve."""
    if len(curves) <= n + 1 or any(c.others for c in curves):
        return curves
    ranked = sorted(curves, key=lambda c: -c.weight)
    rest = ranked[n:]
    total = np.nansum(np.vstack([c.avg for c in rest]), axis=0)
    return ranked[:n] + [Curve(f"others ({len(rest)} probes)", total, others=True)]


def _bridge(v: np.ndarray, zero: bool = True) -> np.ndarray:
    """``v`` with each lone empty bucket given its predecessor's value (a sample a little late
    or early leaves one bucket empty and the next with two: a stack would dip to zero, a line
    break); longer gaps are zeros (``zero``, for a stack) or left empty (a line)."""
    out = v.copy()
    lone = np.flatnonzero(~np.isfinite(v[1:-1])) + 1
    lone = lone[np.isfinite(v[lone - 1]) & np.isfinite(v[lone + 1])]
    out[lone] = v[lone - 1]
    return np.nan_to_num(out) if zero else out


def _colours(k: int, others: bool) -> list[str]:
    out = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(k)]
    if others and out:
        out[-1] = OTHERS
    return out


def render_png(chart: Chart, width: int, height: int) -> bytes:
    """The chart as PNG bytes of exactly ``width`` x ``height`` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _LOCK:
        fig = Figure(figsize=(width / 100, height / 100), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        drawn = _draw(ax, chart)
        _decorate(ax, chart, drawn, width)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": "wattsight"})
    return buf.getvalue()


def _draw(ax, chart: Chart) -> bool:
    """Draw the curves; False when there was nothing to draw."""
    x = chart.t.astype("datetime64[ms]")
    has = any(np.isfinite(c.avg).any() for c in chart.up + chart.down)
    if not has:
        return False
    for sign, curves in ((1.0, chart.up), (-1.0, chart.down)):
        if not curves:
            continue
        if chart.stacked:
            shown = _top(curves, TOP)
            colours = _colours(len(shown), shown[-1].others)
            labels = [c.label for c in shown] if sign > 0 or not chart.up else [None] * len(shown)
            ax.stackplot(x, *[sign * _bridge(c.avg) for c in shown], labels=labels, colors=colours,
                         alpha=1.0 if sign > 0 else 0.55, linewidth=0)
        else:
            for i, c in enumerate(curves):
                colour = OKABE_ITO[(i + (2 if sign < 0 else 0)) % len(OKABE_ITO)]
                if c.lo is not None and c.hi is not None:
                    ax.fill_between(x, sign * c.lo, sign * c.hi, color=colour, alpha=0.25, linewidth=0,
                                    label=f"{c.label} min-max")
                ax.plot(x, sign * _bridge(c.avg, zero=False), color=colour, linewidth=1.2, label=c.label)
    if chart.down:
        ax.axhline(0, color="#333333", linewidth=0.8)
    return True


def _decorate(ax, chart: Chart, drawn: bool, width: int) -> None:
    import matplotlib.dates as mdates
    from matplotlib.ticker import EngFormatter, FuncFormatter

    ax.set_title(chart.title, fontsize=10 if width >= 500 else 8)
    ax.set_xlim(np.datetime64(int(chart.start_ms), "ms"), np.datetime64(int(chart.end_ms), "ms"))
    locator = mdates.AutoDateLocator(maxticks=max(3, width // 110))
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)", fontsize=8)
    ax.set_ylabel(chart.ylabel, fontsize=8)
    ax.margins(x=0, y=0.08)  # a flat line is not drawn on the frame
    eng = EngFormatter(unit=chart.unit, places=None)
    if chart.down:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: eng(abs(v))))
    else:
        ax.yaxis.set_major_formatter(eng)
        ax.set_ylim(bottom=0)
    ax.tick_params(labelsize=7)
    ax.xaxis.get_offset_text().set_fontsize(7)
    ax.grid(True, alpha=0.3, linewidth=0.5)
    if not drawn:
        ax.set_yticks([])
        ax.text(0.5, 0.5, chart.empty, transform=ax.transAxes, ha="center", va="center", fontsize=9,
                color="#555555", wrap=True)
        return
    handles, labels = ax.get_legend_handles_labels()
    if chart.stacked:  # listed top down, as the areas are stacked
        handles, labels = handles[::-1], labels[::-1]
    if handles:
        if width >= 560:  # beside the plot, outside it: never over the data
            ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
                      frameon=False)
        else:
            ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.3), fontsize=6,
                      ncol=2, frameon=False)
