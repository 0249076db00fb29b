"""Reusable inputs for the benchmarks: a realistic, reproducible 1 Hz PDU-like trace.

``pdu_trace(probes, seconds, seed)`` returns one :class:`~wattsight.sample.Batch` holding, for
each probe ``bench.pdu-<i>`` and each second, what a metered PDU outlet and the node's switch
port report:

- ``power`` (W, gauge): load *phases* (idle, busy, peak levels held for minutes, exponential
  durations) with short ramps, Gaussian noise of about 1.5 W, rounded to the meter's
  resolution -- 1 W for even probes, 0.1 W for odd ones (both exist in the field).
- ``energy`` (J, counter): the outlet's energy register, integrated from the power and
  reported in whole watt-hours (converted to J, as drivers do), so it steps every few seconds.
- ``network_in`` / ``network_out`` (B, counters): a few kB/s of background traffic, MB/s
  bursts while the node is busy.

A few gaps (the meter did not answer for 5 s .. 5 min) remove every metric of a probe at once.
Times are exact seconds by default (the runner stamps the scheduled tick); ``jitter_ms``
adds a uniform per-read jitter to model meters stamped on reply.  Rows come in time order,
interleaved across series, as the bus delivers them.  Everything is vectorised: a day of
100 probes (34.6 M samples) takes a few seconds.
"""

from __future__ import annotations

import numpy as np

from wattsight.sample import Batch, Series

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
METRICS = (("power", "W", "gauge"), ("energy", "J", "counter"),
           ("network_in", "B", "counter"), ("network_out", "B", "counter"))


def _power(rng: np.random.Generator, seconds: int, resolution: float) -> np.ndarray:
    """One probe's power in W: phases at a few levels, 10 s ramps, noise, rounded."""
    idle = rng.uniform(120, 220)
    levels = np.array([idle, idle + rng.uniform(150, 250), idle + rng.uniform(300, 450)])
    n_phases = max(2, seconds // 600 + 2)
    durations = rng.exponential(1200, n_phases).astype(np.int64) + 30
    states = rng.choice(3, n_phases, p=[0.45, 0.4, 0.15])
    level = np.repeat(levels[states], durations)[:seconds]
    if len(level) < seconds:
        level = np.concatenate([level, np.full(seconds - len(level), idle)])
    kernel = np.ones(10) / 10  # ramps: a PSU does not jump instantaneously
    level = np.convolve(np.pad(level, (9, 0), mode="edge"), kernel, mode="valid")
    noisy = level + rng.normal(0, 1.5, seconds)
    return np.round(noisy / resolution) * resolution if resolution >= 1 else np.round(noisy, 1)


def _counter(rng: np.random.Generator, busy: np.ndarray) -> np.ndarray:
    """A byte counter: kB/s background, MB/s bursts while busy."""
    n = len(busy)
    rate = rng.gamma(2.0, 1500, n) + busy * rng.gamma(2.0, 4e6, n) * (rng.random(n) < 0.7)
    return np.cumsum(np.floor(rate)) + rng.integers(0, 2**40)


def _gaps(rng: np.random.Generator, seconds: int) -> np.ndarray:
    """True where the meter answered: a few gaps of 5 s .. 5 min per day."""
    keep = np.ones(seconds, bool)
    for _ in range(rng.poisson(max(seconds / 86400 * 4, 0.5))):
        start = int(rng.integers(0, seconds))
        keep[start:start + int(rng.integers(5, 300))] = False
    return keep


def pdu_trace(probes: int, seconds: int, seed: int = 0, *, jitter_ms: int = 0,
              start_ms: int = T0_MS) -> Batch:
    """A realistic 1 Hz trace of ``probes`` outlets for ``seconds`` s (see the module doc)."""
    rng = np.random.default_rng(seed)
    series, cols_t, cols_v, cols_i = [], [], [], []
    tick = np.arange(seconds, dtype=np.int64)
    for p in range(probes):
        probe = f"bench.pdu-{p}"
        base = len(series)
        series.extend(Series(probe, m, u, k) for m, u, k in METRICS)
        watts = _power(rng, seconds, 1.0 if p % 2 == 0 else 0.1)
        wh = np.floor(np.cumsum(watts) / 3600 + rng.uniform(0, 1e5))
        busy = watts > watts.min() + 100
        values = np.stack([watts, wh * 3600.0, _counter(rng, busy), _counter(rng, busy)], axis=1)
        keep = _gaps(rng, seconds)
        t = start_ms + tick[keep] * 1000
        if jitter_ms:
            t = t + rng.integers(0, jitter_ms + 1, len(t))
        n = len(t)
        cols_t.append(np.repeat(t, 4))
        cols_v.append(values[keep].reshape(-1))
        cols_i.append(np.tile(np.arange(base, base + 4, dtype=np.uint32), n))
    t = np.concatenate(cols_t)
    order = np.argsort(t, kind="stable")  # time order, interleaved across series
    return Batch(tuple(series), np.concatenate(cols_i)[order], t[order], np.concatenate(cols_v)[order])


def batches(batch: Batch, size: int = 10_000) -> list[Batch]:
    """``batch`` cut into consecutive pieces of ``size`` samples (sharing its series table)."""
    return [batch.rows(i, i + size) for i in range(0, len(batch), size)]


def emit(figure: str, value: float, unit: str, engine: str, **extra) -> None:
    """Print one figure as a JSON line (the format every bench script uses)."""
    import json

    print(json.dumps({"figure": figure, "value": round(float(value), 4), "unit": unit,
                      "engine": engine, **extra}), flush=True)
