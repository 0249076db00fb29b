// One probe's page: every period at once (small multiples), its metadata and its health.

import { ApiError, getJSON, url } from "./api.js";
import { Chart, colour } from "./chart.js";
import { age, esc, kwh, money, percent, when } from "./format.js";
import { bandLayers, mirrorLayers } from "./layers.js";
import { follow } from "./live.js";
import { Buckets, chooseStep, fetchBuckets, grid } from "./series.js";
import { PERIODS } from "./state.js";
import { errorState, expose, setStatus } from "./ui.js";

const LABEL = { minute: "Last minute", hour: "Last hour", day: "Last day", week: "Last week", month: "Last month", year: "Last year" };
const apiPath = (id) => `/api/v1/probes/${id.split("/").map(encodeURIComponent).join("/")}`;

/** Start the page of probe ``id`` in ``app``. */
export async function probePage(app, id) {
  const page = { mode: "probe", app, id, charts: [], panels: [] };
  try {
    let p;
    try {
      p = await getJSON(apiPath(id));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        throw new Error(`${err.message.replace(/^[^:]*: 404 /, "")} — the overview (/) lists every probe.`);
      }
      throw err;
    }
    page.probe = p;
    page.ids = [p.id];
    const metric = p.metrics.includes("power") ? "power" : (p.metrics.includes("network_in") ? "network" : null);
    page.metric = metric;
    app.innerHTML = skeleton(p, metric);
    document.querySelector(".page-title").textContent = p.id;
    fillMeta(app, p);
    health(page);
    if (metric) await multiples(page);
    expose(page);
    if (metric) live(page);
    page.clock = setInterval(() => lastAge(page), 1000);
  } catch (err) {
    errorState(app, err);
  } finally {
    app.setAttribute("aria-busy", "false");
  }
}

function skeleton(p, metric) {
  const embed = metric === "power" ? `<a href="/graph/day/${esc(encodeURIComponent(p.id))}/">PNG for embedding</a> ·` : "";
  const modelled = Object.values(p.last || {}).some((l) => l.provenance === "modelled");
  const notice = modelled ? `<p class="notice" role="note"><b>Modelled, not measured:</b> this probe's values come
    from a model or a simulation (provenance=modelled).</p>` : "";
  return `${notice}<p class="selection">${esc(p.description || "")}</p>
    <p class="selection"><a href="${esc(url("/select", { probes: p.id }))}">Open in selection</a>${metric ? ` · ${embed}
      <a class="button export" data-metric="${metric}"
        href="${esc(url("/api/v1/export.zip", { probes: p.id, from: "-1d", to: "now", metric }))}" download>Export
        last day (zip)</a>` : ""}</p>
    <section aria-labelledby="health-h"><h2 id="health-h">Health</h2><div class="cards" id="health"></div>
      <div id="errors"></div></section>
    <section aria-labelledby="graphs-h"><h2 id="graphs-h">${metric === "network" ? "Network in ↑ / out ↓" : "Power"}, every period</h2>
      ${metric ? '<div class="graphs multiples"><p class="loading">Loading the graphs…</p></div>' : '<p class="empty">This probe has no power or network samples to draw yet.</p>'}</section>
    <section aria-labelledby="meta-h"><h2 id="meta-h">Metadata</h2><div class="table-wrap"><table class="meta" id="meta"></table></div></section>`;
}

function fillMeta(app, p) {
  const nodes = (p.nodes || []).map((n) => `<a href="${esc(url("/select", { node: n }))}">${esc(n)}</a>`).join(", ");
  const metrics = Object.entries(p.last || {}).map(([m, l]) => `${esc(m)} (${esc(l.unit)}, ${esc(l.kind)}, ${esc(l.provenance)})`);
  const rows = [
    ["Id", esc(p.id)], ["Site", esc(p.site)], ["Driver", esc(p.driver)],
    ["Aliases", esc((p.aliases || []).join(", ")) || "none"],
    ["Nodes", `${nodes || "none"}${p.shared ? ' <span class="badge">shared</span> (this probe feeds several nodes)' : ""}`],
    ["Period", p.period ? `${p.period} s` : "–"],
    ["Metrics (unit, kind, provenance)", metrics.join("<br>") || "no samples yet"],
    ["Description", esc(p.description || "")],
  ];
  app.querySelector("#meta").innerHTML = rows.map(([k, v]) => `<tr><th scope="row">${k}</th><td>${v}</td></tr>`).join("");
}

function lastSeen(p) {
  return Math.max(...Object.values(p.last || {}).map((l) => l.measured_at || 0), 0);
}

function lastAge(page) {
  const el = page.app.querySelector("#last-age");
  if (!el) return;
  const t = Math.max(lastSeen(page.probe), (page.liveLast || 0) / 1000);
  const a = t ? Date.now() / 1000 - t : null;
  el.textContent = t ? `${age(a)} ago` : "never";
  const late = a === null || a > Math.max(10, 3 * (page.probe.period || 1));
  el.className = `v ${late ? "bad" : "good"}`;
}

