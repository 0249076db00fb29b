"""Durations as the configuration and the API write them: a number and a unit (``500ms``, ``90d``, ``2y``).

One parser for both, in a module of its own: the store's retention rules need it without importing
the API package (which loads FastAPI).  Each caller says which units it takes and raises its own
error, naming its parameter or key: the API keeps to ms..w (a year is no query step), retention
rules also take ``min`` and ``y``.
"""

from __future__ import annotations

import re

UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000, "y": 365 * 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def duration_ms(text: str | None, units=UNITS_MS) -> int | None:
    """The milliseconds ``text`` says (rounded; may be 0), None when it is not a number and one of
    ``units`` (names of :data:`UNITS_MS`)."""
    m = _DURATION.match(text or "")
    if m is None or m[2] not in units:
        return None
    return round(float(m[1]) * UNITS_MS[m[2]])
