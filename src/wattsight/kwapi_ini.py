"""Reading a Kwapi ``drivers.conf``: its INI sections, their Python literals and their channels.

The Kwapi side of ``wattsight config import-kwapi`` (:mod:`wattsight.kwapi_import`): what
Kwapi's driver manager read, and nothing of wattsight.  The values are Python literals, read
with :func:`ast.literal_eval` only, as Kwapi's ``driver_manager.load_all_drivers`` did.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field

from .errors import ConfigError, SampleError
from .sample import check_probe_id

_LITERAL = "a Python literal, e.g. ['lyon.node-1', 'lyon.node-2']"


@dataclass
class IniSection:
    """One ``[section]`` of the file: its header line, its keys (value, line) and its raw text."""

    name: str
    line: int
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)
    raw: list[str] = field(default_factory=list)


def parse_ini(text: str, path: str) -> list[IniSection]:
    """The sections of an oslo-style INI text, with the line of each header and key."""
    sections = [IniSection("DEFAULT", 1)]
    last = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            sections.append(IniSection(line[1:-1].strip(), n, raw=[raw]))
            last = None
            continue
        sections[-1].raw.append(raw)
        if not line or line[0] in "#;":
            continue
        if raw[0] in " \t" and last is not None:  # a continuation line
            value, at = sections[-1].entries[last]
            sections[-1].entries[last] = (value + " " + line, at)
            continue
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*[=:]\s*(.*)$", line)
        if not m:
            raise ConfigError("not a 'key = value' line nor a [section]", file=path, line=n,
                              hint="Kwapi drivers.conf is an INI file")
        last = m.group(1)
        sections[-1].entries.setdefault(last, (m.group(2), n))  # oslo keeps the first value
    for sec in sections:  # the blank lines and comments before the next header belong to it
        while sec.raw and not sec.raw[-1].strip() or sec.raw and sec.raw[-1].lstrip()[:1] in ("#", ";"):
            sec.raw.pop()
    return [s for s in sections if s.name != "DEFAULT" or s.entries] or sections[:1]


def unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def literal(sec: IniSection, key: str, path: str, kind: type | tuple, required: bool = True):
    """The Python literal of ``key`` (a ConfigError naming the line if it is not a ``kind``)."""
    if key not in sec.entries:
        if required:
            raise ConfigError("missing", file=path, line=sec.line, key=f"[{sec.name}] {key}", expected=_LITERAL)
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


@dataclass
class Channel:
    """One value Kwapi read and published: its probe id, the nodes it feeds, its 1-based position."""

    probe: str
    nodes: list[str]
    position: int
    #: The first entry of its ``probes_names`` item, as Kwapi's Json_url driver used it (or None).
    name: str | None = None


@dataclass
class KwapiSection:
    """A Kwapi driver section as Kwapi's driver manager read it."""

    ini: IniSection
    path: str
    driver: str
    params: dict
    data_type: dict
    channels: list[Channel]
    skipped: list[int]
    has_names: bool

    @property
    def name(self) -> str:
        return self.ini.name

    def where(self, key: str) -> dict:
        """file, line and key of ``key`` for a ConfigError."""
        line = self.ini.entries.get(key, ("", self.ini.line))[1]
        return {"file": self.path, "line": line, "key": f"[{self.name}] {key}"}


def read_section(sec: IniSection, path: str) -> KwapiSection:
    """What Kwapi read from ``sec``: driver class, parameters, data_type and channels."""
    if "driver" not in sec.entries:
        raise ConfigError("missing", file=path, line=sec.line, key=f"[{sec.name}] driver",
                          expected="a Kwapi driver class, e.g. Snmp, Ipmi, Wattsup, Json_url, Dummy")
    params = literal(sec, "parameters", path, dict, required=False) or {}
    data_type = literal(sec, "data_type", path, dict, required=False) or {}
    channels, skipped = _channels(sec, path)
    return KwapiSection(sec, path, unquote(sec.entries["driver"][0]), params, data_type, channels, skipped,
                        "probes_names" in sec.entries)


def _first(item) -> str | None:
    if isinstance(item, (list, tuple)):
        item = item[0] if item else None
    return str(item) if item else None


def _channels(sec: IniSection, path: str) -> tuple[list[Channel], list[int]]:
    """Every channel read, and the positions skipped (None: an empty outlet or port)."""
    probes = literal(sec, "probes", path, (list, tuple))
    names = literal(sec, "probes_names", path, (list, tuple), required=False)
    line = sec.entries["probes"][1]
    if names is not None and len(names) != len(probes):
        raise ConfigError(f"probes_names has {len(names)} entries for {len(probes)} probes", file=path,
                          line=sec.entries["probes_names"][1], key=f"[{sec.name}] probes_names",
                          expected="one entry per probe (None for an empty outlet)")
    out, skipped = [], []
    for i, probe in enumerate(probes):
        fed = names[i] if names is not None else None
        name = _first(fed)
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
        out.append(Channel(str(probe), [str(f) for f in fed if f != probe], i + 1, name))
    # Kwapi summed channels listed under one id (a node with two PSUs); wattsight keeps one probe per
    # channel, "<id>.<position>", and sums them per node.
    twice = {p for p, n in Counter(c.probe for c in out).items() if n > 1}
    for c in out:
        if c.probe in twice:
            c.probe, c.nodes = f"{c.probe}.{c.position}", c.nodes or [c.probe]
    return out, skipped
