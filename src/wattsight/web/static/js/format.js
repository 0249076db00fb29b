// Readable numbers: auto-scaled SI units for power, energy, bytes and rates; ages and times.

const PREFIXES = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"]];

/** A number to 3 significant digits (no exponent for the usual range). */
export function sig(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  if (x === 0) return "0";
  const a = Math.abs(x);
  const decimals = Math.max(0, Math.min(6, digits - 1 - Math.floor(Math.log10(a))));
  return x.toFixed(decimals);
}

/** ``x`` in ``unit`` with an SI prefix: 1234 W -> "1.23 kW". */
export function si(x, unit, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  const a = Math.abs(x);
  if (a === 0) return `0 ${unit}`;
  for (const [scale, prefix] of PREFIXES) {
    if (a >= scale * 0.9995) return `${sig(x / scale, digits)} ${prefix}${unit}`;
  }
  return `${sig(x / 1e-3, digits)} m${unit}`;
}

export const watts = (w) => si(w, "W");
export const bytesPerSecond = (b) => si(b, "B/s");
export const bytes = (b) => si(b, "B");

/** Energy given in kWh, shown as Wh, kWh or MWh, whichever reads best. */
export function kwh(k) {
  if (k === null || k === undefined || !Number.isFinite(k)) return "–";
  return si(k * 1000, "Wh");
}

/** Money in a currency (ISO code); falls back to "1.23 XYZ" for codes Intl does not know. */
export function money(x, currency) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  try {
    const small = Math.abs(x) < 1 && x !== 0;
    return new Intl.NumberFormat(undefined, {
      style: "currency", currency, minimumFractionDigits: small ? 4 : 2, maximumFractionDigits: small ? 4 : 2,
    }).format(x);
  } catch {
    return `${sig(x, 4)} ${currency}`;
  }
}

/** The formatter for a metric's values (per second for network rates). */
export function formatterFor(metric) {
  if (metric === "power") return watts;
  if (metric.startsWith("network")) return bytesPerSecond;
  if (metric === "energy") return (j) => si(j, "J");
  return (v) => sig(v);
}

/** "3 s", "4 min", "2 h", "5 d" ago-style durations. */
export function age(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** A local date and time, to the second. */
export function when(ms) {
  if (!Number.isFinite(ms)) return "–";
  return new Date(ms).toLocaleString(undefined, { hour12: false });
}

/** Percent with one decimal. */
export const percent = (f) => (Number.isFinite(f) ? `${(f * 100).toFixed(1)} %` : "–");

/** Escape text for HTML. */
export function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}
