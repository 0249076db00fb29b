// The entry point: marks the current page in the navigation and starts the page's module.

import { getJSON, prefetch } from "./api.js";
import { errorState } from "./ui.js";

const MODULES = {
  overview: () => import("./dashboard.js").then((m) => (app) => m.dashboard(app, "overview")),
  select: () => import("./dashboard.js").then((m) => (app) => m.dashboard(app, "select")),
  probe: () => import("./probe.js").then((m) => (app) => m.probePage(app, document.body.dataset.probe)),
  network: () => import("./dashboard.js").then((m) => (app) => m.dashboard(app, "network")),
};

async function main() {
  const page = document.body.dataset.page;
  // the graph pages start from the list of probes: asked while their modules load
  if (page !== "probe") prefetch("/api/v1/probes");
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (a.dataset.nav === page) a.setAttribute("aria-current", "page");
  });
  const app = document.getElementById("app");
  window.wattsight = { page, ready: false };
  if (typeof uPlot === "undefined") {
    errorState(app, new Error("uPlot did not load from /static/vendor/uPlot.iife.js: is the uplot-python package "
      + "installed? (pip install uplot-python)"));
    return;
  }
  try {
    const start = await MODULES[page]();
    await start(app);
  } catch (err) {
    errorState(app, err);
  }
}

/** A pill in the header when a driver is not well (from /api/v1/health), with what is wrong. */
async function health() {
  const pill = document.getElementById("health-pill");
  try {
    const h = await getJSON("/api/v1/health");
    pill.hidden = h.status === "ok";
    pill.textContent = h.status;
    pill.title = (h.problems || []).join("\n");
    pill.setAttribute("aria-label", `wattsight is ${h.status}: ${(h.problems || []).join("; ")}`);
  } catch {
    pill.hidden = true;  // the page itself says when the API does not answer
  }
}

main();
health();
