// Live samples pushed by the server (Server-Sent Events on /api/v1/live).

import { hasRoute, url } from "./api.js";

/**
 * Follow new samples of ``metric`` for ``ids``: ``onSamples(t[], {id: values[]})`` per event.
 * Returns a ``close()`` function.  ``onState(text)`` hears "live", "reconnecting…" or why not.
 */
export async function follow(ids, metric, onSamples, onState = () => {}) {
  if (!ids.length) return () => {};
  if (!(await hasRoute("/api/v1/live"))) {
    onState("live updates need /api/v1/live (not in this server): reload to refresh");
    return () => {};
  }
  // counters come as their raw values (rates are computed per bucket, like the fetched series)
  const params = { metric, raw: metric.startsWith("network") ? "true" : "" };
  // a long list of ids would not fit a URL: without ``probes`` the stream carries every probe
  if (ids.join(",").length < 6000) params.probes = ids.join(",");
  const wanted = new Set(ids);
  const es = new EventSource(url("/api/v1/live", params));
  es.onopen = () => onState("live");
  es.onerror = () => onState(es.readyState === EventSource.CLOSED ? "live stream closed: reload" : "reconnecting…");
  es.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;  // not a sample event
    }
    if (!msg || !Array.isArray(msg.t)) return;
    const probes = {};
    for (const [id, values] of Object.entries(msg.probes || {})) if (wanted.has(id)) probes[id] = values;
    onSamples(msg.t, probes);
  };
  return () => es.close();
}
