// The overview (/) and the selection page (/select): period, selection, stacked or side-by-side
// graphs, the legend with energy and cost, totals per site and node, live updates and export.

import { getEarly, getJSON, getOptional, hasRoute, url } from "./api.js";
import { Chart, colour } from "./chart.js";
import { checklist, describe, draws, filterForm, periodBar, pick, wireChecklist, wireFilters, wirePeriods } from "./controls.js";
import { esc, when } from "./format.js";
import { networkLegend, powerLegend, powerTotals } from "./legend.js";
import { bandLayers, groups, mirrorLayers, rank, stackedLayers, sum } from "./layers.js";
import { follow } from "./live.js";
import { Buckets, chooseStep, fetchBuckets, grid } from "./series.js";
import { readState, stateRange, writeState } from "./state.js";
import { clearStatus, emptyState, errorState, expose, setStatus } from "./ui.js";

const SIDE_MAX = 48;  // side-by-side graphs drawn at most
const MINUTE = 60e3, HOUR = 3600e3, DAY = 86400e3;
const PROBES_TTL = 60e3;  // ms the list of probes is reused between views
const POINTS = 200000;  // buckets asked for at most per metric (one per pixel per probe up to there)

/** Start the page in ``app`` (``mode``: "overview" or "select"). */
export async function dashboard(app, mode) {
  const page = { app, mode, state: readState(), probes: null, charts: [], stop: [] };
  window.addEventListener("popstate", () => {
    page.state = readState();
    load(page);
  });
  await load(page);
}

function change(page, patch) {
  page.state = { ...page.state, ...patch };
  if (patch.job) page.state = { ...page.state, period: "custom", from: "", to: "" };
  writeState(page.state);
  load(page);
}

function teardown(page) {
  page.groupsEl?.remove();
  page.groupsEl = null;
  page.stop.forEach((f) => f());
  page.stop = [];
  page.charts.forEach((c) => c.destroy());
  page.charts = [];
  clearInterval(page.timer);
}

async function load(page) {
  teardown(page);
  const { app, state, mode } = page;
  const run = (page.run = (page.run ?? 0) + 1);  // a newer load makes this one stop
  app.setAttribute("aria-busy", "true");
  try {
    if (!page.probes || Date.now() - page.probesAt > PROBES_TTL) {  // probes come and go: not too stale
      page.probes = (await getEarly("/api/v1/probes")).probes;
      page.probesAt = Date.now();
    }
    if (!page.probes.length) return emptyState(app);
    const job = await loadJob(state.job);
    const metric = state.metric === "network" || mode === "network" ? "network" : "power";
    const matching = pick(page.probes, { ...state, probes: "" }, job, metric);
    const ids = pick(page.probes, state, job, metric).map((p) => p.id);
    const range = stateRange(state, Date.now(), job);
    layout(page, { job, metric, matching, ids, range });
    if (!ids.length) {
      app.querySelector(".graphs").innerHTML = `<p class="empty">No probe with ${metric} data matches this
        selection. Loosen the filters (Clear), or pick another metric.</p>`;
      app.querySelector(".legend-area").innerHTML = "";
      Object.assign(page, { ids, step: null });
      expose(page);
      return;
    }
    const graphs = app.querySelector(".graphs");
    const step = chooseStep(range.toMs - range.fromMs, graphs.clientWidth || 1000);
    const width = graphs.clientWidth || 1000;
    Object.assign(page, { ids, metric, range, step, width, span: range.toMs - range.fromMs, job });
    const t0 = performance.now();
    const pending = await loadData(page);  // {summary}: a promise still running (not awaited here)
    if (run !== page.run) return;
    const t1 = performance.now();
    exportLink(page);
    draw(page);
    const t2 = performance.now();
    await pending?.summary;
    if (run !== page.run) return;
    legend(page);
    // where the time goes (ms since the page started loading): for docs/web-ui.md's figures
    window.wattsight.timings = { start: t0, data: t1, drawn: t2, legend: performance.now() };
    if (range.live) startLive(page);
  } catch (err) {
    if (run === page.run) errorState(app, err);
  } finally {
    if (run === page.run) app.setAttribute("aria-busy", "false");
  }
}

