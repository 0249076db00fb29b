"""Load and validate the TOML file; errors name file:line and key."""

from __future__ import annotations

import base64
import difflib
import logging
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from . import plugins
from .drivers.base import DriverConfig
from .errors import ConfigError, PluginError, SampleError
from .sample import check_probe_id

log = logging.getLogger(__name__)

_ENDPOINT = re.compile(r"^(ipc://.+|tcp://(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}|inproc://.+)$")
ENDPOINT_FORMS = "'ipc://<path>', 'tcp://<host>:<port>' or 'inproc://<name>'"
_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
KEY_HINT = "create one with `head -c 32 /dev/urandom | base64 > /etc/wattsight/bus.key` and set secret_file"


def runtime_dir() -> Path:
    """Where the default ipc:// endpoint lives (:func:`default` creates it)."""
    if sys.platform.startswith("linux") and not os.environ.get("XDG_RUNTIME_DIR"):
        return Path(f"/tmp/wattsight-{os.getuid()}")  # platformdirs would warn and guess
    return Path(platformdirs.user_runtime_dir("wattsight"))


def user_data_dir() -> Path:
    """The user's wattsight data folder (the default store and bus key live there)."""
    return Path(platformdirs.user_data_dir("wattsight"))


def _relative_to(path: Path, info: ValidationInfo) -> Path:
    """A relative path in a file is taken from the file's folder, not the current one."""
    base = (info.context or {}).get("base")
    path = path.expanduser()
    return base / path if base is not None and not path.is_absolute() else path


def _readable_key(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"the key file {str(path)!r} does not exist; {KEY_HINT}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"the key file {str(path)!r} cannot be read by this user")
    if path.stat().st_mode & 0o077:
        log.warning("%s: the bus key can be read by other users; chmod 600 it", path)
    return path


def check_endpoint(value: str) -> str:
    """``value`` if it is a ZeroMQ endpoint wattsight accepts, else ValueError naming the forms."""
    if not isinstance(value, str) or not _ENDPOINT.match(value):
        raise ValueError(f"{value!r} is not an endpoint; accepted forms: {ENDPOINT_FORMS}")
    if value.startswith("tcp://") and not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"{value!r}: the port must be between 1 and 65535")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusConfig(_Section):
    """[bus]: where drivers publish and consumers subscribe, and the shared signing key."""

    endpoint: str = Field(
        default_factory=lambda: f"ipc://{runtime_dir()}/wattsight-bus",
        description="the endpoint drivers bind and consumers connect to: " + ENDPOINT_FORMS,
    )
    connect: list[str] = Field([], description="extra endpoints consumers also connect to (other sites)")
    secret: str | None = Field(None, description="the HMAC key shared by every part (prefer secret_file)")
    secret_file: Path | None = Field(None, description="a file holding the HMAC key (mode 0600)")
    window: float = Field(300.0, gt=0, description="seconds; messages sent further from now are refused")
    linger: float = Field(0.05, ge=0, description="seconds the publisher gathers samples before sending")
    batch_max: int = Field(50_000, ge=1, description="the most samples in one message")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        return check_endpoint(v)

    @field_validator("connect")
    @classmethod
    def _check_connect(cls, v: list[str]) -> list[str]:
        return [check_endpoint(e) for e in v]

    @field_validator("secret_file")
    @classmethod
    def _check_secret_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else _readable_key(_relative_to(v, info))

    @model_validator(mode="after")
    def _one_secret(self) -> "BusConfig":
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("set either secret or secret_file, not both")
        if self.secret is not None and not self.secret.strip():
            raise ValueError("secret is empty")
        return self


