// From buckets to what a Chart draws: stacked areas (top N + others), in-above/out-below mirrors,
// and one probe's min/avg/max band.

import { colour } from "./chart.js";
import { stack } from "./series.js";

/**
 * The drawing order of a stacked graph: ids ranked by ``score`` (largest first), the top ``n``
 * with a colour each, the rest summed as "others" (a lone rest is drawn on its own).  Computed
 * once per data load, so colours stay put while live samples arrive.
 */
export function rank(ids, score, n) {
  const ranked = [...ids].sort((a, b) => (score(b) ?? 0) - (score(a) ?? 0) || (a < b ? -1 : 1));
  const cut = ranked.length <= n + 1 ? ranked.length : n;
  const top = ranked.slice(0, cut);
  const colours = Object.fromEntries(top.map((id, i) => [id, colour(i)]));
  return { top, others: ranked.slice(cut), colours };
}

/** Rows of the ranked graph: the top ids, then one "others" row summing the rest. */
function rankedRows(order, valuesOf) {
  const rows = order.top.map((id) => ({ id, label: id, colour: order.colours[id], values: valuesOf(id) }));
  if (order.others.length) {
    const parts = order.others.map(valuesOf);
    const values = parts[0].map((_, i) => {
      let s = null;
      for (const p of parts) if (p[i] !== null) s = (s ?? 0) + p[i];
      return s;
    });
    rows.push({ id: null, label: `others (${order.others.length})`, colour: colour(0, true), values });
  }
  return rows;
}

/** Stacked layers: the largest cumulative sum is drawn first so each band shows on top of it. */
export function stackedLayers(order, valuesOf, { sign = 1, suffix = "", fillAlpha = 0.75 } = {}) {
  const rows = rankedRows(order, valuesOf);
  const sums = stack(rows, sign);
  return rows.map((r, i) => ({ label: r.label + suffix, colour: r.colour, values: sums[i], raw: r.values, fillAlpha,
    rank: i, group: suffix || "sum" })).reverse();
}

/** In above the axis, out below, both stacked in the same order and colours. */
export function mirrorLayers(order, inOf, outOf) {
  return [...stackedLayers(order, inOf, { suffix: " in" }),
    ...stackedLayers(order, outOf, { sign: -1, suffix: " out", fillAlpha: 0.45 })];
}

/** One probe: its min–max band and its mean line. */
export function bandLayers(buckets, xs, c, label = "") {
  const pre = label ? `${label} ` : "";
  return [
    { label: `${pre}max`, colour: c, values: buckets.on(xs, "max"), fill: false, hideInReadout: false },
    { label: `${pre}avg`, colour: c, values: buckets.on(xs, "avg"), fill: false, line: true },
    { label: `${pre}min`, colour: c, values: buckets.on(xs, "min"), fill: false },
  ];
}

/** Ports (one group per probe) or nodes (the probes feeding each node), for the network page. */
export function groups(ids, probes, by) {
  if (by !== "node") return ids.map((id) => ({ name: id, ids: [id] }));
  const byNode = new Map();
  for (const p of probes) {
    if (!ids.includes(p.id)) continue;
    for (const n of p.nodes?.length ? p.nodes : [p.id]) byNode.set(n, [...(byNode.get(n) || []), p.id]);
  }
  return [...byNode.entries()].sort().map(([name, members]) => ({ name, ids: members }));
}

/** The sum of some rows' values (null where none has a value). */
export function sum(rowsValues) {
  if (!rowsValues.length) return [];
  return rowsValues[0].map((_, i) => {
    let s = null;
    for (const r of rowsValues) if (r[i] !== null) s = (s ?? 0) + r[i];
    return s;
  });
}
