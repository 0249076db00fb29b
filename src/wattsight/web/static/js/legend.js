// The legend table (min, max, avg, last, energy, cost per probe) and the totals per site and node,
// from /api/v1/summary.

import { bytes, bytesPerSecond, esc, kwh, money, percent, watts } from "./format.js";

const probeLink = (id) => `<a href="/probe/${encodeURIComponent(id)}">${esc(id)}</a>`;
const swatch = (c) => (c ? `<i class="swatch" style="background:${c}" aria-hidden="true"></i>` : "");

/** Power legend: one row per probe, in the graph's order (colours match), then a total row. */
export function powerLegend(summary, order, colours) {
  const cur = summary.currency;
  const rows = order.map((id) => {
    const p = summary.probes[id];
    if (!p) return "";
    const e = p.energy || {};
    return `<tr><th scope="row">${swatch(colours[id])}${probeLink(id)}${p.shared ? ' <span class="badge" title="this probe feeds several nodes">shared</span>' : ""}</th>
      <td>${watts(p.min)}</td><td>${watts(p.max)}</td><td>${watts(p.avg)}</td><td>${watts(p.last)}</td>
      <td>${kwh(e.kwh)}</td><td>${money(e.cost, cur)}</td><td>${percent(e.coverage)}</td></tr>`;
  }).join("");
  const t = summary.total || {};
  const avgs = order.map((id) => summary.probes[id]?.avg).filter((v) => v !== null && v !== undefined);
  const sumAvg = avgs.length ? avgs.reduce((a, b) => a + b, 0) : null;
  return `<div class="table-wrap"><table class="legend" aria-label="Legend: power per probe">
    <thead><tr><th scope="col">Probe</th><th scope="col">Min</th><th scope="col">Max</th><th scope="col">Avg</th>
    <th scope="col">Last</th><th scope="col">Energy</th><th scope="col">Cost</th><th scope="col">Coverage</th></tr></thead>
    <tbody>${rows}</tbody>
    <tfoot><tr><th scope="row">Total (${t.probes ?? 0} probes)</th><td></td><td></td><td>${watts(sumAvg)}</td>
    <td>${watts(t.last)}</td><td>${kwh(t.kwh)}</td><td>${money(t.cost, cur)}</td><td>${percent(t.coverage)}</td></tr></tfoot>
    </table></div>${priceNote(summary)}`;
}

function priceNote(s) {
  if (s.price_per_kwh) return `<p class="note">Cost at ${money(s.price_per_kwh, s.currency)} per kWh.</p>`;
  return `<p class="note">No energy price is set: put <code>price_per_kwh</code> and <code>currency</code> in the
    <code>[api]</code> section of the configuration to see costs.</p>`;
}

/** Totals per site and per node; a node fed by a shared probe is marked. */
export function powerTotals(summary) {
  const cur = summary.currency;
  const sites = Object.entries(summary.sites || {}).map(([s, t]) => `<tr><th scope="row">${esc(s)}</th>
    <td>${t.probes}</td><td>${watts(t.last)}</td><td>${kwh(t.kwh)}</td><td>${money(t.cost, cur)}</td></tr>`).join("");
  const nodes = Object.entries(summary.nodes || {}).map(([n, t]) => `<tr><th scope="row">${esc(n)}${t.shared
    ? ` <span class="badge" title="shared with other nodes: ${esc((t.shared_probes || []).join(", "))}">shared</span>` : ""}</th>
    <td>${(t.probes || []).length}</td><td>${kwh(t.kwh)}</td><td>${money(t.cost, cur)}</td><td>${percent(t.coverage)}</td></tr>`).join("");
  return `<div class="totals">
    <section aria-labelledby="sites-h"><h2 id="sites-h">Per site</h2><div class="table-wrap"><table>
      <thead><tr><th scope="col">Site</th><th scope="col">Probes</th><th scope="col">Last power</th><th scope="col">Energy</th><th scope="col">Cost</th></tr></thead>
      <tbody>${sites || '<tr><td colspan="5">none</td></tr>'}</tbody></table></div></section>
    <section aria-labelledby="nodes-h"><h2 id="nodes-h">Per node</h2><div class="table-wrap"><table>
      <thead><tr><th scope="col">Node</th><th scope="col">Probes</th><th scope="col">Energy</th><th scope="col">Cost</th><th scope="col">Coverage</th></tr></thead>
      <tbody>${nodes || '<tr><td colspan="5">none</td></tr>'}</tbody></table></div>
      <p class="note">A node sums all its probes (several PSUs add up); a <span class="badge">shared</span> probe feeds
      several nodes and is counted whole in each, so node totals can exceed the site total.</p></section></div>`;
}

/** Network legend: rates in and out per probe, and the bytes counted. */
export function networkLegend(sumIn, sumOut, order, colours, drawn = () => ({})) {
  // the summary's max and last, or (when it has none: a step finer than the samples) those drawn
  const fill = (entry, own) => ({ ...entry, max: entry.max ?? own.max, last: entry.last ?? own.last });
  const rows = order.map((id) => {
    const i = fill(sumIn?.probes?.[id] || {}, drawn(id, "network_in"));
    const o = fill(sumOut?.probes?.[id] || {}, drawn(id, "network_out"));
    return `<tr><th scope="row">${swatch(colours[id])}${probeLink(id)}</th>
      <td>${bytesPerSecond(i.avg)}</td><td>${bytesPerSecond(i.max)}</td><td>${bytesPerSecond(i.last)}</td><td>${bytes(i.bytes)}</td>
      <td>${bytesPerSecond(o.avg)}</td><td>${bytesPerSecond(o.max)}</td><td>${bytesPerSecond(o.last)}</td><td>${bytes(o.bytes)}</td></tr>`;
  }).join("");
  return `<div class="table-wrap"><table class="legend" aria-label="Legend: network traffic per probe">
    <thead><tr><th scope="col" rowspan="2">Probe</th><th scope="colgroup" colspan="4">In ↑</th><th scope="colgroup" colspan="4">Out ↓</th></tr>
    <tr><th scope="col">Avg</th><th scope="col">Max</th><th scope="col">Last</th><th scope="col">Bytes</th>
    <th scope="col">Avg</th><th scope="col">Max</th><th scope="col">Last</th><th scope="col">Bytes</th></tr></thead>
    <tbody>${rows}</tbody></table></div>`;
}
