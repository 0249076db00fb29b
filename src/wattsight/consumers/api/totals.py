"""Energy since each probe's first sample, kept up to date without re-reading history.

``/metrics`` (``wattsight_energy_joules_total``), Kwapi's ``kwh`` and
``/api/v1/probes/{probe}/power`` all want the energy a probe used since the store first
heard of it.  Integrating years of 1 Hz samples on every scrape would be wasteful, so
:class:`EnergyTotals` remembers, per probe, the energy up to the last sample it saw and
only reads the samples that arrived since.  The first call reads the history in chunks
of about a million samples, so memory stays bounded.

Integration over ``[a, b]`` plus ``[b, c]`` equals integration over ``[a, c]`` because every
chunk is read with the samples just outside it (as :func:`wattsight.energy.integrate`
asks), so totals do not depend on how often they are asked for.  A sample that reaches
the store later than ones already counted (a site catching up after a network cut) is
not added to the running total; ``/api/v1/energy`` over a range always reads afresh.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ... import energy
from ...sample import counter_range
from .catalog import ENERGY, POWER, ProbeView, read

_CHUNK_SAMPLES = 1_000_000
_MIN_CHUNK_MS = 3_600_000


@dataclass
class _Running:
    first_t: int  # the first sample the total starts from
    upto: int  # the total covers [first_t, upto]
    total: energy.Energy


@dataclass(frozen=True)
class Total:
    """The energy of one probe since its first sample."""

    energy: energy.Energy
    method: str  # "counter" or "integrated"
    since_ms: int
    until_ms: int


class EnergyTotals:
    """Running energy totals per probe (counter preferred, else integrated power)."""

    def __init__(self, max_gap_s: float) -> None:
        self.max_gap_s = max_gap_s
        self._running: dict[tuple[str, str], _Running] = {}
        self._lock = threading.Lock()  # one update at a time, or a chunk would count twice

    def get(self, store, view: ProbeView) -> Total | None:
        """The energy of ``view`` since its first sample; None for a probe without energy data."""
        method = view.energy_method
        if method is None:
            return None
        metric = ENERGY if method == "counter" else POWER
        info = view.metrics[metric]
        key = (view.id, metric)
        gap = energy.gap_limit_ms(view.probe.period, self.max_gap_s)
        with self._lock:
            run = self._running.get(key)
            if run is None or run.first_t != info.first_t:  # new, or older samples arrived
                run = self._running[key] = _Running(info.first_t, info.first_t, energy.Energy.zero())
            if info.last_t > run.upto:
                self._advance(store, key, run, info, gap, method)
            return Total(run.total, method, run.first_t, run.upto)

    def _advance(self, store, key, run: _Running, info, gap: int, method: str) -> None:
        if method == "counter":
            wrap = counter_range(info.series.kind)

            def amount(t, v, a, b, gap):
                return energy.counter_increase(t, v, a, b, gap, wrap)
        else:
            amount = energy.integrate
        if hasattr(store, "energy"):  # whole rollup buckets + raw edges: one call, bounded memory
            run.total = run.total + store.energy([key], run.upto, info.last_t, gap)[key]
            run.upto = info.last_t
            return
        span = max(info.last_t - info.first_t, 1)
        chunk = max(_MIN_CHUNK_MS, int(span * _CHUNK_SAMPLES / max(info.count, 1)))
        a = run.upto
        while a < info.last_t:
            b = min(a + chunk, info.last_t)
            t, v = read(store, [key], a - gap, b + gap)[key]
            run.total = run.total + amount(t, v, a, b, gap)
            run.upto = a = b