async function loadJob(id) {
  if (!id) return null;
  if (!(await hasRoute("/api/v1/jobs"))) {
    throw new Error(`Selecting by job needs the jobs API (/api/v1/jobs), which this server does not have.`);
  }
  const job = await getOptional(`/api/v1/jobs/${encodeURIComponent(id)}`);
  if (!job) throw new Error(`There is no job ${id}: check the id (GET /api/v1/jobs lists them), or clear the job filter.`);
  return job;
}

function layout(page, { job, metric, matching, ids, range }) {
  const { app, state, mode } = page;
  const total = page.probes.length;
  const selectMode = mode === "select";
  const toggle = (key, cur, pairs, label) => `<div class="views" role="group" aria-label="${label}">${pairs.map(([v, text]) =>
    `<button type="button" data-${key}="${v}" aria-pressed="${cur === v}">${text}</button>`).join("")}</div>`;
  const views = selectMode ? toggle("view", state.view === "side" ? "side" : "stacked",
    [["stacked", "Stacked"], ["side", "Side by side"]], "Layout") : "";
  const by = mode === "network" ? toggle("group", state.group === "node" ? "node" : "port",
    [["port", "Per port"], ["node", "Per node"]], "Group by") : "";
  const metricSelect = mode === "network" ? "" : `<label class="metric">Metric <select name="metric">
        <option value="power" ${metric === "power" ? "selected" : ""}>Power (W)</option>
        <option value="network" ${metric === "network" ? "selected" : ""}>Network in ↑ / out ↓</option></select></label>`;
  const jobLine = job ? `<p class="job">Job <b>${esc(job.id)}</b>${job.name ? ` (${esc(job.name)})` : ""}: nodes
      ${esc((job.nodes || []).join(", "))}; ${when(job.start * 1000)} → ${job.end ? when(job.end * 1000) : "running"}</p>` : "";
  app.innerHTML = `
    <div class="toolbar">${periodBar(state, range)}
      ${metricSelect}${views}${by}
      ${state.period === "custom" && state.to ? "" : `<button type="button" data-live aria-pressed="${state.live !== "0"}"
        title="Follow new samples as they arrive">Live</button>`}
      <a class="button export" data-metric="${metric}" href="#" download
        title="${metric === "network" ? "Data (in and out), graphs and README" : "Data, graphs and README"}">Export zip</a>
    </div>
    <div class="${selectMode ? "with-side" : ""}">
      ${selectMode ? `<aside class="side"><details class="filter-box" ${matchMedia("(max-width: 760px)").matches ? "" : "open"}>
        <summary>Filters · ${ids.length} of ${total} probes</summary>
        ${filterForm(state, page.probes)}${checklist(matching, state)}</details></aside>` : ""}
      <div class="content">
        <p class="selection">Showing ${describe(state, ids.length, total)} · ${when(range.fromMs)} → ${range.live ? "now" : when(range.toMs)}
          ${embeddable(state, mode) ? ` · <a class="embed" href="${esc(url(`/graph/${state.period}/`, { metric: metric === "network" ? "network" : "" }))}">PNG for embedding</a>` : ""}
          ${selectMode ? "" : ` · <a href="${esc(url("/select", { ...Object.fromEntries(new URLSearchParams(location.search)),
            metric: metric === "network" ? "network" : "" }))}">Change selection</a>`}</p>
        ${jobLine}${modelledNote(page.probes.filter(((shown) => (p) => shown.has(p.id))(new Set(ids))))}
        <div class="graphs ${state.view === "side" && selectMode ? "multiples" : ""}"><p class="loading">Loading the graphs…</p></div>
        <div class="legend-area"><p class="loading">Loading the legend…</p></div>
      </div>
    </div>`;
  wirePeriods(app, (patch) => change(page, patch));
  wireFilters(app, (patch) => change(page, patch));
  wireChecklist(app, (patch) => change(page, patch));
  app.querySelector("select[name=metric]")?.addEventListener("change", (ev) => change(page, { metric: ev.target.value }));
  app.querySelectorAll("[data-view]").forEach((b) => b.addEventListener("click", () => change(page, { view: b.dataset.view })));
  app.querySelector("[data-live]")?.addEventListener("click", () => change(page, { live: state.live === "0" ? "1" : "0" }));
  app.querySelectorAll("[data-group]").forEach((b) => b.addEventListener("click", () => change(page, { group: b.dataset.group })));
}

/** Buckets of what is drawn: the ranked probes at one bucket per pixel; when "others" sums many
 * probes, those at a coarser step (about 200 000 points in all), which the graph spreads out. */
/** Whether the server's PNG graph (/graph/<period>/: every probe) shows the same as the page. */
function embeddable(state, mode) {
  const filtered = ["probes", "q", "site", "node", "job", "regex"].some((k) => state[k]);
  return mode !== "select" && state.period !== "custom" && !filtered;
}

/** Modelled (simulated or estimated) data is never passed off as measured. */
function modelledNote(shown) {
  const modelled = shown.filter((p) => Object.values(p.last || {}).some((l) => l.provenance === "modelled"));
  if (!modelled.length) return "";
  return `<p class="notice" role="note"><b>Modelled, not measured:</b> ${modelled.length === shown.length ? "all"
    : modelled.length} of these ${shown.length} probes report modelled values (for example the simulated
    <code>--demo</code> rack, or a CPU power model); see each probe's provenance.</p>`;
}

