"""Convert an OpenStack Kwapi (or kwapi-g5k) ``drivers.conf`` into a wattsight TOML file.

A Kwapi ``drivers.conf`` is an INI file: ``[DEFAULT]`` holds ``probes_endpoint``,
``metering_secret``, ``enable_signing``, ``check_drivers_interval``, ``log_file``; every
other section is one driver thread::

    [griffon-pdu1]
    probes = ['lyon.griffon-pdu1.1', None, 'lyon.griffon-pdu1.3']   # one id per channel
    probes_names = ['lyon.griffon-1', None, ['lyon.griffon-3', 'lyon.griffon-4']]
    driver = Snmp                                                    # Kwapi class name
    data_type = {'name': 'power', 'type': 'Gauge', 'unit': 'W'}
    parameters = {'ip': 'griffon-pdu1', 'oid': '1.3.6...', 'protocol': '1', 'community': 'public'}

``None`` marks a channel nobody reads (an empty outlet); ``probes_names`` gives the nodes
each channel feeds (a list for a shared outlet).  The values are Python literals: they are
read with :func:`ast.literal_eval` only.  Nothing is dropped silently: whatever has no
wattsight equivalent is written out as a TOML comment.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass, field

import tomli_w

from . import plugins
from .errors import ConfigError, SampleError
from .sample import check_probe_id

#: Kwapi class name (lower case) -> (wattsight driver type, {kwapi parameter: wattsight key}, fixed keys).
DRIVERS: dict[str, tuple[str, dict[str, str], dict]] = {
    "dummy": ("dummy", {"min": "min", "max": "max"}, {}),
    "dummywatts": ("dummy", {"min": "min", "max": "max"}, {}),
    "dummynet": ("dummy", {"min": "min", "max": "max"}, {}),
    "ipmi": ("ipmi", {"host": "host", "username": "username", "password": "password",
                      "interface": "interface", "sensor": "sensor"}, {}),
    "snmp": ("snmp", {"ip": "host", "community": "community", "protocol": "version", "oid": "oid",
                      "user": "user"}, {}),
    "snmpin": ("snmp", {"ip": "host", "community": "community", "protocol": "version", "oid": "oid",
                        "user": "user"}, {}),
    "snmpout": ("snmp", {"ip": "host", "community": "community", "protocol": "version", "oid": "oid",
                         "user": "user"}, {}),
    "raritan": ("snmp", {"ip": "host", "user": "user"},
                {"version": "3", "oid": "1.3.6.1.4.1.13742.4.1.2.2.1.7"}),
    "eaton": ("snmp", {"ip": "host", "user": "user", "community": "community"},
              {"oid": "1.3.6.1.4.1.534.6.6.7.6.5.1.3"}),
    "wattsup": ("serial", {"device": "device"}, {"protocol": "wattsup"}),
    "json_url": ("http", {"url": "url"}, {}),
}
#: Numeric wattsight keys (Kwapi often writes numbers as strings: {'min': '10'}).
NUMBERS = {"min", "max", "period"}
#: Kwapi data_type names -> wattsight metrics.
METRICS = {"power": "power", "energy": "energy", "network_in": "network_in", "network_out": "network_out",
           "switch.port.receive.bytes": "network_in", "switch.port.transmit.bytes": "network_out"}
_LITERAL = "a Python literal, e.g. ['lyon.node-1', 'lyon.node-2']"


@dataclass
class _Section:
    name: str
    line: int
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)


def parse_ini(text: str, path: str) -> list[_Section]:
    """The sections of an oslo-style INI text, with the line of each header and key."""
    sections = [_Section("DEFAULT", 1)]
    last = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if raw[0] in " \t" and last is not None:  # a continuation line
            value, at = sections[-1].entries[last]
            sections[-1].entries[last] = (value + " " + line, at)
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append(_Section(line[1:-1].strip(), n))
            last = None
            continue
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*[=:]\s*(.*)$", line)
        if not m:
            raise ConfigError("not a 'key = value' line nor a [section]", file=path, line=n,
                              hint="Kwapi drivers.conf is an INI file")
        last = m.group(1)
        sections[-1].entries.setdefault(last, (m.group(2), n))  # oslo keeps the first value
    return [s for s in sections if s.name != "DEFAULT" or s.entries] or sections[:1]


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def _literal(sec: _Section, key: str, path: str, kind: type, required: bool = True):
    if key not in sec.entries:
        if required:
            raise ConfigError("missing", file=path, line=sec.line, key=f"[{sec.name}] {key}",
                              expected=_LITERAL)
        return None
    text, line = sec.entries[key]
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise ConfigError(f"{text.strip()!r} cannot be read", file=path, line=line, key=f"[{sec.name}] {key}",
                          expected=_LITERAL) from None
    if not isinstance(value, kind):
        what = "list" if isinstance(kind, tuple) else kind.__name__
        raise ConfigError(f"{value!r} is not a {what}", file=path, line=line, key=f"[{sec.name}] {key}",
                          expected=_LITERAL)
    return value


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value) -> str:
    if isinstance(value, (list, tuple)):  # on one line, as people write them
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


def _kv(key: str, value) -> str:
    return f"{_toml_key(key)} = {_value(value)}"


@dataclass
class _Driver:
    """One converted section: its TOML lines and the probe metadata it contributes."""

    lines: list[str]
    nodes: dict[str, list[str]]


def _channels(sec: _Section, path: str) -> tuple[list[tuple[str, list[str], int]], list[int]]:
    """(probe id, nodes fed, 1-based position) of every channel read, and the positions skipped."""
    probes = _literal(sec, "probes", path, (list, tuple))
    names = _literal(sec, "probes_names", path, (list, tuple), required=False)
    line = sec.entries["probes"][1]
    if names is not None and len(names) != len(probes):
        raise ConfigError(f"probes_names has {len(names)} entries for {len(probes)} probes", file=path,
                          line=sec.entries["probes_names"][1], key=f"[{sec.name}] probes_names",
                          expected="one entry per probe (None for an empty outlet)")
    out, skipped = [], []
    for i, probe in enumerate(probes):
        fed = names[i] if names is not None else None
        if isinstance(probe, (list, tuple)):  # one channel published under several ids
            probe, fed = (probe[0] if probe else None), (fed or list(probe))
        if probe is None:
            skipped.append(i + 1)
            continue
        fed = [fed] if isinstance(fed, str) else [f for f in (fed or []) if f]
        try:
            for pid in [probe, *fed]:
                check_probe_id(str(pid))
        except SampleError as exc:
            raise ConfigError(str(exc), file=path, line=line, key=f"[{sec.name}] probes") from None
        out.append((str(probe), [str(f) for f in fed if f != probe], i + 1))
    # Kwapi summed channels listed under one id (a node with two PSUs); wattsight keeps one probe per
    # channel, "<id>.<position>", and sums them per node.
    twice = {p for p, n in Counter(c[0] for c in out).items() if n > 1}
    out = [(f"{p}.{pos}", fed or [p], pos) if p in twice else (p, fed, pos) for p, fed, pos in out]
    return out, skipped


def _convert(sec: _Section, path: str, known: list[str], seen: dict) -> _Driver:
    if "driver" not in sec.entries:
        raise ConfigError("missing", file=path, line=sec.line, key=f"[{sec.name}] driver",
                          expected="a Kwapi driver class, e.g. Snmp, Ipmi, Wattsup, Json_url, Dummy")
    kwapi = _unquote(sec.entries["driver"][0])
    wtype, mapping, fixed = DRIVERS.get(kwapi.lower(), (kwapi.lower(), {}, {}))
    params = _literal(sec, "parameters", path, dict, required=False) or {}
    data_type = _literal(sec, "data_type", path, dict, required=False) or {}
    channels, skipped = _channels(sec, path)
    lines = [f"\n[drivers.{_toml_key(sec.name)}]", f"# from Kwapi [{sec.name}], driver {kwapi}"
             + (f", data_type {data_type}" if data_type else "")]
    if wtype not in known:
        lines.append(f"# the {wtype!r} driver comes in a later release of wattsight; "
                     "until then `wattsight config check` refuses this section")
    lines.append(_kv("type", wtype))
    ids = [p for p, _, _ in channels]  # full ids: a name with a dot is taken as "<site>.<name>"
    if skipped:
        positions = ", ".join(str(c[2]) for c in channels)
        lines.append(f"# Kwapi channel positions (1-based) of these probes: {positions}"
                     f"; skipped (None, not read): {', '.join(map(str, skipped))}")
    lines.append(_kv("probes", ids))
    metric = METRICS.get(str(data_type.get("name", "power")))
    if metric is None:
        lines.append(f"# Kwapi metric {data_type.get('name')!r} has no wattsight equivalent yet")
    elif metric != "power" and wtype == "dummy":  # the dummy's "network" gives both directions
        lines.append(_kv("metrics", ["network" if metric.startswith("network") else metric]))
        if metric.startswith("network") and tuple(ids) in seen:
            first = seen[tuple(ids)]
            lines.append(f"# the dummy's network metric already gives both directions in [drivers.{first}]")
            lines.append(_kv("enabled", False))
        seen.setdefault(tuple(ids), sec.name)
    elif metric != "power":
        lines.append(_kv("metrics", [metric]))
    rest = {}
    for key, value in {**fixed, **params}.items():
        target = "period" if key == "resolution" else mapping.get(key) or (key if key in fixed else None)
        if target is None:
            rest[key] = value
            continue
        try:
            value = float(value) if target in NUMBERS else str(value)
        except ValueError:
            raise ConfigError(f"{key} = {value!r} is not a number", file=path,
                              line=sec.entries["parameters"][1], key=f"[{sec.name}] parameters") from None
        lines.append(_kv(target, value))
    if rest:
        lines.append("# Kwapi parameters without a wattsight equivalent: "
                     + ", ".join(f"{k} = {v!r}" for k, v in rest.items()))
    return _Driver(lines, {p: fed for p, fed, _ in channels})


def _header(default: _Section, path: str, site: str) -> list[str]:
    entries = {k: _unquote(v) for k, (v, _) in default.entries.items()}
    out = [f"# Converted from the Kwapi drivers.conf {path} by `wattsight config import-kwapi`.",
           "# Review it, then run `wattsight config check` on it.", _kv("site", site), "", "[bus]"]
    if "probes_endpoint" in entries:
        out.append(f"# Kwapi published on {entries.pop('probes_endpoint')}; wattsight uses its own endpoint")
    secret = entries.pop("metering_secret", None)
    if entries.get("enable_signing", "true").lower() in ("false", "0", "no"):
        out.append("# Kwapi had enable_signing = false: wattsight always signs its messages")
    entries.pop("enable_signing", None)
    if secret:
        out += ["# from Kwapi metering_secret; better: put it in a file readable by wattsight only",
                "# and set secret_file = \"/etc/wattsight/bus.key\" instead", _kv("secret", secret)]
    else:
        out += ["# head -c 32 /dev/urandom | base64 > /etc/wattsight/bus.key",
                "# chmod 600 /etc/wattsight/bus.key",
                'secret_file = "/etc/wattsight/bus.key"']
    if entries:
        out.append("# Kwapi settings without a wattsight equivalent (its runner restarts crashed drivers): "
                   + ", ".join(f"{k} = {v!r}" for k, v in entries.items()))
    return out


def import_kwapi(text: str, path: str) -> str:
    """The wattsight TOML equivalent of the Kwapi ``drivers.conf`` ``text`` read from ``path``."""
    sections = parse_ini(text, path)
    default = next((s for s in sections if s.name == "DEFAULT"), _Section("DEFAULT", 1))
    drivers = [s for s in sections if s.name != "DEFAULT"]
    ids = []
    for sec in drivers:
        ids += [c[0] for c in _channels(sec, path)[0]]
    sites = Counter(p.split(".", 1)[0] for p in ids)
    site = sites.most_common(1)[0][0] if sites else "local"
    known = plugins.names()
    seen: dict[tuple, str] = {}  # dummy network probes already converted -> their section
    converted = [_convert(sec, path, known, seen) for sec in drivers]
    out = _header(default, path, site)
    nodes: dict[str, list[str]] = {}
    for d in converted:
        out += d.lines
        for probe, fed in d.nodes.items():
            nodes.setdefault(probe, [])
            nodes[probe] += [f for f in fed if f not in nodes[probe]]
    for probe, fed in nodes.items():
        if fed:
            out += [f"\n[probes.{_toml_key(probe)}]", _kv("nodes", fed)]
    return "\n".join(out) + "\n"
