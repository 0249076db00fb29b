"""Reusable inputs for the benchmarks: a realistic, reproducible 1 Hz trace of a rack of nodes.

**The rack shape.** Each node (probe ``bench.pdu-<i>``) is what a Grid'5000-like testbed
meters per node: one outlet of a metered PDU and one port of the top-of-rack switch, both read
at 1 Hz (two meters, read independently):

- ``power`` (W, gauge) from the outlet: load *phases* (idle, busy, peak levels held for
  minutes, exponential durations of ~20 min) with 10 s ramps, Gaussian noise of about 1.5 W,
  rounded to the meter's resolution -- 1 W for even probes, 0.1 W for odd ones (both exist in
  the field);
- ``energy`` (J, counter): the outlet's energy register, integrated from the power and
  reported in whole watt-hours (converted to J, as drivers do), so it steps every few seconds;
- ``network_in`` / ``network_out`` (B, counters): the switch port's ifHCInOctets /
  ifHCOutOctets (Counter64: no wrap in practice), seen from the node: *in* is what the node
  receives.  So 4 series per node, 2 of them byte counters.

**The traffic** is counted in whole Ethernet frames and follows the node's load phases, it is
not white noise:

- always: the VLAN's background -- broadcasts to the node (ARP 64 B, a few larger frames: a
  Poisson number per second, 2..20 frames/s depending on the node's VLAN) and, from the node,
  a frame now and then (NTP, ARP replies: 0.3 frames/s of 90 B).  An idle node's
  ``network_out`` therefore mostly does not move;
- busy and peak phases are jobs.  Half of them mostly compute (a few kB/s of extra small
  frames: NFS, heartbeats); the other half communicate: the phase has a mean rate drawn
  log-uniformly from 0.3 to 300 MB/s (peak phases 3x, at most a 10 GbE line) and a share sent
  vs received; each second carries that rate times a log-normal factor (sigma 0.3), off for
  ~15 % of seconds (compute steps between exchanges), in full 1518 B frames, and the data
  received is acknowledged by 66 B frames (one per two data frames) the other way.

**Gaps**: each meter misses a few reads a day (Poisson, 4 a day per meter, 5 s .. 5 min): a
PDU gap removes the node's power and energy, a switch gap its two counters.

Times are exact seconds by default (the runner stamps the scheduled tick); ``jitter_ms``
adds a uniform per-read jitter (the same for the series read together from one meter) to
model meters stamped on reply.  Rows come in time order, interleaved across series, as the
bus delivers them.

:class:`Rack` generates the trace hour by hour with state carried over (registers, counters,
phases), so a month of 1,000 nodes streams in constant memory; ``pdu_trace()`` is the whole
trace as one batch (for small traces).  Everything is vectorised across nodes.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np

from wattsight.sample import Batch, Series

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
METRICS = (("power", "W", "gauge"), ("energy", "J", "counter"),
           ("network_in", "B", "counter"), ("network_out", "B", "counter"))
FRAME, ACK = 1518, 66  # a full Ethernet frame and a TCP ACK, in octets as ifHCOctets counts them
BLOCK_S = 3600  # the generator's step: the trace does not depend on how it is read


def _gap_mask(rng: np.random.Generator, probes: int, seconds: int) -> list[np.ndarray]:
    """Per probe, the (start, end) second ranges a meter did not answer: ~4 a day, 5 s .. 5 min."""
    out = []
    for n in rng.poisson(max(seconds / 86400 * 4, 0.5), probes):
        start = rng.integers(0, seconds, n)
        out.append(np.stack([start, start + rng.integers(5, 300, n)], axis=1))
    return out


class Rack:
    """A rack of ``probes`` nodes for ``seconds`` s at 1 Hz (see the module doc), block by block."""

    def __init__(self, probes: int, seconds: int, seed: int = 0, *, jitter_ms: int = 0,
                 start_ms: int = T0_MS) -> None:
        self.probes, self.seconds, self.jitter_ms, self.start_ms = probes, seconds, jitter_ms, start_ms
        rng = self.rng = np.random.default_rng(seed)
        p = probes
        self.series = tuple(Series(f"bench.pdu-{i}", m, u, k) for i in range(p) for m, u, k in METRICS)
        idle = rng.uniform(120, 220, p)
        self.levels = np.stack([idle, idle + rng.uniform(150, 250, p), idle + rng.uniform(300, 450, p)], 1)
        self.fine = np.arange(p) % 2 == 1  # 0.1 W meters
        n_ph = int(seconds / 1000) + 30
        dur = rng.exponential(1200, (p, n_ph)).astype(np.int64) + 30
        while (dur.sum(1) < seconds + 20).any():  # rare: make sure the phases cover the span
            dur = np.concatenate([dur, rng.exponential(1200, (p, n_ph)).astype(np.int64) + 30], 1)
        n_ph = dur.shape[1]
        self.ends = np.cumsum(dur, 1)  # phase j covers [ends[j-1], ends[j]) in seconds from the start
        self.state = rng.choice(3, (p, n_ph), p=[0.45, 0.4, 0.15])
        comm = (self.state > 0) & (rng.random((p, n_ph)) < 0.5)
        mu = 10 ** rng.uniform(5.5, 8.5, (p, n_ph)) * np.where(self.state == 2, 3.0, 1.0)
        self.rate = np.where(comm, np.minimum(mu, 1.2e9), 0.0)  # B/s of data while communicating
        self.share_out = rng.uniform(0, 1, (p, n_ph))
        self.small = np.where((self.state > 0) & ~comm, 20.0, 0.0)  # frames/s of a computing job
        self.bcast = rng.uniform(2, 20, p)
        self.gaps = (_gap_mask(rng, p, seconds), _gap_mask(rng, p, seconds))  # PDU, switch
        self.joules = rng.uniform(0, 1e5, p) * 3600  # the registers' start
        self.octets = rng.integers(0, 2**40, (p, 2)).astype(np.int64)
        self.prev_level = None
        self.done = 0

    def _per_phase(self, table: np.ndarray, sec: np.ndarray) -> np.ndarray:
        """``table[p, phase of second sec[p, k]]`` for a (probes, k) array of seconds."""
        big = int(self.ends[:, -1].max()) + 1
        flat = (self.ends + np.arange(self.probes)[:, None] * big).ravel()
        where = np.searchsorted(flat, (sec + np.arange(self.probes)[:, None] * big).ravel(), "right")
        return table.ravel()[where].reshape(sec.shape)

    def _block(self) -> Batch:
        """The next BLOCK_S seconds (or what is left) of every node, rows in time order."""
        rng, p, s0 = self.rng, self.probes, self.done
        n = min(BLOCK_S, self.seconds - s0)
        sec = np.broadcast_to(np.arange(max(s0 - 9, 0), s0 + n), (p, n + min(s0, 9)))
        level = self._per_phase(self.levels[np.arange(p)[:, None], self.state], sec)
        if s0 == 0:  # 10 s ramps (a PSU does not jump): a moving average over the level's last 10 s
            level = np.concatenate([np.repeat(level[:, :1], 9, 1), level], 1)
        c = np.cumsum(np.concatenate([np.zeros((p, 1)), level], 1), 1)
        level = (c[:, 10:] - c[:, :-10]) / 10
        noisy = level + rng.normal(0, 1.5, (p, n))
        watts = np.where(self.fine[:, None], np.round(noisy, 1), np.round(noisy))
        joules = self.joules[:, None] + np.cumsum(watts, 1)
        self.joules = joules[:, -1]
        energy = np.floor(joules / 3600) * 3600  # whole Wh, in J
        sec = sec[:, -n:]
        rate = self._per_phase(self.rate, sec) * rng.lognormal(0, 0.3, (p, n)) * (rng.random((p, n)) > 0.15)
        share = self._per_phase(self.share_out, sec)
        data_out = np.rint(rate * share / FRAME)
        data_in = np.rint(rate * (1 - share) / FRAME)
        small = rng.poisson(self._per_phase(self.small, sec))
        lam = self.bcast[:, None]
        got = (data_in * FRAME + (data_out // 2) * ACK + 64 * rng.poisson(0.8 * lam, (p, n))
               + 342 * rng.poisson(0.2 * lam, (p, n)) + 128 * small)
        sent = (data_out * FRAME + (data_in // 2) * ACK + 90 * rng.poisson(0.3, (p, n)) + 128 * small)
        octets = self.octets[:, :, None] + np.cumsum(np.stack([got, sent], 1).astype(np.int64), 2)
        self.octets = octets[:, :, -1]
        values = np.stack([watts, energy, octets[:, 0].astype(np.float64), octets[:, 1].astype(np.float64)], 2)
        keep = np.ones((p, n, 4), bool)
        for meter, cols in ((0, slice(0, 2)), (1, slice(2, 4))):
            for i, gaps in enumerate(self.gaps[meter]):
                for a, b in gaps.tolist():
                    if a < s0 + n and b > s0:
                        keep[i, max(a - s0, 0):b - s0, cols] = False
        t = np.broadcast_to((self.start_ms + (s0 + np.arange(n)) * 1000)[None, :, None], (p, n, 4)).copy()
        if self.jitter_ms:  # one read per meter: power+energy share theirs, in+out theirs
            j = rng.integers(0, self.jitter_ms + 1, (p, n, 2))
            t += np.repeat(j, 2, axis=2)
        sidx = np.broadcast_to(np.arange(p * 4, dtype=np.uint32).reshape(p, 1, 4), (p, n, 4))
        # time-major: second, node, metric; then only the rows read
        order = (1, 0, 2)
        keep = keep.transpose(order).ravel()
        t = t.transpose(order).ravel()[keep]
        sidx = sidx.transpose(order).ravel()[keep]
        v = values.transpose(order).ravel()[keep]
        if self.jitter_ms:
            o = np.argsort(t, kind="stable")
            t, sidx, v = t[o], sidx[o], v[o]
        self.done = s0 + n
        return Batch(self.series, np.ascontiguousarray(sidx), np.ascontiguousarray(t), np.ascontiguousarray(v))

    def blocks(self, seconds: int = BLOCK_S) -> Iterator[Batch]:
        """The rest of the trace, about ``seconds`` at a time (whole BLOCK_S: the same trace either way)."""
        while self.done < self.seconds:
            parts = [self._block()]
            while self.done < self.seconds and len(parts) * BLOCK_S < seconds:
                parts.append(self._block())
            yield parts[0] if len(parts) == 1 else _join(parts)


def _join(parts: list[Batch]) -> Batch:
    """Batches of one series table, end to end."""
    return Batch(parts[0].series, np.concatenate([b.sidx for b in parts]),
                 np.concatenate([b.t for b in parts]), np.concatenate([b.v for b in parts]))


def pdu_trace(probes: int, seconds: int, seed: int = 0, *, jitter_ms: int = 0,
              start_ms: int = T0_MS) -> Batch:
    """The whole trace of ``probes`` nodes for ``seconds`` s as one batch (see the module doc)."""
    rack = Rack(probes, seconds, seed, jitter_ms=jitter_ms, start_ms=start_ms)
    return _join(list(rack.blocks()))


def batches(batch: Batch, size: int = 10_000) -> list[Batch]:
    """``batch`` cut into consecutive pieces of ``size`` samples (sharing its series table)."""
    return [batch.rows(i, i + size) for i in range(0, len(batch), size)]


def emit(figure: str, value: float, unit: str, engine: str, **extra) -> None:
    """Print one figure as a JSON line (the format every bench script uses)."""
    import json

    print(json.dumps({"figure": figure, "value": round(float(value), 4), "unit": unit,
                      "engine": engine, **extra}), flush=True)


def parse_with_format(ap, note: str = "") -> argparse.Namespace:
    """``ap.parse_args()`` with a ``--format`` option (1, 2 or 3, default ``segment.FORMAT``): the
    segment format the store writes, set in ``segment.FORMAT`` for the rest of the run."""
    from wattsight.consumers.store import segment

    ap.add_argument("--format", type=int, choices=[1, 2, 3], default=segment.FORMAT,
                    help=f"the segment format the store writes (1: scaled integers, before residuals{note})")
    args = ap.parse_args()
    segment.FORMAT = args.format
    return args


def dummy_rack_config(path, *, site: str, endpoint: str, secret: str, store, count: int, burst: int,
                      period: float, flush_interval: float | None = None, listen: str | None = None):
    """Write to ``path`` (and return it) a config of one dummy driver ``rack`` -- ``count`` probes,
    ``burst`` samples each every ``period`` s, pattern ``walk`` -- publishing on ``endpoint`` to a
    store at ``store``: the full-rate drivers of bench/e2e.py and tests/test_crash_full_rate.py."""
    store_extra = "" if flush_interval is None else f"flush_interval = {flush_interval}\n"
    api = "" if listen is None else f'[api]\nlisten = "{listen}"\n'
    path.write_text(f'site = "{site}"\n[bus]\nendpoint = "{endpoint}"\nsecret = "{secret}"\n'
                    f'[store]\npath = "{store}"\n{store_extra}{api}'
                    f'[drivers.rack]\ntype = "dummy"\nperiod = {period}\ncount = {count}\nburst = {burst}\n'
                    'pattern = "walk"\n')
    return path