/**
 * The legend's figures and the graphs' buckets.  The probes are ranked (the top N get a colour,
 * the rest are summed as "others") by their mean over the range, from the summary.  When every
 * probe fits the points budget at one bucket per pixel, the summary and the buckets are asked
 * for at once; else the ranking comes first (for power, from the last values, so that the graph
 * is drawn without waiting for the summary: returned as ``{summary}``, a promise in an object since an
 * async function returning a promise would wait for it), and "others" come at a coarser step.
 */
async function loadData(page) {
  const { ids, metric, range, step, state, run } = page;
  const top = Math.max(1, parseInt(state.top, 10) || 8);
  const side = page.mode === "select" && state.view === "side";
  const points = (range.toMs - range.fromMs) / step;
  if (side || ids.length * points <= POINTS) {
    const drawn = side ? ids.slice(0, SIDE_MAX) : ids;
    const [summary, data] = await Promise.all([summarise(page), fetchData(page, drawn, [])]);
    if (run !== page.run) return null;
    Object.assign(page, { summary, data });
    page.order = rank(ids, score(page), top);
  } else if (metric === "power") {
    const last = Object.fromEntries(page.probes.map((p) => [p.id, p.last?.power?.value ?? 0]));
    page.order = rank(ids, (id) => last[id], top);
    const data = await fetchData(page, page.order.top, page.order.others);
    if (run === page.run) page.data = data;
    // asked once the buckets are in: asked together, each would slow the other down on the server
    const summary = summarise(page).then((s) => {
      if (run === page.run) page.summary = s;
    });
    summary.catch(() => {});  // awaited by the caller, once the graph is drawn
    return { summary };
  } else {
    const summary = await summarise(page);
    if (run !== page.run) return null;
    page.summary = summary;
    page.order = rank(ids, score(page), top);
    const data = await fetchData(page, page.order.top, page.order.others);
    if (run === page.run) page.data = data;
  }
  return null;
}

