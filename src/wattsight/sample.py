"""The Sample, Series, Batch and Probe types: the one shape that crosses every boundary.

A *sample* is one reading: (probe id, metric, measured_at, value, unit, kind, provenance).
Samples never travel one object each: they travel in a :class:`Batch`, a columnar block
where the per-series attributes (probe, metric, unit, kind, provenance) are stored once in
a small series table and every sample only carries an index into it, its measurement
time and its value.

Time inside wattsight is an ``int64`` count of **milliseconds** since the Unix epoch
(as Prometheus does): enough for 50 Hz meters, and cheap to store.  Values are SI
floats (watts, joules, bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import SampleError

KINDS = ("gauge", "counter")
_WRAPPING = re.compile(r"counter:(\d+(?:\.\d+)?)")
PROVENANCES = ("measured", "derived", "modelled")

#: The metrics wattsight knows, with their SI unit and kind.  Drivers may publish
#: other metrics; these are the ones the API, energy maths and /metrics understand.
METRICS: dict[str, tuple[str, str]] = {
    "power": ("W", "gauge"),
    "energy": ("J", "counter"),
    "network_in": ("B", "counter"),
    "network_out": ("B", "counter"),
}

def wrapping_counter(max_range: float) -> str:
    """The ``kind`` of a counter that wraps round to 0 after ``max_range`` (in the series' unit).

    A plain ``"counter"`` only goes down when it is reset (the Prometheus rule: the increase
    is the new value).  A counter that *wraps* -- SNMP Counter32 (``2**32`` B), RAPL's
    ``max_energy_range_uj`` -- declares its range in its kind, ``"counter:<max_range>"``, so
    that the energy maths adds the part before the wrap (:func:`wattsight.energy.wrap_deltas`).
    The kind travels and is stored with the series: nothing else has to know the meter.
    """
    if not max_range > 0:
        raise SampleError(f"a wrapping counter needs a positive range, not {max_range!r}")
    text = repr(float(max_range))
    if "e" in text or "n" in text:
        text = f"{float(max_range):.6f}".rstrip("0").rstrip(".")
    return f"counter:{text.removesuffix('.0')}"


def is_counter(kind: str) -> bool:
    """True for ``"counter"`` and wrapping counters (``"counter:<max_range>"``)."""
    return kind == "counter" or bool(_WRAPPING.fullmatch(kind))


def counter_range(kind: str) -> float | None:
    """The wrap range of a counter kind, or None (a gauge, or a counter that only resets)."""
    m = _WRAPPING.fullmatch(kind)
    return float(m.group(1)) if m else None


_PROBE_ID = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_.:/@+-]+")


def check_probe_id(probe: str) -> str:
    """Return ``probe`` if it is a valid ``<site>.<name>`` id, else raise SampleError."""
    if not isinstance(probe, str) or not _PROBE_ID.fullmatch(probe):
        raise SampleError(
            f"probe id {probe!r} is not of the form '<site>.<name>' "
            "(letters, digits, '-', '_' in the site; e.g. 'lyon.taurus-7')"
        )
    return probe


def site_of(probe: str) -> str:
    """The site part of a probe id (``lyon`` for ``lyon.taurus-7``)."""
    return probe.split(".", 1)[0]


def now_ms() -> int:
    """The current wall-clock time in integer milliseconds since the epoch."""
    import time

    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Series:
    """What is constant for every sample of one time series."""

    probe: str
    metric: str
    unit: str
    kind: str = "gauge"
    provenance: str = "measured"

    def __post_init__(self) -> None:
        check_probe_id(self.probe)
        if self.kind not in KINDS and not _WRAPPING.fullmatch(self.kind):
            raise SampleError(f"series {self.probe}/{self.metric}: kind {self.kind!r} is not one of {KINDS} "
                              "or a wrapping counter 'counter:<max_range>' (see wrapping_counter)")
        if self.provenance not in PROVENANCES:
            raise SampleError(
                f"series {self.probe}/{self.metric}: provenance {self.provenance!r} not in {PROVENANCES}"
            )

    @property
    def site(self) -> str:
        return site_of(self.probe)

    @property
    def key(self) -> tuple[str, str]:
        return (self.probe, self.metric)

    def as_tuple(self) -> tuple[str, str, str, str, str]:
        return (self.probe, self.metric, self.unit, self.kind, self.provenance)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading, for people and tests; the hot path uses :class:`Batch`."""

    probe: str
    metric: str
    measured_at: float  # seconds since the epoch
    value: float
    unit: str
    kind: str = "gauge"
    provenance: str = "measured"

    @property
    def series(self) -> Series:
        return Series(self.probe, self.metric, self.unit, self.kind, self.provenance)


_EMPTY_I64 = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Batch:
    """Many samples as columns: a series table and three aligned arrays.

    ``sidx[i]`` indexes ``series`` for sample ``i``; ``t[i]`` is its measurement time in
    ms since the epoch; ``v[i]`` its value in SI units.
    """

    series: tuple[Series, ...]
    sidx: np.ndarray  # uint32
    t: np.ndarray  # int64 ms
    v: np.ndarray  # float64
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.t)
        if len(self.sidx) != n or len(self.v) != n:
            raise SampleError(f"batch columns differ in length: sidx={len(self.sidx)} t={n} v={len(self.v)}")

    # -- building ---------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Batch":
        return cls((), np.zeros(0, np.uint32), _EMPTY_I64, np.zeros(0, np.float64))

    @classmethod
    def of_series(cls, series: Series, t: Sequence[int] | np.ndarray, v: Sequence[float] | np.ndarray) -> "Batch":
        """One series: times in ms and values."""
        t = np.asarray(t, dtype=np.int64)
        return cls((series,), np.zeros(len(t), np.uint32), t, np.asarray(v, dtype=np.float64))

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> "Batch":
        """Pack individual samples (convenient for drivers that read a few values)."""
        table: dict[Series, int] = {}
        sidx: list[int] = []
        ts: list[int] = []
        vs: list[float] = []
        for s in samples:
            sidx.append(table.setdefault(s.series, len(table)))
            ts.append(int(round(s.measured_at * 1000)))
            vs.append(float(s.value))
        return cls(
            tuple(table),
            np.asarray(sidx, dtype=np.uint32),
            np.asarray(ts, dtype=np.int64),
            np.asarray(vs, dtype=np.float64),
        )

    @classmethod
    def concat(cls, batches: Iterable["Batch"]) -> "Batch":
        """Join batches, merging their series tables."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        table: dict[Series, int] = {}
        parts = []
        for b in batches:
            remap = np.fromiter((table.setdefault(s, len(table)) for s in b.series), np.uint32, len(b.series))
            parts.append(remap[b.sidx])
        return cls(
            tuple(table),
            np.concatenate(parts),
            np.concatenate([b.t for b in batches]),
            np.concatenate([b.v for b in batches]),
        )

    # -- reading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.t)

    def samples(self) -> Iterator[Sample]:
        """Yield one :class:`Sample` per row (for printing and tests, not the hot path)."""
        for i, t, v in zip(self.sidx.tolist(), self.t.tolist(), self.v.tolist()):
            s = self.series[i]
            yield Sample(s.probe, s.metric, t / 1000.0, v, s.unit, s.kind, s.provenance)

    def select(self, mask: np.ndarray) -> "Batch":
        """The rows where ``mask`` is true, with the series table compacted."""
        sidx = self.sidx[mask]
        used = np.unique(sidx)
        remap = np.zeros(len(self.series), np.uint32)
        remap[used] = np.arange(len(used), dtype=np.uint32)
        return Batch(tuple(self.series[i] for i in used.tolist()), remap[sidx], self.t[mask], self.v[mask])

    def rows(self, lo: int, hi: int) -> "Batch":
        """Rows ``lo:hi`` (views, no copy), sharing this batch's series table."""
        return Batch(self.series, self.sidx[lo:hi], self.t[lo:hi], self.v[lo:hi])

    def split(self, key) -> dict:
        """Split by ``key(series)`` (e.g. site and metric, for bus topics)."""
        keys = [key(s) for s in self.series]
        distinct = sorted(set(keys))
        if len(distinct) == 1:
            return {distinct[0]: self}
        number = {k: i for i, k in enumerate(distinct)}
        code = np.asarray([number[k] for k in keys], dtype=np.int64)
        rowcode = code[self.sidx] if len(self.sidx) else np.zeros(0, np.int64)
        return {k: self.select(rowcode == i) for i, k in enumerate(distinct)}