async function health(page) {
  const p = page.probe;
  const [drivers, hour, day] = await Promise.all([
    getJSON("/api/v1/drivers"),
    p.metrics.includes("power") || p.metrics.includes("energy") ? getJSON("/api/v1/energy", { probes: p.id, from: "-1h", to: "now" }) : null,
    p.metrics.includes("power") || p.metrics.includes("energy") ? getJSON("/api/v1/energy", { probes: p.id, from: "-1d", to: "now" }) : null,
  ]);
  const mine = (drivers.drivers || []).filter((d) => d.type === p.driver || d.driver === p.driver);
  const errors = mine.reduce((n, d) => n + (d.errors || 0) + (d.timeouts || 0), 0);
  const status = mine.map((d) => d.status).join(", ") || (drivers.runner ? "not in this runner" : "no runner here");
  const card = (k, v, cls = "") => `<div class="card"><div class="k">${k}</div><div class="v ${cls}">${v}</div></div>`;
  const e1 = hour?.probes?.[p.id], e24 = day?.probes?.[p.id];
  page.app.querySelector("#health").innerHTML = [
    `<div class="card"><div class="k">Last sample</div><div class="v" id="last-age">–</div></div>`,
    card("Driver", esc(status), mine.every((d) => d.status === "ok") && mine.length ? "good" : "warn"),
    card("Errors", String(errors), errors ? "bad" : "good"),
    e1 ? card("Coverage, last hour", percent(e1.coverage), e1.coverage > 0.95 ? "good" : "warn") : "",
    e24 ? card("Energy, last day", `${kwh(e24.kwh)}<br><small>${money(e24.cost, day.currency)}, ${percent(e24.coverage)} covered</small>`) : "",
  ].join("");
  const last = mine.filter((d) => d.last_error);
  page.app.querySelector("#errors").innerHTML = last.length ? `<p class="error">Last error of driver
    ${last.map((d) => `<b>${esc(d.driver)}</b> at ${when(d.last_error_at)}: ${esc(d.last_error)}`).join("; ")}</p>` : "";
  lastAge(page);
}

async function multiples(page) {
  const graphs = page.app.querySelector(".graphs");
  const width = Math.max(300, Math.min(graphs.clientWidth, 520));
  const now = Date.now();
  const c = colour(0);
  page.panels = await Promise.all(Object.entries(PERIODS).map(async ([name, span]) => {
    const step = chooseStep(span, width);
    const panel = { name, span, step, fromMs: now - span, toMs: now };
    if (page.metric === "power") {
      panel.power = (await fetchBuckets([page.id], "power", now - span, now, step)).get(page.id) ?? new Buckets(step);
    } else {
      const [i, o] = await Promise.all(["network_in", "network_out"].map((m) => fetchBuckets([page.id], m, now - span - step, now, step)));
      panel.network_in = i.get(page.id) ?? new Buckets(step);
      panel.network_out = o.get(page.id) ?? new Buckets(step);
    }
    return panel;
  }));
  graphs.querySelector(".loading")?.remove();
  page.panels.forEach((panel, i) => {
    page.charts[i] = new Chart(graphs, { title: LABEL[panel.name], metric: page.metric, mirror: page.metric === "network",
      height: 170, band: page.metric === "power", compact: true });
    // the title opens this period in the selection page, where the range can be changed
    const link = url(page.metric === "network" ? "/network" : "/select", { probes: page.id, period: panel.name });
    const title = page.charts[i].el.querySelector(".chart-title");
    title.innerHTML = `<a href="${esc(link)}">${esc(LABEL[panel.name])}</a>`;
  });
  drawAll(page, c);
}

function drawAll(page, c = colour(0)) {
  const now = Date.now();
  page.panels.forEach((panel, i) => {
    panel.toMs = now;
    panel.fromMs = now - panel.span;
    const xs = grid(panel.fromMs, panel.toMs, panel.step);
    let layers;
    if (page.metric === "power") {
      panel.power.trim(panel.fromMs - panel.step);
      layers = bandLayers(panel.power, xs, c);
    } else {
      const order = { top: [page.id], others: [], colours: { [page.id]: c } };
      layers = mirrorLayers(order, () => panel.network_in.rateOn(xs), () => panel.network_out.rateOn(xs));
    }
    page.charts[i].update({ xs, layers, fromMs: panel.fromMs, toMs: panel.toMs });
  });
  expose(page);
}

function live(page) {
  let queued = false;
  const metrics = page.metric === "power" ? ["power"] : ["network_in", "network_out"];
  for (const m of metrics) {
    follow([page.id], m, (t, probes) => {
      const values = probes[page.id];
      if (!values) return;
      for (const panel of page.panels) values.forEach((v, i) => panel[m].add(t[i], v));
      page.liveLast = Math.max(page.liveLast || 0, ...t);
      if (!queued) {
        queued = true;
        requestAnimationFrame(() => {
          queued = false;
          drawAll(page);
        });
      }
    }, (text) => setStatus(text));
  }
}
