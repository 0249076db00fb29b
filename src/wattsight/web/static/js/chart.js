// Graphs drawn with uPlot: stacked areas, in-above/out-below mirrors, min/max bands; a hover
// readout of the real (unstacked) values; a PNG of each graph.

import { esc, formatterFor } from "./format.js";

/** Okabe-Ito colours (colour-blind safe), then Paul Tol's muted scheme; grey is for "others". */
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
  "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"];
export const OTHERS = "#8c8c8c";

/** Okabe-Ito's eighth colour is black; on a dark background the indigo in its place would not show. */
const DARK_EIGHTH = "#E8E8E8";

export function colour(i, others = false) {
  if (others) return OTHERS;
  const k = i % PALETTE.length;
  return k === 7 && matchMedia("(prefers-color-scheme: dark)").matches ? DARK_EIGHTH : PALETTE[k];
}

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

function theme() {
  const css = getComputedStyle(document.documentElement);
  const v = (name, dflt) => css.getPropertyValue(name).trim() || dflt;
  return { fg: v("--fg", "#222"), muted: v("--muted", "#666"), grid: v("--grid", "#ddd"), bg: v("--bg", "#fff") };
}

let serial = 0;

/**
 * One graph in ``container``: a title bar with a PNG button, the uPlot canvas and a readout.
 * ``update({xs, layers, fromMs, toMs})`` redraws; ``layers`` are [{label, colour, values, raw,
 * sign}] drawn in order (stacked cumulative values in ``values``, real ones in ``raw``).
 */
export class Chart {
  constructor(container, { title, metric = "power", height = 260, mirror = false, band = false, compact = false }) {
    this.metric = metric;
    this.mirror = mirror;
    this.band = band;
    this.height = height;
    this.compact = compact;
    this.title = title;
    this.fmt = formatterFor(mirror ? "network_in" : metric);
    this.id = `chart-${++serial}`;
    this.el = document.createElement("figure");
    this.el.className = "chart";
    this.el.innerHTML = `<figcaption><span class="chart-title" id="${this.id}-t">${esc(title)}</span>
      <button type="button" class="small png" aria-label="Download ${esc(title)} as PNG">PNG</button></figcaption>
      <div class="plot" tabindex="0" role="group" aria-labelledby="${this.id}-t" aria-describedby="${this.id}-r"
        aria-roledescription="graph"></div>
      <div class="readout" id="${this.id}-r" aria-live="polite"></div>`;
    container.append(this.el);
    this.plotEl = this.el.querySelector(".plot");
    this.readout = this.el.querySelector(".readout");
    this.el.querySelector(".png").addEventListener("click", () => this.downloadPng());
    this.u = null;
    this.key = "";
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(this.el);
    this.plotEl.addEventListener("keydown", (ev) => this.key_(ev));
    // read values aloud only for keyboard use, not for every mouse move
    this.readout.setAttribute("aria-live", "off");
    this.plotEl.addEventListener("focus", () => this.readout.setAttribute("aria-live", "polite"));
    this.plotEl.addEventListener("blur", () => this.readout.setAttribute("aria-live", "off"));
    this.dark = matchMedia("(prefers-color-scheme: dark)");
    this.retheme = () => this.rebuild();
    this.dark.addEventListener("change", this.retheme);
  }

  /** Arrow keys move the read-out along the time axis (Home / End: first / last point). */
  key_(ev) {
    if (!this.u) return;
    const n = this.u.data[0].length;
    let idx = this.u.cursor.idx ?? n - 1;
    const moves = { ArrowLeft: -1, ArrowRight: 1, PageUp: -10, PageDown: 10 };
    if (ev.key in moves) idx = Math.min(n - 1, Math.max(0, idx + moves[ev.key]));
    else if (ev.key === "Home") idx = 0;
    else if (ev.key === "End") idx = n - 1;
    else return;
    ev.preventDefault();
    const left = this.u.valToPos(this.u.data[0][idx], "x");
    this.u.setCursor({ left, top: this.u.bbox.height / devicePixelRatio / 2 });
  }

  /** Draw again from scratch (the theme changed). */
  rebuild() {
    if (!this.u || !this.last) return;
    this.key = "";
    this.update(this.last);
  }

  width() {
    return Math.max(240, Math.floor(this.plotEl.clientWidth || this.el.clientWidth || 600));
  }

  fit() {
    if (this.u && Math.abs(this.u.width - this.width()) > 2) this.u.setSize({ width: this.width(), height: this.height });
  }

  /** Redraw with new data; the uPlot object is rebuilt only when the layers change. */
  update({ xs, layers, fromMs, toMs }) {
    this.last = { xs, layers, fromMs, toMs };
    this.layers = layers;
    const key = layers.map((l) => `${l.label}|${l.colour}`).join(";");
    const data = [xs.map((t) => t / 1000), ...layers.map((l) => l.values)];
    this.range = [fromMs / 1000, toMs / 1000];
    if (!this.u || key !== this.key) {
      this.u?.destroy();
      this.key = key;
      this.u = new uPlot(this.options(layers), data, this.plotEl);
    } else {
      this.u.setData(data, false);
      this.u.setScale("x", { min: this.range[0], max: this.range[1] });
    }
    this.lastT = lastTime(xs, layers);
    this.showReadout(this.u.cursor.idx);  // a live redraw keeps what is being read
  }