async function fetchData(page, top, others) {
  const { metric, range, step } = page;
  const periods = Object.fromEntries(page.probes.map((p) => [p.id, p.period]));
  const span = range.toMs - range.fromMs;
  let coarse = others.length ? Math.max(step, chooseStep(span, Math.min(page.width, POINTS / others.length))) : step;
  // from a day up, whole hours: the store answers them from its 1 h cells (20x faster than 1 min ones)
  if (coarse > step && span >= DAY) coarse = Math.max(coarse, HOUR);
  const metrics = metric === "power" ? ["power"] : ["network_in", "network_out"];
  const byId = new Map(page.probes.map((p) => [p.id, p]));
  const has = (m) => (id) => byId.get(id)?.metrics.includes(m);
  const data = {};
  await Promise.all(metrics.map(async (m) => {
    const pad = m === "power" ? 0 : coarse;  // a rate needs the bucket before the first
    const [a, b] = await Promise.all([
      fetchBuckets(top.filter(has(m)), m, range.fromMs - pad, range.toMs, step, periods),
      fetchBuckets(others.filter(has(m)), m, range.fromMs - pad, range.toMs, coarse, periods,
        { agg: m === "power" ? "avg" : "max" }),
    ]);
    data[m] = new Map([...a, ...b]);
  }));
  return data;
}

async function summarise(page) {
  const { ids, range, metric } = page;
  // from the start of its minute (the graph's first bucket starts there or before): the server then
  // answers the start from its minute rollups instead of decoding an hour of raw samples (4x faster)
  const fromMs = Math.floor(range.fromMs / MINUTE) * MINUTE;
  const params = { from: (fromMs / 1000).toFixed(3), to: (range.toMs / 1000).toFixed(3) };
  const every = page.probes.filter((p) => draws(p, metric)).length;
  if (ids.length < every || ids.join(",").length < 4000) params.probes = ids.join(",");
  const metrics = metric === "power" ? ["power"] : ["network_in", "network_out"];
  const got = await Promise.all(metrics.map((m) => getJSON("/api/v1/summary", { ...params, metric: m })));
  return Object.fromEntries(metrics.map((m, i) => [m, got[i]]));
}

/** How a probe ranks in the stack: its mean power, or its mean traffic in + out. */
function score(page) {
  const s = page.summary;
  if (page.metric === "power") return (id) => s.power.probes[id]?.avg;
  return (id) => (s.network_in.probes[id]?.avg ?? 0) + (s.network_out.probes[id]?.avg ?? 0);
}

function valuesOf(page, metric, xs) {
  const map = page.data[metric];
  const empty = xs.map(() => null);
  if (metric === "power") return (id) => map.get(id)?.on(xs) ?? empty;
  return (id) => map.get(id)?.rateOn(xs) ?? empty;
}

/** (Re)draw every graph. */
function draw(page) {
  const { range, step, metric, state } = page;
  if (range.live) {
    range.toMs = Date.now();
    if (!range.anchored) range.fromMs = range.toMs - page.span;
    Object.values(page.data).forEach((m) => m.forEach((b) => b.trim(range.fromMs - step)));
  }
  const xs = grid(range.fromMs, range.toMs, step);
  const graphs = page.app.querySelector(".graphs");
  graphs.querySelector(".loading")?.remove();
  if (metric === "power") {
    const vals = valuesOf(page, "power", xs);
    if (state.view === "side" && page.mode === "select") {
      drawSide(page, graphs, xs, page.ids.slice(0, SIDE_MAX));
    } else {
      chartAt(page, graphs, 0, { title: "Power, stacked", metric: "power" })
        .update({ xs, layers: stackedLayers(page.order, vals), ...range });
    }
  } else {
    const inV = valuesOf(page, "network_in", xs), outV = valuesOf(page, "network_out", xs);
    chartAt(page, graphs, 0, { title: "Network: in ↑ / out ↓, stacked", metric: "network", mirror: true, height: 320 })
      .update({ xs, layers: mirrorLayers(page.order, inV, outV), ...range });
    if (page.mode === "network") drawGroups(page, graphs, xs, inV, outV);
  }
  expose(page);
}

function drawSide(page, graphs, xs, ids) {
  ids.forEach((id, i) => {
    const b = page.data.power.get(id) ?? new Buckets(page.step);
    chartAt(page, graphs, i, { title: id, metric: "power", height: 180, band: true, compact: true })
      .update({ xs, layers: bandLayers(b, xs, page.order.colours[id] ?? colour(i)), ...page.range });
  });
}

