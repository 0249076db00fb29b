// What is on screen, kept in the URL query so that a page can be shared and a reload restores it.

export const PERIODS = {
  minute: 60e3, hour: 3600e3, day: 86400e3, week: 7 * 86400e3, month: 30 * 86400e3, year: 365 * 86400e3,
};
const DEFAULTS = {
  period: "hour", from: "", to: "", metric: "power", probes: "", q: "", site: "", node: "", job: "",
  regex: "", view: "stacked", top: "8", group: "port", live: "1",
};
export const KEYS = Object.keys(DEFAULTS);

/** The state in the current URL, with defaults for what it leaves out. */
export function readState() {
  const q = new URLSearchParams(location.search);
  const s = {};
  for (const k of KEYS) s[k] = q.get(k) ?? DEFAULTS[k];
  if (!(s.period in PERIODS) && s.period !== "custom") s.period = DEFAULTS.period;
  // a range or a job without a period: show that range (a job's own, from its start to its end)
  if ((s.from || s.job) && !q.get("period")) s.period = "custom";
  return s;
}

/** Put ``state`` in the URL (defaults left out); ``push`` adds a history entry (Back undoes it). */
export function writeState(state, push = true) {
  const q = new URLSearchParams();
  for (const k of KEYS) {
    const v = state[k] ?? "";
    if (v !== "" && v !== DEFAULTS[k]) q.set(k, v);
  }
  if (state.period !== "custom") {
    q.delete("from");
    q.delete("to");
  }
  const next = `${location.pathname}${q.toString() ? `?${q}` : ""}`;
  if (next !== `${location.pathname}${location.search}`) {
    history[push ? "pushState" : "replaceState"](null, "", next);
  }
}

/** A time typed by a user or found in a URL: epoch seconds, ISO 8601, or a datetime-local value. */
export function parseTime(text) {
  if (text === null || text === undefined || text === "") return NaN;
  if (/^\d+(\.\d+)?$/.test(String(text))) return Number(text) * 1000;
  return Date.parse(text);
}

/** Epoch ms as the value of an ``<input type="datetime-local">`` (local time, to the minute). */
export function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

/**
 * The range to show: ``{fromMs, toMs, live}``.  A named period ends now and follows new samples;
 * a custom range is fixed; a job's range (``job`` from /api/v1/jobs/{id}) is used when the period
 * is custom and no from/to are given, and is live while the job runs.
 */
export function stateRange(state, nowMs = Date.now(), job = null) {
  if (state.period === "custom") {
    let fromMs = parseTime(state.from);
    let toMs = state.to ? parseTime(state.to) : NaN;
    if (job && !state.from) {
      fromMs = job.start * 1000;
      toMs = job.end ? job.end * 1000 : NaN;
    }
    const open = !Number.isFinite(toMs);
    if (open) toMs = nowMs;
    if (!Number.isFinite(fromMs) || fromMs >= toMs) fromMs = toMs - PERIODS.hour;
    // a running job's graph keeps its start and grows; a custom range without an end slides
    return { fromMs, toMs, live: open && state.live !== "0", anchored: Boolean(job && !state.from) };
  }
  return { fromMs: nowMs - PERIODS[state.period], toMs: nowMs, live: state.live !== "0" };
}

/** Names in a comma-separated parameter. */
export const names = (text) => (text || "").split(",").map((s) => s.trim()).filter(Boolean);