class StoreConfig(_Section):
    """[store]: where samples are kept."""

    backend: Literal["embedded"] = Field("embedded", description="the storage engine")
    path: Path = Field(default_factory=lambda: user_data_dir() / "store", description="the store's folder")
    fsync: bool = Field(False, description="false: survives kill -9; true: also survives power loss")
    flush_interval: float = Field(60.0, gt=0, description="seconds of samples kept in the WAL tail")

    @field_validator("path")
    @classmethod
    def _relative(cls, v: Path, info: ValidationInfo) -> Path:
        return _relative_to(v, info)


class ApiConfig(_Section):
    """[api]: the REST API and web UI."""

    listen: str = Field("127.0.0.1:8080", description="the address the API listens on, as host:port")
    max_points: int = Field(10_000, ge=1, description="the most points per series in one /series answer")
    max_gap: float = Field(5.0, ge=0, description="seconds; longer gaps (or 3 periods) are not integrated")
    price_per_kwh: float = Field(0.0, ge=0, description="the energy price per kWh, for cost figures")
    currency: str = Field("EUR", min_length=1, description="the currency of price_per_kwh")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        m = _LISTEN.match(v)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(f"{v!r} is not host:port (e.g. '127.0.0.1:8080' or '[::1]:8080')")
        return v


class ProbeConfig(_Section):
    """[probes."<site>.<name>"]: metadata of one probe."""

    aliases: list[str] = Field([], description="other names the probe answers to")
    nodes: list[str] = Field([], description="the nodes this probe feeds (several: a shared outlet)")
    description: str = Field("", description="free text shown in the API and UI")


# -- locating keys in the text (tomllib gives no line numbers) ------------------------------
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(s: str, i: int) -> tuple[list[str], int]:
    """Parse a dotted TOML key at ``s[i:]``; returns its parts and the index after it."""
    parts: list[str] = []
    while True:
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] in "\"'":
            q, j = s[i], i + 1
            while j < len(s) and s[j] != q:
                j += 2 if q == '"' and s[j] == "\\" else 1
            parts.append(s[i + 1:j].replace('\\"', '"'))
            i = j + 1
        else:
            m = _BARE.match(s, i)
            if not m:
                return parts, i
            parts.append(m.group())
            i = m.end()
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return parts, i


def _scan_inline(s: str, i: int, prefix: tuple, lineno: int, lines: dict) -> None:
    """Record the keys of an inline table ``{a = 1, b = {c = 2}}`` whose body starts at ``s[i]``."""
    stack, expect_key, depth = [prefix], True, 0
    while i < len(s) and stack:
        c = s[i]
        if c in " \t" or (expect_key and c == ","):
            i += 1
        elif c == "}" and not depth:
            stack.pop()
            expect_key, i = False, i + 1
        elif expect_key:
            parts, i = _parse_key(s, i)
            if not parts or i >= len(s) or s[i] != "=":
                return
            key = stack[-1] + tuple(parts)
            lines.setdefault(key, lineno)
            i += 1
            while i < len(s) and s[i] in " \t":
                i += 1
            expect_key = i < len(s) and s[i] == "{"
            if expect_key:
                stack.append(key)
                i += 1
        elif c in "\"'":
            j = s.find(c, i + 1)
            while c == '"' and j > 0 and s[j - 1] == "\\":
                j = s.find(c, j + 1)
            i = len(s) if j < 0 else j + 1
        else:
            depth += (c == "[") - (c == "]")
            expect_key = c == "," and not depth
            i += 1


