// The controls every page shares: the period bar, the custom range, the metric, the selection
// filters (search, site, node, job, regex) and which probes they pick.

import { esc } from "./format.js";
import { PERIODS, names, parseTime, toLocalInput } from "./state.js";

const PERIOD_LABELS = { minute: "Minute", hour: "Hour", day: "Day", week: "Week", month: "Month", year: "Year" };

/** The period bar's HTML: one button per period, then a custom range. */
export function periodBar(state, range) {
  const buttons = Object.keys(PERIODS).map((p) => `<button type="button" data-period="${p}"
      aria-pressed="${state.period === p}">${PERIOD_LABELS[p]}</button>`).join("");
  const custom = state.period === "custom";
  return `<div class="periods" role="group" aria-label="Period">${buttons}
      <button type="button" data-period="custom" aria-pressed="${custom}">Custom</button></div>
    <form class="custom" ${custom ? "" : "hidden"} aria-label="Custom range">
      <label>From <input type="datetime-local" name="from" value="${toLocalInput(range.fromMs)}"></label>
      <label>To <input type="datetime-local" name="to" value="${toLocalInput(range.toMs)}"></label>
      <button type="submit">Show</button></form>`;
}

/** Wire the period bar in ``root``: ``change(patch)`` gets the new state values. */
export function wirePeriods(root, change) {
  root.querySelectorAll("[data-period]").forEach((b) => b.addEventListener("click", () => {
    const p = b.dataset.period;
    if (p === "custom") {
      const form = root.querySelector("form.custom");
      form.hidden = false;
      form.querySelector("input").focus();
      return;
    }
    change({ period: p, from: "", to: "" });
  }));
  root.querySelector("form.custom")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const from = parseTime(f.get("from")), to = parseTime(f.get("to"));
    if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) {
      ev.target.querySelector("input").setCustomValidity("From must be before To");
      ev.target.reportValidity();
      return;
    }
    change({ period: "custom", from: String(from / 1000), to: String(to / 1000) });
  });
}

/** Whether a probe draws ``metric`` (power: a power series; network: a traffic counter). */
export function draws(p, metric) {
  const m = p.metrics || [];
  return metric === "network" ? m.includes("network_in") || m.includes("network_out") : m.includes("power");
}

/** A job's node names matched to probe nodes: exact, or without the site ("node-1" ~ "demo.node-1"). */
function nodeMatches(probeNode, jobNodes) {
  return jobNodes.some((n) => n === probeNode || probeNode.endsWith(`.${n}`));
}

/** The probes (objects from /api/v1/probes) that the state's filters pick, in id order. */
export function pick(probes, state, job, metric) {
  const explicit = new Set(names(state.probes));
  let regex = null;
  if (state.regex) {
    try {
      regex = new RegExp(state.regex);
    } catch (err) {
      throw new Error(`regex ${state.regex} is not a regular expression (${err.message}); e.g. node-[1-4]$`);
    }
  }
  const q = state.q.toLowerCase();
  return probes.filter((p) => {
    const labels = [p.id, ...(p.aliases || [])];
    if (explicit.size && !labels.some((l) => explicit.has(l))) return false;
    if (state.site && p.site !== state.site) return false;
    if (state.node && !(p.nodes || []).includes(state.node)) return false;
    if (job && !(p.nodes || []).some((n) => nodeMatches(n, job.nodes || []))) return false;
    if (regex && !labels.some((l) => regex.test(l))) return false;
    if (q && !`${labels.join(" ")} ${(p.nodes || []).join(" ")} ${p.description || ""}`.toLowerCase().includes(q)) return false;
    return metric ? draws(p, metric) : true;
  });
}

/** A sentence saying what is selected ("all 8 probes", "3 probes of site lyon, job 42"). */
export function describe(state, count, total) {
  const parts = [];
  if (state.probes) parts.push("chosen probes");
  if (state.site) parts.push(`site ${state.site}`);
  if (state.node) parts.push(`node ${state.node}`);
  if (state.job) parts.push(`job ${state.job}`);
  if (state.regex) parts.push(`matching /${state.regex}/`);
  if (state.q) parts.push(`containing “${state.q}”`);
  const what = parts.length ? `${count} of ${total} probes: ${parts.join(", ")}` : `all ${count} probes`;
  return esc(what);
}

/** The filter form of the selection page. */
export function filterForm(state, probes) {
  const sites = [...new Set(probes.map((p) => p.site))].sort();
  const nodes = [...new Set(probes.flatMap((p) => p.nodes || []))].sort();
  const opt = (v, cur) => `<option value="${esc(v)}" ${v === cur ? "selected" : ""}>${esc(v)}</option>`;
  return `<form class="filters" aria-label="Select probes">
    <label>Search <input type="search" name="q" value="${esc(state.q)}" placeholder="id, alias, node…"></label>
    <label>Site <select name="site"><option value="">any</option>${sites.map((s) => opt(s, state.site)).join("")}</select></label>
    <label>Node <select name="node"><option value="">any</option>${nodes.map((n) => opt(n, state.node)).join("")}</select></label>
    <label>Job id <input type="text" name="job" value="${esc(state.job)}" placeholder="e.g. 4242" inputmode="text"></label>
    <label>Regex <input type="text" name="regex" value="${esc(state.regex)}" placeholder="node-[1-4]$" spellcheck="false"></label>
    <button type="submit">Apply</button>
    <button type="button" class="secondary" data-clear>Clear</button>
  </form>`;
}

/** Wire the filter form: ``change(patch)`` on submit, on a select's change and on Clear. */
export function wireFilters(root, change) {
  const form = root.querySelector("form.filters");
  if (!form) return;
  const read = () => {
    const f = new FormData(form);
    return Object.fromEntries(["q", "site", "node", "job", "regex"].map((k) => [k, String(f.get(k) || "").trim()]));
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    change({ ...read(), probes: "" });
  });
  form.querySelectorAll("select").forEach((s) => s.addEventListener("change", () => change({ ...read(), probes: "" })));
  form.querySelector("[data-clear]").addEventListener("click", () => change({ q: "", site: "", node: "", job: "",
    regex: "", probes: "" }));
}

/** The checklist of matching probes: unticking narrows ``probes`` to the ticked ones. */
export function checklist(matching, state) {
  const chosen = new Set(names(state.probes));
  const items = matching.map((p) => `<li><label><input type="checkbox" value="${esc(p.id)}"
      ${!chosen.size || chosen.has(p.id) ? "checked" : ""}> ${esc(p.id)}</label></li>`).join("");
  return `<details class="checklist" ${matching.length <= 40 ? "open" : ""}>
    <summary>${matching.length} matching probes</summary><ul>${items}</ul></details>`;
}

export function wireChecklist(root, change) {
  const list = root.querySelector(".checklist");
  if (!list) return;
  list.addEventListener("change", () => {
    const boxes = [...list.querySelectorAll("input[type=checkbox]")];
    const ticked = boxes.filter((b) => b.checked).map((b) => b.value);
    change({ probes: ticked.length === boxes.length ? "" : ticked.join(",") }, { keepFilters: true });
  });
}
