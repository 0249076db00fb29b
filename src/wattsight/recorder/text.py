"""Measurements as text for people, in the manner of ``perf stat``: one figure per line, then what it means.

Every figure says whether it was measured or modelled, and every domain a user may expect (CPU,
DRAM, GPU, the whole machine at the wall) that no meter covered is listed as not available, with
the reason.  Standard library only.
"""

from __future__ import annotations

from .measurement import MODELLED, UNAVAILABLE, Measurement

LABELS = {"cpu": "CPU package", "cpu-core": "CPU cores", "uncore": "uncore", "dram": "DRAM", "gpu": "GPU",
          "platform": "platform (psys)", "wall": "whole host (wall)", "probe": "probe", "node": "node"}


def joules(value: float | None) -> str:
    """``12.3 J``, ``4.56 kJ``, ``7.8 MJ``; ``-`` for None."""
    if value is None:
        return "-"
    for unit, scale in (("MJ", 1e6), ("kJ", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:,.3f} {unit}"
    return f"{value:,.3f} J"


def watts(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f} W"


def stat(m: Measurement, *, title: str, exit_code: int | None = None) -> str:
    """The whole report of one measurement: span, each part, the total, and what was not measured."""
    out = [f" Energy of {title} ({_source(m)}):", "", f"{m.duration_s:>16,.3f} s   wall time"]
    for p in m.parts:
        label = LABELS.get(p.domain, p.domain)
        name = f"{label} {p.name}" if p.domain in ("probe", "node") else f"{label} ({p.name})"
        extra = ("" if p.in_total else ", the sum of its probes: not added again" if p.domain == "node"
                 else ", inside another figure: not added to the total")
        cov = "" if p.coverage >= 0.9995 else f", coverage {p.coverage:.1%}"
        out.append(f"{joules(p.joules):>18}   {name:<28} {p.provenance}{cov}{extra}")
    covered = {p.domain for p in m.parts}
    for part, why in m.not_available:
        if part == "all" or part not in {p.name for p in m.parts}:
            label = "everything" if part == "all" else LABELS.get(part, part)
            what = "not measured" if part in covered else "not available"
            out.append(f"{what:>18}   {label:<28} {why}")
    if m.joules is not None:
        out.append(f"{joules(m.joules):>18}   {'total':<28} {m.provenance}, mean {watts(m.mean_power_w)}"
                   + (f", peak {watts(m.peak_power_w)}" if m.peak_power_w is not None else "")
                   + f", coverage {m.coverage:.1%}")
    out += ["", *honesty(m)]
    if m.steps:
        out += ["", *steps_table(m)]
    out += [f" note: {n}" for n in m.notes]
    if exit_code is not None:
        out.append(f" exit code {exit_code}")
    return "\n".join(out) + "\n"


def _source(m: Measurement) -> str:
    if m.source == "api":
        return f"wattsight server, recording {m.recording}" if m.recording else "wattsight server"
    return "local meters" if m.source == "local" else "no meter"


def honesty(m: Measurement) -> list[str]:
    """What was measured, what was modelled, what was not available: the three lines to read first."""
    own = [p for p in m.parts if p.in_total or p.domain not in ("node",)]  # a node repeats its probes
    measured = list(dict.fromkeys(p.name for p in own if p.provenance not in (MODELLED, UNAVAILABLE)))
    modelled = list({p.name: p for p in own if p.provenance == MODELLED}.values())
    covered = {p.name for p in m.parts} | {p.domain for p in m.parts}
    missing = [part for part, _ in m.not_available if part not in covered]
    if modelled:
        none = "nothing: every figure is modelled"
    else:
        none = "nothing: " + ("the server gave no figure" if m.source == "api"
                              else "no meter here could be read")
    lines = [" measured: " + (", ".join(measured) if measured else none)]
    if modelled:
        lines.append(" modelled (an estimate, not a measurement): "
                     + "; ".join(f"{p.name} ({p.method.split(';')[0]})" for p in modelled))
    names = ", ".join("everything" if x == "all" else LABELS.get(x, x) for x in dict.fromkeys(missing))
    lines.append(" not available: " + (names or "nothing"))
    return lines


def steps_table(m: Measurement) -> list[str]:
    """One line per step: duration, energy, mean power, share of the total."""
    head = f" {'step':<24} {'duration':>12} {'energy':>14} {'mean power':>12} {'share':>7}  provenance"
    lines = [head, " " + "-" * (len(head) - 1)]
    for s in m.steps:
        share = f"{s.joules / m.joules:.1%}" if s.joules is not None and m.joules else "-"
        lines.append(f" {s.name[:24]:<24} {s.duration_s:>10,.3f} s {joules(s.joules):>14} "
                     f"{watts(s.mean_power_w):>12} {share:>7}  {s.provenance}")
    return lines