  options(layers) {
    const th = theme();
    const fmt = this.fmt;
    const axis = { stroke: th.muted, grid: { stroke: th.grid, width: 1 }, ticks: { stroke: th.grid, width: 1 } };
    const series = [{}, ...layers.map((l) => ({
      label: l.label, stroke: l.colour, width: l.line ? 1.5 : 1, points: { show: false },
      fill: l.fill === false ? undefined : alpha(l.colour, l.fillAlpha ?? 0.75), spanGaps: false,
    }))];
    const opts = {
      width: this.width(), height: this.height, series, legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: {
        x: { time: true, range: () => this.range },
        y: { range: (u, min, max) => yRange(min, max, this.mirror) },
      },
      axes: [
        { ...axis, space: 64, values: (u, splits) => timeLabels(splits, this.range[1] - this.range[0]) },
        { ...axis, size: axisSize, space: this.compact ? 22 : 30, values: (u, splits) => splits.map((v) => fmt(this.mirror ? Math.abs(v) : v)) },
      ],
      hooks: { setCursor: [(u) => this.showReadout(u.cursor.idx)] },
    };
    if (this.band) opts.bands = [{ series: [1, 3], fill: alpha(layers[0].colour, 0.18) }];
    return opts;
  }

  showReadout(idx) {
    const layers = this.layers || [];
    if (idx === null || idx === undefined || !this.u) {
      this.readout.textContent = this.compact ? "" : "Hover the graph (or focus it and use ← →) to read values.";
      return;
    }
    const t = new Date(this.u.data[0][idx] * 1000).toLocaleString(undefined, { hour12: false });
    const shown = layers.filter((l) => !l.hideInReadout);
    // stacked layers are drawn largest sum first; read them in the legend's order, then each group's total
    const ordered = shown.some((l) => l.rank !== undefined)
      ? [...shown].sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : a.rank - b.rank)) : shown;
    const item = (c, label, v) => `<span>${c ? `<i style="background:${c}"></i>` : ""}${esc(label)} ${
      esc(this.fmt(v === null || v === undefined ? null : Math.abs(v)))}</span>`;
    const parts = ordered.map((l) => item(l.colour, l.label, (l.raw ?? l.values)[idx]));
    for (const g of new Set(ordered.filter((l) => l.rank !== undefined).map((l) => l.group))) {
      const top = ordered.filter((l) => l.group === g).at(-1);
      parts.push(item(null, g === "sum" ? "total" : `total${g}`, top.values[idx]));
    }
    this.readout.innerHTML = `<b>${esc(t)}</b> ${parts.join(" ")}`;
  }

  /** The graph as a PNG data URL, with its title and a background (a canvas alone is transparent). */
  png() {
    const src = this.plotEl.querySelector("canvas");
    const th = theme();
    const pad = 34 * devicePixelRatio;
    const c = document.createElement("canvas");
    c.width = src.width;
    c.height = src.height + pad;
    const ctx = c.getContext("2d");
    ctx.fillStyle = th.bg;
    ctx.fillRect(0, 0, c.width, c.height);
    ctx.fillStyle = th.fg;
    ctx.font = `${14 * devicePixelRatio}px system-ui, sans-serif`;
    ctx.fillText(this.title, 10 * devicePixelRatio, 22 * devicePixelRatio);
    ctx.drawImage(src, 0, pad);
    return c.toDataURL("image/png");
  }

  downloadPng() {
    const a = document.createElement("a");
    a.href = this.png();
    a.download = `wattsight-${this.title.replace(/[^\w.-]+/g, "_")}.png`;
    document.body.append(a);
    a.click();
    a.remove();
  }

  destroy() {
    this.resize.disconnect();
    this.dark.removeEventListener("change", this.retheme);
    this.u?.destroy();
    this.el.remove();
  }
}

/** Time axis labels on one line, as precise as the span needs (local time). */
export function timeLabels(splits, spanS) {
  const opts = spanS <= 600 ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }
    : spanS <= 2 * 86400 ? { hour: "2-digit", minute: "2-digit", hour12: false }
      : spanS <= 90 * 86400 ? { month: "short", day: "numeric" } : { year: "numeric", month: "short" };
  const fmt = new Intl.DateTimeFormat(undefined, opts);
  return splits.map((s) => fmt.format(new Date(s * 1000)));
}

/** Room for the y axis labels, measured on the longest one. */
function axisSize(u, values) {
  const longest = Math.max(4, ...(values || []).map((v) => String(v).length));
  return Math.ceil(longest * 7.2 + 18);
}

function yRange(min, max, mirror) {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [mirror ? -1 : 0, 1];
  if (mirror) {
    const m = Math.max(Math.abs(min), Math.abs(max), 1e-9) * 1.08;
    return [-m, m];
  }
  const lo = Math.min(0, min);
  const hi = max > lo ? max * 1.08 : lo + 1;
  return [lo, hi];
}

/** The latest time (ms) at which any layer has a value, or null. */
export function lastTime(xs, layers) {
  for (let i = xs.length - 1; i >= 0; i--) {
    if (layers.some((l) => l.values[i] !== null && l.values[i] !== undefined)) return xs[i];
  }
  return null;
}