def _record(lines: dict, key: tuple, n: int) -> None:
    for end in range(1, len(key) + 1):  # [a.b.c] also defines a and a.b
        lines.setdefault(key[:end], n)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each dotted key (and table) of a TOML text to the 1-based line defining it."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    counts: dict[tuple[str, ...], int] = {}
    ml = None  # the closing delimiter of a multi-line string we are inside
    depth = 0  # bracket depth of a multi-line array
    for n, line in enumerate(text.splitlines(), 1):
        if ml:
            if ml in line:
                ml = None
            continue
        s = line.strip()
        if depth:
            depth = max(0, depth + s.count("[") - s.count("]"))
            continue
        if not s or s.startswith("#"):
            continue
        if s.startswith("["):
            double = s.startswith("[[")
            parts, _ = _parse_key(s, 2 if double else 1)
            table = tuple(parts)
            if double:
                counts[table] = counts.get(table, -1) + 1
                table += (str(counts[table]),)
            _record(lines, table, n)
            continue
        parts, i = _parse_key(s, 0)
        if not parts or i >= len(s) or s[i] != "=":
            continue
        key = table + tuple(parts)
        _record(lines, key, n)
        value = s[i + 1:].lstrip()
        for delim in ('"""', "'''"):
            if value.startswith(delim) and value.count(delim) == 1:
                ml = delim
        if value.startswith("{"):
            _scan_inline(value, 1, key, n, lines)
        elif value.startswith("["):
            depth = max(0, value.split("#")[0].count("[") - value.split("#")[0].count("]"))
    return lines


def locate(lines: dict[tuple[str, ...], int], loc: tuple) -> int | None:
    """The line of ``loc``, or of its nearest enclosing key or table that is in the text."""
    loc = tuple(str(p) for p in loc)
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


# -- validation, with pydantic's errors put in plain words ------------------------------------
_KIND = {
    "float": "a number", "int": "a whole number", "bool": "true or false", "string": "a string in quotes",
    "list": "a list, e.g. [\"a\", \"b\"]", "dict": "a table", "model": "a table", "path": "a path in quotes",
}
_BOUND = {"greater_than": "more than", "greater_than_equal": "at least", "less_than": "less than",
          "less_than_equal": "at most"}


@dataclass(frozen=True)
class Issue:
    """One problem found in a file: where (dotted key path), what, what was expected, a hint."""

    loc: tuple
    problem: str
    expected: str | None = None
    hint: str | None = None


def _described(expected: str, desc: str | None) -> str:
    if desc and expected == "a number" and desc.startswith("seconds"):
        return "a number of seconds" + desc[len("seconds"):].replace(";", ":", 1)
    return f"{expected}: {desc}" if desc else expected


