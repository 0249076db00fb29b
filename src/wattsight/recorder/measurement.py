"""What a measurement holds: energy in total and per part, and an honest account of how it was found.

A :class:`Measurement` is frozen: it is the answer for one window (a step, a recording, a
command), made once.  Each :class:`Part` is one domain (a RAPL zone, a GPU, the CPU model) in
local mode, or one probe or node of the environment when a wattsight server measured it.
Parts that could not be measured are listed in ``not_available`` with the reason; when nothing
could be measured, ``joules`` is None and ``provenance`` is ``"unavailable"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Provenance of a part or of a whole measurement.
MEASURED, MODELLED, MIXED, UNAVAILABLE = "measured", "modelled", "mixed", "unavailable"


@dataclass(frozen=True)
class Part:
    """The energy of one domain, probe or node over a measurement's span."""

    name: str  # package-0, dram-0, gpu-0, cpu-model; or a probe id / node name from the API
    domain: str  # cpu, cpu-core, uncore, dram, gpu, platform, host; "probe" or "node" from the API
    joules: float | None
    coverage: float  # 0..1: the share of the span the figure really covers
    provenance: str  # measured | modelled | unavailable
    method: str  # how it was found, for people
    in_total: bool = True  # counted in Measurement.joules (a RAPL core zone is inside its package: not)
    mean_power_w: float | None = None
    peak_power_w: float | None = None


@dataclass(frozen=True)
class Measurement:
    """The energy of one named window (step, recording, command): total, parts, and what was not measured."""

    name: str
    start: float  # epoch seconds, the caller's clock
    end: float
    joules: float | None  # the total of the parts marked in_total; None when nothing was measured
    coverage: float
    provenance: str  # measured | modelled | mixed | unavailable
    parts: tuple[Part, ...] = ()
    not_available: tuple[tuple[str, str], ...] = ()  # (domain or part, why)
    source: str = "local"  # local | api | none
    recording: str | None = None  # the recording's id on the server
    peak_power_w: float | None = None
    steps: tuple[Measurement, ...] = ()
    notes: tuple[str, ...] = ()
    duration_s: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "duration_s", max(self.end - self.start, 0.0))

    @property
    def available(self) -> bool:
        """True when at least one part gave a figure."""
        return self.joules is not None

    @property
    def mean_power_w(self) -> float | None:
        return self.joules / self.duration_s if self.joules is not None and self.duration_s > 0 else None

    @property
    def kwh(self) -> float | None:
        return None if self.joules is None else self.joules / 3.6e6

    @property
    def measured(self) -> tuple[str, ...]:
        """The parts whose figures were measured by a meter."""
        return tuple(p.name for p in self.parts if p.provenance == MEASURED)

    @property
    def modelled(self) -> tuple[str, ...]:
        """The parts whose figures come from a model, not a meter."""
        return tuple(p.name for p in self.parts if p.provenance == MODELLED)

    @property
    def joules_by_part(self) -> dict[str, float | None]:
        return {p.name: p.joules for p in self.parts}

    def part(self, name: str) -> Part:
        """The part called ``name`` (KeyError listing the parts otherwise)."""
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"no part {name!r} in measurement {self.name!r}; parts: "
                       f"{', '.join(p.name for p in self.parts) or 'none'}")

    def step(self, name: str) -> Measurement:
        """The last step called ``name`` (KeyError listing the steps otherwise)."""
        for s in reversed(self.steps):
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.steps) or "none"
        raise KeyError(f"no step {name!r} in {self.name!r}; steps: {known}")

    def to_json(self) -> dict:
        """A plain dict for JSON (with duration, mean power and kWh)."""
        out = asdict(self)
        out.update(duration_s=self.duration_s, mean_power_w=self.mean_power_w, kwh=self.kwh,
                   measured=list(self.measured), modelled=list(self.modelled),
                   not_available=[{"part": p, "why": why} for p, why in self.not_available])
        return out

    def summary(self) -> str:
        """One line for people: name, energy, duration and provenance."""
        if self.joules is None:
            why = "; ".join(w for _, w in self.not_available[:1]) or "no meter"
            return f"{self.name}: energy unavailable over {self.duration_s:.3f} s ({why})"
        return (f"{self.name}: {self.joules:.3f} J over {self.duration_s:.3f} s "
                f"({self.provenance}, coverage {self.coverage:.0%})")


def combine_provenance(parts: list[Part] | tuple[Part, ...]) -> str:
    """measured / modelled when every counted part agrees, mixed otherwise, unavailable when none."""
    kinds = {p.provenance for p in parts if p.in_total and p.joules is not None}
    if not kinds:
        return UNAVAILABLE
    return kinds.pop() if len(kinds) == 1 else MIXED


def unavailable(name: str, start: float, end: float, why: str, *, source: str = "none",
                recording: str | None = None) -> Measurement:
    """A measurement that has no figure, saying why."""
    return Measurement(name, start, end, None, 0.0, UNAVAILABLE, (), (("all", why),), source, recording)


def from_report(name: str, r: dict, *, start: float, end: float, recording: str | None = None,
                steps: tuple[Measurement, ...] = (), notes: tuple[str, ...] = ()) -> Measurement:
    """A measurement from the API's report shape R (energy, probes, nodes, mean and peak power).

    Nodes are sums of probes: the total is the environment's energy (``r["energy"]``); the probes
    are parts counted in it, the nodes parts that are not (they would count the probes twice).
    Each probe's and node's provenance is the one R gives (that of the stored series).
    """
    parts: list[Part] = []
    missing: list[tuple[str, str]] = []
    for kind, items in (("probe", r.get("probes") or {}), ("node", r.get("nodes") or {})):
        for pid, e in items.items():
            method = e.get("method") or ("sum of its probes" if kind == "node" else None)
            prov = e.get("provenance") or ("as stored" if method else UNAVAILABLE)
            if kind == "probe" and not method:
                missing.append((pid, "no power or energy data stored in the span"))
                prov = UNAVAILABLE
            parts.append(Part(pid, kind, e.get("joules"), float(e.get("coverage") or 0.0), prov,
                              f"wattsight server: {method or 'no data'}", kind == "probe",
                              e.get("mean_power_w"), e.get("peak_power_w")))
    energy = r.get("energy") or {}
    joules = energy.get("joules")
    counted = [p for p in parts if p.in_total and p.joules is not None]
    provenance = combine_provenance(counted) if counted else UNAVAILABLE
    if joules is not None and not counted and energy.get("coverage", 0) == 0:
        provenance = UNAVAILABLE
        missing.append(("all", "the server has no data for this span and environment"))
    coverage = float(energy.get("coverage") or 0.0)
    return Measurement(name, start, end, joules, coverage, provenance, tuple(parts), tuple(missing), "api",
                       recording, r.get("peak_power_w"), steps, notes)
