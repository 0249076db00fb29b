"""What smart plugs publish over MQTT, read as SI values: Shelly Gen2+, Tasmota, any JSON by paths.

Pure functions of a payload: each returns a :class:`Reading` (power in W, energy in J, online
or not, the plug's own timestamp if it gives one), ``None`` for a message that says nothing
about the plug (a Shelly notification about another component), or raises
:class:`PayloadError` saying which path was missing or wrong.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

WH = 3600.0          # J per Wh
KWH = 3_600_000.0    # J per kWh
MAX_POWER = 1e6      # W; a plug reading more is broken, not busy


class PayloadError(ValueError):
    """A payload that cannot be read; the message names the path and what was expected."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message says about one plug, in SI units; None: not in this message."""

    power: float | None = None    # W
    energy: float | None = None   # J, a counter that only resets
    up: int | None = None         # 1 online, 0 offline
    time: float | None = None     # s since the epoch: the plug's own timestamp


def load(payload: bytes) -> object:
    """The JSON document of a payload."""
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not JSON ({exc}): {_show(payload)}") from None


_STEP = re.compile(r"[^.\[\]]+|\[\d+\]")


def lookup(doc: object, path: str) -> object:
    """The value at a dotted ``path`` (``ENERGY.Power``, ``a.b[0]`` or ``a.b.0``); PayloadError if absent."""
    value = doc
    for step in _STEP.findall(path):
        key: str | int = int(step[1:-1]) if step.startswith("[") else step
        if isinstance(value, list) and isinstance(key, str) and key.isdigit():
            key = int(key)
        try:
            value = value[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            raise PayloadError(f"no {path!r} in the payload") from None
    return value


def number(value: object, path: str) -> float:
    """``value`` as a finite float (JSON numbers, or numbers written as strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PayloadError(f"{path!r} is {value!r}, not a number")
    try:
        out = float(value)
    except ValueError:
        raise PayloadError(f"{path!r} is {value!r}, not a number") from None
    if not math.isfinite(out):
        raise PayloadError(f"{path!r} is {value!r}, not a finite number")
    return out


def checked(power: float | None, energy: float | None, where: str) -> tuple[float | None, float | None]:
    """Refuse readings no plug can give: power beyond +-1 MW, negative energy."""
    if power is not None and abs(power) > MAX_POWER:
        raise PayloadError(f"power {power:g} W out of range (|power| <= {MAX_POWER:g} W) in {where}")
    if energy is not None and energy < 0:
        raise PayloadError(f"energy {energy:g} J is negative in {where}")
    return power, energy


# -- Shelly Gen2+ ---------------------------------------------------------------------------------
def _shelly_component(status: dict, where: str) -> Reading:
    """Power and energy of a Switch/PM1 component status (``apower`` W, ``aenergy.total`` Wh)."""
    power = number(status["apower"], f"{where}.apower") if "apower" in status else None
    energy = None
    if isinstance(status.get("aenergy"), dict) and "total" in status["aenergy"]:
        energy = number(status["aenergy"]["total"], f"{where}.aenergy.total") * WH
    return Reading(*checked(power, energy, where))


def shelly_status(payload: bytes, component: str) -> Reading:
    """``<prefix>/status/<component>``: the component's full status."""
    doc = load(payload)
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON object, got {_show(payload)}")
    reading = _shelly_component(doc, component)
    if reading.power is None and reading.energy is None:
        raise PayloadError(f"no 'apower' nor 'aenergy.total' in the status of {component} "
                           "(a component without metering? try pm1:0)")
    return reading


def shelly_rpc(payload: bytes, component: str) -> Reading | None:
    """``<prefix>/events/rpc``: NotifyStatus / NotifyFullStatus deltas; None if not about ``component``."""
    doc = load(payload)
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON-RPC notification, got {_show(payload)}")
    if doc.get("method") not in ("NotifyStatus", "NotifyFullStatus"):
        return None  # events (button presses...) carry no reading
    params = doc.get("params")
    if not isinstance(params, dict):
        raise PayloadError("no 'params' object in the notification")
    status = params.get(component)
    if status is None:
        return None  # a delta of another component (wifi, sys...)
    if not isinstance(status, dict):
        raise PayloadError(f"'params.{component}' is {status!r}, not an object")
    reading = _shelly_component(status, f"params.{component}")
    if reading.power is None and reading.energy is None:
        return None  # a delta of other fields (temperature, output...)
    ts = params.get("ts")
    return Reading(reading.power, reading.energy, time=number(ts, "params.ts") if ts is not None else None)


def shelly_online(payload: bytes) -> Reading:
    """``<prefix>/online``: ``true`` or ``false`` (the Shelly's last will)."""
    return Reading(up=_up(payload, {"true": 1, "false": 0}))


# -- Tasmota ----------------------------------------------------------------------------------------
def _pick(value: object, channel: int, path: str) -> float:
    """A Tasmota value: a number, or per-channel arrays (summed for channel 0, else the channel's)."""
    if not isinstance(value, list):
        return number(value, path)
    values = [number(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if channel == 0:
        return sum(values)
    if channel > len(values):
        raise PayloadError(f"{path!r} has {len(values)} channels, not channel {channel}")
    return values[channel - 1]


def tasmota_energy(doc: object, channel: int, root: str = "") -> Reading:
    """``ENERGY.Power`` (W) and ``ENERGY.Total`` (kWh) of a SENSOR (or StatusSNS) object, and ``Time``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("ENERGY"), dict):
        raise PayloadError(f"no '{root}ENERGY' object (is it a plug with power monitoring?)")
    energy = doc["ENERGY"]
    power = _pick(energy["Power"], channel, f"{root}ENERGY.Power") if "Power" in energy else None
    total = _pick(energy["Total"], channel, f"{root}ENERGY.Total") * KWH if "Total" in energy else None
    if power is None and total is None:
        raise PayloadError(f"no '{root}ENERGY.Power' nor '{root}ENERGY.Total'")
    return Reading(*checked(power, total, f"{root}ENERGY"), time=iso_time(doc.get("Time"), f"{root}Time"))


def tasmota_sensor(payload: bytes, channel: int) -> Reading:
    """``tele/<topic>/SENSOR``, every TelePeriod."""
    return tasmota_energy(load(payload), channel)


def tasmota_status(payload: bytes, channel: int) -> Reading:
    """``stat/<topic>/STATUS10`` (or STATUS8): the answer to ``Status 10``, ``{"StatusSNS": {...}}``."""
    doc = load(payload)
    if not isinstance(doc, dict) or "StatusSNS" not in doc:
        raise PayloadError("no 'StatusSNS' object")
    return tasmota_energy(doc["StatusSNS"], channel, "StatusSNS.")


def tasmota_lwt(payload: bytes) -> Reading:
    """``tele/<topic>/LWT``: ``Online`` or ``Offline``."""
    return Reading(up=_up(payload, {"online": 1, "offline": 0}))


# -- any JSON ---------------------------------------------------------------------------------------
def json_values(payload: bytes, *, power_path: str | None, energy_path: str | None, power_scale: float,
                energy_scale: float, time_path: str | None) -> Reading:
    """The values at the configured paths, scaled to W and J; every configured path must be there."""
    doc = load(payload)
    power = number(lookup(doc, power_path), power_path) * power_scale if power_path else None
    energy = number(lookup(doc, energy_path), energy_path) * energy_scale if energy_path else None
    when = None
    if time_path:
        raw = lookup(doc, time_path)
        when = iso_time(raw, time_path) if isinstance(raw, str) else number(raw, time_path)
        if when > 1e11:  # a number that large is in ms
            when /= 1000.0
    return Reading(*checked(power, energy, "the payload"), time=when)


def availability(payload: bytes) -> Reading:
    """An availability topic: ``online``/``offline``, ``true``/``false``, ``1``/``0``, or
    ``{"state": "online"}`` (Zigbee2MQTT)."""
    words = {"online": 1, "offline": 0, "true": 1, "false": 0, "1": 1, "0": 0}
    text = payload.strip()
    if text.startswith(b"{"):
        doc = load(payload)
        state = lookup(doc, "state")
        return Reading(up=_up(str(state).encode(), words))
    return Reading(up=_up(payload, words))


# -- helpers ----------------------------------------------------------------------------------------
def _up(payload: bytes, words: dict[str, int]) -> int:
    text = payload.decode("utf-8", "replace").strip().lower()
    if text not in words:
        raise PayloadError(f"availability {_show(payload)} is none of {sorted(words)}")
    return words[text]


def iso_time(value: object, path: str) -> float | None:
    """An ISO 8601 time as s since the epoch (a time without a zone is read as UTC); None if absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{path!r} is {value!r}, not an ISO 8601 time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{path!r} is {value!r}, not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _show(payload: bytes, limit: int = 60) -> str:
    text = payload[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(payload) > limit else ""))
