"""What a write to a recording may do: pure checks on the stored recording and the caller's times.

Times are the caller's (int ms since the epoch): a step starts at the time its caller says,
not when the request arrives.  A check returns whether the write changes anything (an
identical retry does not: same name and time within :data:`SAME_MS`), or raises
:class:`~.errors.Conflict` (409) or :class:`~.errors.Invalid` (422) with what to do.
"""

from __future__ import annotations

from ..consumers.api.params import iso
from .errors import Conflict, Invalid

#: Two times this close are the same time (a retried request re-sends the same float seconds).
SAME_MS = 1


def _same(a: int | None, b: int | None) -> bool:
    return a is not None and b is not None and abs(int(a) - int(b)) <= SAME_MS


def check_new_step(rec: dict, name: str, t_ms: int) -> dict | None:
    """None if step ``name`` may start at ``t_ms``; the stored step if this is an identical retry."""
    steps = rec["steps"]
    for s in steps:
        if s["name"] == name:
            if _same(s["start_ms"], t_ms):
                return s
            raise Conflict(f"recording {rec['id']!r} has a step named {name!r} already (started at "
                           f"{iso(s['start_ms'])}); step names are unique in a recording: give this one "
                           f"another name, e.g. {name + '-2'!r}")
    if rec["end_ms"] is not None:
        raise Conflict(f"recording {rec['id']!r} was stopped at {iso(rec['end_ms'])}: it takes no more "
                       "steps; start a new recording (POST /api/v1/recordings)")
    if t_ms < rec["start_ms"]:
        raise Invalid(f"step {name!r} at {iso(t_ms)} is before the start of recording {rec['id']!r} "
                      f"({iso(rec['start_ms'])}); step times are the caller's clock: send the time the step "
                      "began, in epoch seconds")
    if steps and t_ms < steps[-1]["start_ms"]:
        last = steps[-1]
        raise Invalid(f"step {name!r} at {iso(t_ms)} is before the start of the latest step {last['name']!r} "
                      f"({iso(last['start_ms'])}); steps are posted in the order they begin")
    return None


def check_step_end(step: dict, t_ms: int) -> bool:
    """Whether ending ``step`` at ``t_ms`` changes it (False: the same explicit end again).

    A step closed by the next step or by the stop may be ended earlier explicitly (a late
    ``end`` call); never later than that, and an explicit end is not moved.
    """
    name = step["name"]
    if t_ms < step["start_ms"]:
        raise Invalid(f"the end of step {name!r} ({iso(t_ms)}) is before its start ({iso(step['start_ms'])})")
    if step["end_ms"] is None:
        return True
    if step["end_explicit"]:
        if _same(step["end_ms"], t_ms):
            return False
        raise Conflict(f"step {name!r} was ended already at {iso(step['end_ms'])}; a step ends once")
    if t_ms > step["end_ms"]:
        raise Invalid(f"the end of step {name!r} ({iso(t_ms)}) is after the time it was closed by the next "
                      f"step or the recording's stop ({iso(step['end_ms'])}); end it earlier or not at all")
    return True


def check_stop(rec: dict, t_ms: int) -> bool:
    """Whether stopping ``rec`` at ``t_ms`` changes it (False: stopped already at that time)."""
    if rec["end_ms"] is not None:
        if _same(rec["end_ms"], t_ms):
            return False
        raise Conflict(f"recording {rec['id']!r} was stopped already at {iso(rec['end_ms'])}")
    if t_ms < rec["start_ms"]:
        raise Invalid(f"the stop time {iso(t_ms)} is before the recording's start ({iso(rec['start_ms'])})")
    steps = rec["steps"]
    if steps and t_ms < steps[-1]["start_ms"]:
        raise Invalid(f"the stop time {iso(t_ms)} is before the start of step {steps[-1]['name']!r} "
                      f"({iso(steps[-1]['start_ms'])})")
    return True


def clock_warnings(offset_ms: int | None, max_skew_s: float, what: str) -> list[str]:
    """A warning when the caller's clock differs from the server's by more than ``max_skew_s``."""
    if offset_ms is None or abs(offset_ms) <= max_skew_s * 1000:
        return []
    way = "behind" if offset_ms > 0 else "ahead of"
    text = (f"{what}: the caller's clock is {abs(offset_ms) / 1000:.3f} s {way} the server's (more than "
            f"[recorder] max_clock_skew = {max_skew_s:g} s); times are taken as the caller sent them: "
            "synchronise the clocks (NTP, chrony) for step times that match the meters'")
    return [text]


def future_warnings(t_ms: int, server_ms: int, max_skew_s: float, what: str) -> list[str]:
    """A warning when a time lies further in the future (server clock) than the skew allowed."""
    ahead = t_ms - server_ms
    if ahead <= max_skew_s * 1000:
        return []
    text = (f"{what} at {iso(t_ms)} is {ahead / 1000:.3f} s in the server's future; its energy will show "
            "low coverage until the meters get there")
    return [text]
