"""Parse the API's query parameters: times, durations, steps and lists of names.

Every parser raises :class:`~wattsight.errors.QueryError` with a message that says what
was wrong and what is accepted, which the app turns into a 422 answer.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from ...durations import duration_ms
from ...errors import QueryError

_UNITS = ("ms", "s", "m", "h", "d", "w")
_RELATIVE = re.compile(r"^\s*(?:now)?\s*-\s*(.+)$")
_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
TIME_FORMS = (
    "epoch seconds (1700000000 or 1700000000.5), ISO 8601 (2024-05-01T12:00:00Z, "
    "2024-05-01T14:00:00+02:00, 2024-05-01) or relative to now ('now', '-1h', '-30m', 'now-2d')"
)
DURATION_FORMS = "a number and a unit among ms, s, m, h, d, w (e.g. 500ms, 10s, 1m, 1.5h)"
#: Times the API accepts: 1970-01-01 to 9999-12-31 (what ISO 8601 and int64 ms both hold).
MAX_MS = 253_402_300_799_999


def parse_duration_ms(text: str, *, name: str = "duration") -> int:
    """``"10s"`` -> 10000: a positive duration in milliseconds."""
    ms = duration_ms(text, _UNITS)
    if ms is None:
        raise QueryError(f"{name}={text!r} is not a duration: use {DURATION_FORMS}")
    if ms <= 0:
        raise QueryError(f"{name}={text!r} is not a positive duration (at least 1ms)")
    if ms > MAX_MS:
        raise QueryError(f"{name}={text!r} is longer than any range the API can answer")
    return ms


def parse_time_ms(text: str, now_ms: int, *, name: str = "time") -> int:
    """A point in time in ms since the epoch, from any of :data:`TIME_FORMS`."""
    ms = _time_ms((text or "").strip(), int(now_ms), name)
    if not 0 <= ms <= MAX_MS:
        raise QueryError(f"{name}={text!r} is outside the times the API answers for "
                         "(1970-01-01 to 9999-12-31)")
    return ms


def _time_ms(text: str, now_ms: int, name: str) -> int:
    if not text:
        raise QueryError(f"{name} is empty: use {TIME_FORMS}")
    if text.lower() == "now":
        return now_ms
    rel = _RELATIVE.match(text.lower())
    if rel:
        return now_ms - parse_duration_ms(rel.group(1), name=name)
    if _NUMBER.match(text):
        seconds = float(text)
        if seconds > 1e11:
            raise QueryError(f"{name}={text!r} is too large for epoch seconds (milliseconds given?)")
        return int(round(seconds * 1000))
    return _iso_ms(text, name)


def _iso_ms(text: str, name: str) -> int:
    """An ISO 8601 date or date-time; no zone means UTC."""
    # An unencoded '+' in a URL arrives as a space: "12:00:00 02:00" meant "+02:00".
    fixed = re.sub(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$", r"\1+\2", text)
    try:
        when = datetime.fromisoformat(fixed)
    except ValueError:
        raise QueryError(f"{name}={text!r} is not a time: use {TIME_FORMS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(round(when.timestamp() * 1000))


def parse_range(start: str, end: str, now_ms: int) -> tuple[int, int]:
    """``(start_ms, end_ms)`` from the ``from`` and ``to`` parameters, refusing empty ranges."""
    start_ms = parse_time_ms(start, now_ms, name="from")
    end_ms = parse_time_ms(end, now_ms, name="to")
    if start_ms >= end_ms:
        raise QueryError(
            f"from={start!r} ({iso(start_ms)}) is not before to={end!r} ({iso(end_ms)}): "
            "give a range whose start comes first, e.g. from=-1h&to=now"
        )
    return start_ms, end_ms


def split_names(text: str | None) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (empty items dropped, order kept, no repeats)."""
    out: list[str] = []
    for item in (text or "").split(","):
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def iso(ms: int) -> str:
    """ISO 8601 in UTC with milliseconds: ``2024-05-01T12:00:00.000Z``."""
    when = datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds(ms: int) -> float:
    """Milliseconds since the epoch as float seconds (what JSON answers carry)."""
    return int(ms) / 1000.0


def finite(value) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite (JSON has no such numbers)."""
    value = float(value)
    return value if math.isfinite(value) else None
