// The REST API client: JSON GETs whose errors say what went wrong and what to do.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** A URL of this server with query parameters (empty ones left out). */
export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** GET JSON; ApiError(status 0) when the server does not answer, else with the API's ``detail``. */
export async function getJSON(path, params = {}, { signal } = {}) {
  let r;
  try {
    r = await fetch(url(path, params), { headers: { Accept: "application/json" }, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(
      `The wattsight API at ${location.origin} does not answer (${err.message}). ` +
      "Is `wattsight run` still running? Start it again, then reload this page.", 0);
  }
  if (!r.ok) {
    let detail = r.statusText;
    try {
      detail = (await r.json()).detail ?? detail;
    } catch { /* not JSON: keep the status text */ }
    throw new ApiError(`${path}: ${r.status} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`,
      r.status);
  }
  return r.json();
}

/** Like getJSON, but null for a 404 (a route or an object that does not exist here). */
export async function getOptional(path, params = {}, opts = {}) {
  try {
    return await getJSON(path, params, opts);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** Whether a route starting with ``prefix`` exists (no failed request in the console: asks the
 * OpenAPI document once). */
let routesPromise = null;
export async function hasRoute(prefix) {
  routesPromise ??= getJSON("/api/v1/openapi.json").then((doc) => Object.keys(doc.paths || {}))
    .catch(() => []);
  return (await routesPromise).some((p) => p.startsWith(prefix));
}

/** GETs started before the module that needs them has loaded (see main.js), taken once. */
const early = new Map();

/** Start ``getJSON(path)`` now; :func:`early` hands its promise over later. */
export function prefetch(path) {
  const got = getJSON(path);
  got.catch(() => {});  // handled by whoever takes it
  early.set(path, got);
}

/** The prefetched promise of ``path`` (once), else a new GET. */
export function getEarly(path) {
  const got = early.get(path);
  early.delete(path);
  return got ?? getJSON(path);
}
