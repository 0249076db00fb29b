// Page states that say what to do (empty, error, API down), the status line, and what the
// pages expose to tests and scripts as ``window.wattsight``.

import { ApiError } from "./api.js";
import { esc } from "./format.js";

/** No probe yet: how to add a driver, or try the simulated rack. */
export function emptyState(app) {
  app.setAttribute("aria-busy", "false");
  app.innerHTML = `<section class="empty-state" aria-labelledby="empty-h">
    <h2 id="empty-h">No probes yet</h2>
    <p>wattsight is running, but no driver has reported a probe. To add one:</p>
    <ol>
      <li>Write a configuration: <code>wattsight config sample &gt; wattsight.toml</code></li>
      <li>Keep the drivers for your meters (IPMI, Redfish, SNMP PDUs, RAPL, NVML, …) and check it:
        <code>wattsight config check wattsight.toml</code></li>
      <li>Run with it: <code>wattsight run -c wattsight.toml</code>, then reload this page.</li>
    </ol>
    <p>Just looking? <code>wattsight run --demo</code> runs a clearly labelled simulated rack.
      <code>wattsight plugins</code> lists the drivers this install has.</p>
  </section>`;
  expose({ mode: "empty", charts: [] });
}

/** An error, with what to do; the API being down gets the banner too. */
export function errorState(app, err) {
  const down = err instanceof ApiError && err.status === 0;
  const msg = err?.message || String(err);
  if (down) banner(msg);
  app.innerHTML = `<section class="error-state" role="alert"><h2>${down ? "The API does not answer" : "Something went wrong"}</h2>
    <p>${esc(msg)}</p><p><button type="button" data-retry>Try again</button></p></section>`;
  app.querySelector("[data-retry]").addEventListener("click", () => location.reload());
  window.wattsight = { ...(window.wattsight || {}), error: msg, ready: true };
}

export function banner(text) {
  const b = document.getElementById("banner");
  if (!b) return;
  b.textContent = text;
  b.hidden = !text;
}

export function setStatus(text) {
  const s = document.getElementById("status");
  if (!s) return;
  s.textContent = text;
  s.dataset.state = text === "live" ? "live" : "other";
}

export function clearStatus() {
  setStatus("");
}

/** What is on screen, for tests and scripts: graphs with their plotted range and last time. */
export function expose(page) {
  const charts = (page.charts || []).filter(Boolean).map((c) => ({
    title: c.title, lastT: c.lastT ?? null, from: c.range?.[0] * 1000, to: c.range?.[1] * 1000,
    layers: (c.layers || []).map((l) => l.label),
    // stacked graphs draw the whole sum first: the total at each bucket
    total: c.layers?.[0]?.values ?? [],
  }));
  const lasts = charts.map((c) => c.lastT).filter((t) => t !== null);
  window.wattsight = {
    ...(window.wattsight || {}),
    page: page.mode, ids: page.ids || [], step: page.step, charts, ready: true, run: page.run ?? 1,
    lastT: lasts.length ? Math.max(...lasts) : null,
    draws: (window.wattsight?.draws ?? 0) + 1,
  };
}