@dataclass(frozen=True, slots=True)
class Probe:
    """Metadata of one probe: where it comes from and which nodes it feeds.

    ``nodes`` lists the nodes fed by this probe; more than one means the measure is
    *shared* (one outlet feeding two hosts) and is reported as such, never split.
    A node fed by several probes (a host with two PSUs) is the sum of them.
    """

    id: str
    driver: str = ""
    aliases: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    period: float | None = None  # seconds between reads, if polled
    description: str = ""

    def __post_init__(self) -> None:
        check_probe_id(self.id)

    @property
    def site(self) -> str:
        return site_of(self.id)

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]

    @property
    def fed_nodes(self) -> tuple[str, ...]:
        """The nodes this probe feeds; by default the node named like the probe."""
        return self.nodes or (self.id,)

    @property
    def shared(self) -> bool:
        return len(self.fed_nodes) > 1


class Topology:
    """Probes and the nodes they feed: the mapping node-level figures are derived from."""

    def __init__(self, probes: Iterable[Probe] = ()) -> None:
        self.probes: dict[str, Probe] = {}
        self._alias: dict[str, str] = {}
        for p in probes:
            self.add(p)

    def add(self, probe: Probe) -> None:
        self.probes[probe.id] = probe
        for a in probe.aliases:
            self._alias[a] = probe.id

    def resolve(self, name: str) -> str:
        """A probe id from an id or an alias (unknown names are returned unchanged)."""
        return self._alias.get(name, name)

    def get(self, name: str) -> Probe:
        pid = self.resolve(name)
        return self.probes.get(pid) or Probe(pid)

    def nodes(self) -> dict[str, list[str]]:
        """node id -> the probes that feed it (a node's power is their sum)."""
        out: dict[str, list[str]] = {}
        for p in self.probes.values():
            for n in p.fed_nodes:
                out.setdefault(n, []).append(p.id)
        return out

    def node_probes(self, node: str) -> list[str]:
        return self.nodes().get(node, [])

    def shared_probes(self, node: str) -> list[str]:
        """Probes of ``node`` that also feed other nodes (their figure is not the node's alone)."""
        return [p for p in self.node_probes(node) if self.probes[p].shared]