def _translate(err: dict, model: type[BaseModel], base: tuple) -> Issue:
    """One pydantic error as an :class:`Issue` in plain words."""
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    info = model.model_fields.get(str(loc[0])) if loc else None
    desc = info.description if info else None
    loc = base + loc
    if kind == "extra_forbidden":
        known = list(model.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        return Issue(loc, "unknown key", "one of " + ", ".join(known),
                     f"did you mean {close[0]!r}?" if close else None)
    if kind == "missing":
        return Issue(loc, "missing", desc)
    if kind == "value_error":
        return Issue(loc, str(ctx.get("error", err["msg"])))
    if kind == "literal_error":
        return Issue(loc, f"{err['input']!r} is not allowed", "one of " + str(ctx.get("expected")))
    if kind in _BOUND:
        bound = next(iter(ctx.values()))
        return Issue(loc, f"{err['input']!r} is out of range", _described(f"{_BOUND[kind]} {bound}", desc))
    if kind in ("string_too_short", "too_short"):
        return Issue(loc, "is empty", _described("a value that is not empty", desc))
    family = kind.split("_")[0]
    if family in _KIND:
        return Issue(loc, f"{err['input']!r} is not {_KIND[family]}", _described(_KIND[family], desc))
    return Issue(loc, err["msg"], desc)


def _validate(model: type[BaseModel], data, base: tuple, issues: list, context: dict):
    """``model`` validated from ``data``, or None with its problems appended to ``issues``."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        issues.extend(_translate(e, model, base) for e in exc.errors(include_url=False))
        return None


def _driver(name: str, section, issues: list, context: dict):
    base = ("drivers", name)
    if not isinstance(section, dict):
        issues.append(Issue(base, "is not a table", f"[drivers.{name}] with a type key"))
        return None
    known = plugins.names()
    if not isinstance(section.get("type"), str):
        problem = "missing" if "type" not in section else f"{section['type']!r} is not a string"
        issues.append(Issue(base + ("type",), problem, "the driver's name, one of " + ", ".join(known)))
        return None
    try:
        cls = plugins.load(section["type"])
    except PluginError as exc:
        close = difflib.get_close_matches(str(section["type"]), known, n=1)
        if section["type"] in known:
            issues.append(Issue(base + ("type",), str(exc), hint="reinstall wattsight or the plugin package"))
        else:
            issues.append(Issue(base + ("type",), f"unknown driver {section['type']!r}",
                                "one of " + ", ".join(known),
                                f"did you mean {close[0]!r}?" if close else "`wattsight plugins` lists them"))
        return None
    return _validate(cls.Config, section, base, issues, context)


def _probe(pid: str, section, issues: list, context: dict):
    try:
        check_probe_id(pid)
    except SampleError as exc:
        hint = None
        if isinstance(section, dict) and section and all(isinstance(v, dict) for v in section.values()):
            inner = next(iter(section))
            hint = f'quote the id, it contains a dot: [probes."{pid}.{inner}"]'
        issues.append(Issue(("probes", pid), str(exc), hint=hint))
        return None
    return _validate(ProbeConfig, section, ("probes", pid), issues, context)


def _consumer(name: str, section, issues: list) -> dict | None:
    if not isinstance(section, dict) or not isinstance(section.get("type"), str):
        issues.append(Issue(("consumers", name, "type"), "missing", "the consumer's name, as a string"))
        return None
    return dict(section)


def _dotted(loc: tuple) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            p = p if _BARE.fullmatch(p) else f'"{p}"'
            out += f".{p}" if out else p
    return out


def _error(issues: list[Issue], file: str, text: str) -> ConfigError:
    """One ConfigError for all ``issues``: one line each, in file order; ``.errors`` keeps them apart."""
    lines = key_lines(text)
    errs = [ConfigError(i.problem, file=file, line=locate(lines, i.loc), key=_dotted(i.loc),
                        expected=i.expected, hint=i.hint) for i in issues]
    errs.sort(key=lambda e: e.line or 1 << 30)
    first = errs[0]
    combined = ConfigError(first.problem, file=file, line=first.line, key=first.key, expected=first.expected,
                           hint=first.hint)
    combined.args = ("\n".join(str(e) for e in errs),)
    combined.errors = errs
    return combined


_TOP = ("site", "bus", "store", "api", "drivers", "probes", "consumers")
_SITE = re.compile(r"^[A-Za-z0-9_-]+$")


def _table(data: dict, name: str, issues: list) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        issues.append(Issue((name,), f"{value!r} is not a table", f"a [{name}] section"))
        return {}
    return value


def _build(data: dict, text: str, path: str, base: Path | None = None) -> "Config":
    issues: list[Issue] = []
    for key in data:
        if key not in _TOP:
            close = difflib.get_close_matches(key, _TOP, n=1)
            issues.append(Issue((key,), "unknown key", "one of " + ", ".join(_TOP),
                                f"did you mean {close[0]!r}?" if close else None))
    site = data.get("site", "local")
    if not isinstance(site, str) or not _SITE.match(site):
        issues.append(Issue(("site",), f"{site!r} is not a site name",
                            "letters, digits, '-' or '_', e.g. 'lyon'"))
    ctx = {"base": base}
    sections = {name: _validate(model, _table(data, name, issues), (name,), issues, ctx)
                for name, model in (("bus", BusConfig), ("store", StoreConfig), ("api", ApiConfig))}
    bus, raw_bus = sections["bus"], data.get("bus", {})
    if isinstance(raw_bus, dict) and raw_bus.get("secret") is None and raw_bus.get("secret_file") is None:
        issues.append(Issue(("bus", "secret_file"), "missing: the bus has no key to sign its messages",
                            'secret_file = "<path>" (or secret) in [bus]', KEY_HINT))
    drivers = {k: _driver(k, v, issues, ctx) for k, v in _table(data, "drivers", issues).items()}
    probes = {k: _probe(k, v, issues, ctx) for k, v in _table(data, "probes", issues).items()}
    consumers = {k: _consumer(k, v, issues) for k, v in _table(data, "consumers", issues).items()}
    if issues:
        raise _error(issues, path, text)
    return Config(None if path.startswith("<") else Path(path), site, bus, sections["store"], sections["api"],
                  drivers, probes, consumers)


@dataclass(frozen=True)
class Config:
    """A whole validated configuration: every part reads its section from here."""

    path: Path | None = None
    site: str = "local"
    bus: BusConfig = field(default_factory=BusConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    drivers: dict[str, DriverConfig] = field(default_factory=dict)
    probes: dict[str, ProbeConfig] = field(default_factory=dict)
    consumers: dict[str, dict] = field(default_factory=dict)

    def bus_secret(self) -> bytes:
        """The HMAC key of the bus: ``secret``, or the content of ``secret_file`` (whitespace stripped)."""
        file = str(self.path) if self.path else None
        if self.bus.secret is not None:
            return self.bus.secret.encode()
        if self.bus.secret_file is None:
            raise ConfigError("no bus key is set", file=file, key="bus.secret_file", hint=KEY_HINT)
        try:
            key = self.bus.secret_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {str(self.bus.secret_file)!r}: {exc.strerror}", file=file,
                              key="bus.secret_file", hint=KEY_HINT) from exc
        if not key:
            raise ConfigError(f"{str(self.bus.secret_file)!r} is empty", file=file, key="bus.secret_file",
                              hint=KEY_HINT)
        return key


def loads(text: str, path: str | Path = "<string>") -> Config:
    """Parse and validate a TOML text; every problem found is reported in one ConfigError."""
    path = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = str(exc)[: m.start()].strip() if m else str(exc)
        msg = msg[:1].lower() + msg[1:] + (f" at column {m.group(2)}" if m else "")
        raise ConfigError(f"TOML syntax error: {msg}", file=path, line=int(m.group(1)) if m else None,
                          hint="strings need quotes, sections are [name], lists are [\"a\", \"b\"] "
                               "(https://toml.io)") from None
    base = None if path.startswith("<") else Path(path).absolute().parent
    return _build(data, text, path, base)


def load(path: str | Path) -> Config:
    """Read, parse and validate a configuration file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the file: {reason}", file=str(path),
                          hint="`wattsight config sample > wattsight.toml` writes a sample") from None
    return loads(text, path)


