// Series as buckets: fetched downsampled from /api/v1/series, extended by live samples, put on
// one time grid, stacked (top N + "others") and, for counters, turned into rates.

import { getJSON } from "./api.js";

const S = 1e3, M = 60e3, H = 3600e3, D = 86400e3;
/** Steps a graph may use: aligned buckets that the store's rollups answer from a minute up. */
export const NICE_STEPS = [S, 2 * S, 5 * S, 10 * S, 15 * S, 30 * S, M, 2 * M, 5 * M, 10 * M, 15 * M, 30 * M,
  H, 2 * H, 3 * H, 6 * H, 12 * H, D, 2 * D, 7 * D];
const URL_IDS = 4000;  // characters of probe ids per request: URLs stay short, requests few

/** The smallest nice step that gives at most one bucket per pixel (and at most ``maxPoints``). */
export function chooseStep(spanMs, widthPx, maxPoints = 10000) {
  const least = Math.max(spanMs / Math.max(50, widthPx), spanMs / maxPoints);
  return NICE_STEPS.find((s) => s >= least) ?? NICE_STEPS[NICE_STEPS.length - 1];
}

/** One probe's buckets of one metric: bucket start (ms) -> {min, avg, max, n}. */
export class Buckets {
  constructor(step) {
    this.step = step;
    this.map = new Map();
    this.wrap = null;  // a wrapping counter's range
  }

  /** Buckets from a /series answer (columns t, min, avg, max; t in seconds). */
  static fromSeries(entry, step, fetchedAtMs, periodMs) {
    const b = new Buckets(step);
    b.wrap = Number((/^counter:(\d+(?:\.\d+)?)$/.exec(entry.kind || "") || [])[1]) || null;
    const col = Object.fromEntries(entry.columns.map((c, i) => [c, i]));
    for (const p of entry.points) {
      const t = Math.round(p[col.t] * 1000);
      const avg = p[col.avg] ?? p[col.value] ?? p[col.max];
      // how many samples the server's bucket holds, so live samples weigh in fairly
      const n = Math.max(1, Math.round(Math.min(step, fetchedAtMs - t) / Math.max(1, periodMs)));
      b.map.set(t, { min: p[col.min] ?? avg, avg, max: p[col.max] ?? avg, n });
    }
    return b;
  }

  /** Merge a live sample measured at ``tMs``. */
  add(tMs, v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return;
    const key = tMs - (tMs % this.step);
    const b = this.map.get(key);
    if (!b) {
      this.map.set(key, { min: v, avg: v, max: v, n: 1 });
    } else {
      b.min = Math.min(b.min, v);
      b.max = Math.max(b.max, v);
      b.avg += (v - b.avg) / (b.n + 1);
      b.n += 1;
    }
  }

  /** Forget buckets before ``fromMs`` (a sliding window). */
  trim(fromMs) {
    for (const t of this.map.keys()) if (t + this.step <= fromMs) this.map.delete(t);
  }

  /** The latest bucket start with data, or -Infinity. */
  last() {
    let m = -Infinity;
    for (const t of this.map.keys()) if (t > m) m = t;
    return m;
  }

  /** ``field`` on the grid ``xs`` (ms; the grid's step may be finer than this one's), null where none. */
  on(xs, field = "avg") {
    return xs.map((t) => this.map.get(t - (t % this.step))?.[field] ?? null);
  }

  /**
   * A counter's rate per second on the grid: the increase of ``max`` since the previous bucket.
   * A lower value means the counter went round (``wrap``: its range, from a kind "counter:<range>")
   * or, without a range, restarted from zero: the same rule as the server's energy.wrap_deltas.
   */
  rateOn(xs) {
    const perSecond = 1000 / this.step;
    return xs.map((t) => {
      const k = t - (t % this.step);
      const b = this.map.get(k), a = this.map.get(k - this.step);
      if (!a || !b) return null;
      const up = b.max >= a.max ? b.max - a.max : (this.wrap ? b.max + this.wrap - a.max : b.max);
      return up * perSecond;
    });
  }
}

/** Bucket starts covering [fromMs, toMs], aligned on the step. */
export function grid(fromMs, toMs, step) {
  const xs = [];
  for (let t = fromMs - (fromMs % step); t <= toMs; t += step) xs.push(t);
  return xs;
}

/** Buckets of ``metric`` for ``ids`` over the range: Map id -> Buckets (requests in chunks). */
export async function fetchBuckets(ids, metric, fromMs, toMs, step, periods = {}, opts = {}) {
  const out = new Map();
  const fetchedAt = Date.now();
  const chunks = [];
  let size = Infinity;
  for (const id of ids) {
    if (size + id.length > URL_IDS) {
      chunks.push([]);
      size = 0;
    }
    chunks[chunks.length - 1].push(id);
    size += id.length + 1;
  }
  const answers = await Promise.all(chunks.map((chunk) => getJSON("/api/v1/series", {
    probes: chunk.join(","), metric, from: (fromMs / 1000).toFixed(3), to: (toMs / 1000).toFixed(3),
    resolution: `${step}ms`, agg: opts.agg ?? "minmax",
  }, opts)));
  for (const answer of answers) {
    for (const entry of answer.series) {
      out.set(entry.probe, Buckets.fromSeries(entry, step, fetchedAt, (periods[entry.probe] ?? 1) * 1000));
    }
  }
  return out;
}

/** Cumulative sums of ``rows`` in order; null where no row has a value. */
export function stack(rows, sign = 1) {
  const acc = rows.length ? rows[0].values.map(() => null) : [];
  return rows.map((r) => acc.map((a, i) => {
    const v = r.values[i];
    if (v !== null) acc[i] = (a ?? 0) + sign * v;
    return acc[i];
  }));
}