function drawGroups(page, graphs, xs, inV, outV) {
  const list = groups(page.ids, page.probes, page.state.group).slice(0, SIDE_MAX);
  if (!page.groupsEl) {
    page.groupsEl = document.createElement("div");
    page.groupsEl.className = "graphs multiples";
  }
  graphs.after(page.groupsEl);
  list.forEach((g, i) => {
    const c = g.ids.length === 1 && page.order.colours[g.ids[0]] ? page.order.colours[g.ids[0]] : colour(i);
    const order = { top: [g.name], others: [], colours: { [g.name]: c } };
    const inG = () => sum(g.ids.map(inV)), outG = () => sum(g.ids.map(outV));
    chartAt(page, page.groupsEl, i + 1, { title: `${g.name}${g.ids.length > 1 ? ` (${g.ids.length} probes)` : ""}`,
      metric: "network", mirror: true, height: 160, compact: true })
      .update({ xs, layers: mirrorLayers(order, inG, outG), ...page.range });
  });
}

function chartAt(page, container, i, opts) {
  page.charts[i] ??= new Chart(container, opts);
  return page.charts[i];
}

function legend(page) {
  const area = page.app.querySelector(".legend-area");
  const order = [...page.order.top, ...page.order.others];
  const colours = page.order.colours;
  const s = page.summary;
  area.innerHTML = page.metric === "power"
    ? powerLegend(s.power, order, colours) + (page.mode === "overview" ? powerTotals(s.power) : "")
    : networkLegend(s.network_in, s.network_out, order, colours, (id, m) => drawnRates(page, id, m));
}

/** The max and last rate of a probe as drawn (from its buckets). */
function drawnRates(page, id, metric) {
  const b = page.data[metric]?.get(id);
  if (!b) return {};
  const rates = b.rateOn(grid(page.range.fromMs, page.range.toMs, b.step)).filter((v) => v !== null);
  return rates.length ? { max: Math.max(...rates), last: rates[rates.length - 1] } : {};
}

/** The Export buttons: what is on screen (every probe when all are shown: the URL stays short). */
function exportLink(page) {
  const { ids, range, step, metric } = page;
  const all = ids.length === page.probes.filter((p) => draws(p, metric)).length;
  page.app.querySelectorAll("a.export").forEach((a) => {
    a.href = url("/api/v1/export.zip", {
      probes: all && ids.join(",").length > 4000 ? "" : ids.join(","), metric: a.dataset.metric,
      from: (range.fromMs / 1000).toFixed(3), to: (range.toMs / 1000).toFixed(3), resolution: `${step}ms`,
    });
  });
}

function startLive(page) {
  let queued = false;
  const run = page.run;
  const redraw = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      if (run === page.run) draw(page);  // not after the page moved on to another view
    });
  };
  const metrics = page.metric === "power" ? ["power"] : ["network_in", "network_out"];
  for (const m of metrics) {
    const map = page.data[m];
    follow(page.ids, m, (t, probes) => {
      for (const [id, values] of Object.entries(probes)) {
        if (!map.has(id)) map.set(id, new Buckets(page.step));
        const b = map.get(id);
        values.forEach((v, i) => b.add(t[i], v));
      }
      redraw();
    }, (text) => setStatus(text)).then((close) => (run === page.run ? page.stop.push(close) : close()));
  }
  page.timer = setInterval(() => {  // the legend's figures follow too, less often
    page.range.toMs = Date.now();
    if (!page.range.anchored) page.range.fromMs = page.range.toMs - page.span;
    summarise(page).then((s) => {
      if (run !== page.run) return;
      page.summary = s;
      legend(page);
    }).catch((err) => setStatus(`legend not refreshed: ${err.message}`));
    exportLink(page);
  }, 15000);
  page.stop.push(() => clearStatus());
}