def ensure_key(path: Path) -> Path:
    """Create ``path`` (mode 0600, 32 random bytes in base64) unless it exists; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(os.urandom(32)) + b"\n")
    return path


#: The simulated rack of ``wattsight run --demo`` (clearly named: its site is "demo").
DEMO_RACK = {"type": "dummy", "period": 1.0, "count": 8, "prefix": "node-",
             "metrics": ["power", "energy", "network"], "pattern": "walk", "min": 80.0, "max": 250.0,
             "seed": 1}


def default(demo: bool = False, data_dir: Path | None = None) -> Config:
    """The embedded configuration used with no file: local store, ipc bus, a key created on first use."""
    folder = Path(data_dir) if data_dir is not None else user_data_dir()
    key = ensure_key(folder / "bus.key")
    run = runtime_dir()
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    data: dict = {"site": "demo" if demo else "local",
                  "bus": {"endpoint": f"ipc://{run}/wattsight-bus", "secret_file": str(key)},
                  "store": {"path": str(folder / "store")}}
    if demo:
        data["drivers"] = {"rack": dict(DEMO_RACK)}
    return _build(data, "", "<default>")


_SAMPLE_HEAD = '''\
# wattsight configuration: one file for every part (drivers, bus, store, API).
# `wattsight config check FILE` validates it; the comments give each key's default.
# Times are in seconds, power in watts, energy in joules.

# The site: the first part of every probe id this host publishes ("<site>.<name>").
site = "local"

[bus]
# Where drivers publish and consumers subscribe: "ipc://<path>" on one host,
# "tcp://<host>:<port>" between hosts, "inproc://<name>" inside one process.
# Default: ipc://<runtime dir>/wattsight-bus
endpoint = "tcp://127.0.0.1:5555"
# Extra endpoints consumers also connect to (other sites, forwarders). Default: [].
connect = []
# The key that signs every message, shared by every part. Prefer a file readable by wattsight only:
#   head -c 32 /dev/urandom | base64 > /etc/wattsight/bus.key && chmod 600 /etc/wattsight/bus.key
# secret_file = "/etc/wattsight/bus.key"   # a relative path is taken from this file's folder
# ... or the key itself (set only one of secret and secret_file):
secret = "replace-me-with-32-random-bytes-in-base64"
# Messages stamped further than this many seconds from now are refused (replays). Default: 300.
window = 300.0
# Seconds the publisher gathers samples before sending one message. Default: 0.05.
linger = 0.05
# The most samples in one message. Default: 50000.
batch_max = 50000

[store]
# The storage engine; "embedded" is the only one in this release.
backend = "embedded"
# The store's folder. Default: <user data dir>/wattsight/store (~/.local/share/wattsight/store).
path = "/var/lib/wattsight/store"
# false: what was acknowledged survives kill -9; true: it also survives a power loss (slower).
fsync = false
# Seconds of samples kept in the write-ahead log before they are written as a segment. Default: 60.
flush_interval = 60.0

[api]
# The address the REST API and web UI listen on, as host:port. Default: 127.0.0.1:8080.
listen = "127.0.0.1:8080"
# The most points per series in one /series answer (coarser steps beyond). Default: 10000.
max_points = 10000
# Seconds: gaps longer than max(max_gap, 3 * period) are not bridged when integrating. Default: 5.
max_gap = 5.0
# The energy price per kWh, for cost figures (0: no cost shown), and its currency.
price_per_kwh = 0.0
currency = "EUR"

# Probe metadata (optional): aliases, and the nodes a probe feeds. Quote ids: they contain a dot.
[probes."local.pdu1-3"]
# Other names the probe answers to in the API. Default: [].
aliases = ["rack1-outlet3"]
# The nodes fed by this probe; several means a shared outlet (reported, never split). Default: the probe.
nodes = ["local.node-1", "local.node-2"]
# Free text shown in the API and UI. Default: "".
description = "PDU 1, outlet 3"

# Consumers beyond the built-in store and API come with later releases; each needs a type:
# [consumers.metrics]
# type = "prometheus"

# Drivers: one [drivers.<name>] section per meter (or group of meters). Every section has
#   type = "<driver>"     the driver, as listed by `wattsight plugins` (required)
#   period = 1.0          seconds between reads (0.02 = 50 Hz). Default: 1.
#   timeout = 2.0         seconds a read may take. Default: the period, at least 1 s.
#   enabled = true        false keeps the section but does not run it. Default: true.
# and the keys of its driver, shown in the sections below.
'''


def sample_text() -> str:
    """The commented sample file: every section and key, plus one section per registered driver."""
    parts = [_SAMPLE_HEAD]
    for name in plugins.names():
        try:
            text = (getattr(plugins.load(name), "SAMPLE", "") or "").strip()
        except PluginError as exc:
            text = f"# driver {name!r} cannot be loaded here: {exc}"
        if text:
            parts.append(f"# -- driver {name} " + "-" * max(3, 80 - len(name)) + "\n" + text + "\n")
    return "\n".join(parts)


def __getattr__(name: str):
    # SAMPLE is built on first use: it asks every installed driver for its own sample section.
    if name == "SAMPLE":
        return sample_text()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
