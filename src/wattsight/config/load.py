"""Reading a file: TOML, then every section validated, every problem gathered into one error."""

from __future__ import annotations

import base64
import difflib
import os
import re
import tomllib
from pathlib import Path

from .. import plugins
from ..errors import ConfigError, PluginError, SampleError
from ..sample import check_probe_id  # wattsight.sample (probe ids), not this package's sample file
from .explain import Issue, as_error, validate
from .models import (
    KEY_HINT,
    ApiConfig,
    BusConfig,
    Config,
    ProbeConfig,
    RecorderConfig,
    StoreConfig,
    runtime_dir,
    user_data_dir,
)

_TOP = ("site", "bus", "store", "api", "recorder", "drivers", "probes", "consumers")
_SITE = re.compile(r"^[A-Za-z0-9_-]+$")

#: The simulated rack of ``wattsight run --demo`` (clearly named: its site is "demo").  A square
#: pattern, chosen so that energy over a minute can be checked against the analytic value.
DEMO_RACK = {"type": "dummy", "period": 1.0, "count": 8, "prefix": "node-",
             "metrics": ["power", "energy", "network"], "pattern": "square", "min": 90.0, "max": 260.0,
             "high_time": 20.0, "low_time": 20.0, "ramp": 4.0, "seed": 1}


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
    return validate(cls.Config, section, base, issues, context)


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
    return validate(ProbeConfig, section, ("probes", pid), issues, context)


def _consumer(name: str, section, issues: list, context: dict):
    from ..consumers.base import validate_section  # late: consumers.base imports config.explain

    return validate_section(name, section, issues, context)


def _table(data: dict, name: str, issues: list) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        issues.append(Issue((name,), f"{value!r} is not a table", f"a [{name}] section"))
        return {}
    return value


def _build(data: dict, text: str, path: str, base: Path | None = None, opener=None) -> Config:
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
    ctx = {"base": base, "opener": opener}
    sections = {name: validate(model, _table(data, name, issues), (name,), issues, ctx)
                for name, model in (("bus", BusConfig), ("store", StoreConfig), ("api", ApiConfig),
                                    ("recorder", RecorderConfig))}
    bus, raw_bus = sections["bus"], data.get("bus", {})
    if isinstance(raw_bus, dict) and raw_bus.get("secret") is None and raw_bus.get("secret_file") is None:
        issues.append(Issue(("bus", "secret_file"), "missing: the bus has no key to sign its messages",
                            'secret_file = "<path>" (or secret) in [bus]', KEY_HINT))
    drivers = {k: _driver(k, v, issues, ctx) for k, v in _table(data, "drivers", issues).items()}
    probes = {k: _probe(k, v, issues, ctx) for k, v in _table(data, "probes", issues).items()}
    consumers = {k: _consumer(k, v, issues, ctx) for k, v in _table(data, "consumers", issues).items()}
    if issues:
        raise as_error(issues, path, text)
    return Config(None if path.startswith("<") else Path(path), site, bus, sections["store"], sections["api"],
                  drivers, probes, consumers, sections["recorder"])


def loads(text: str, path: str | Path = "<string>", *, opener=None) -> Config:
    """Parse and validate a TOML text; every problem found is reported in one ConfigError.

    ``opener`` (a function of a path returning its bytes) reads the files the text names for
    their checks (the bus key); tests inject one that raises PermissionError, even as root."""
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
    return _build(data, text, path, base, opener)


def read_text(path: str | Path, *, what: str = "the file", hint: str | None = None) -> str:
    """The UTF-8 text of ``path``, or a ConfigError ``cannot read {what}: reason`` naming the file."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {what}: {reason}", file=str(path), hint=hint) from None


def load(path: str | Path) -> Config:
    """Read, parse and validate a configuration file."""
    text = read_text(path, hint="`wattsight config sample > wattsight.toml` writes a sample")
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


def default(demo: bool = False, data_dir: Path | None = None, discovery=None) -> Config:
    """The embedded configuration used with no file: local store, ipc bus, a key created on first use.

    ``discovery`` (a :class:`wattsight.discover.Discovery`) adds the local meters it found.
    """
    folder = Path(data_dir) if data_dir is not None else user_data_dir()
    key = ensure_key(folder / "bus.key")
    run = runtime_dir()
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    data: dict = {"site": "demo" if demo else "local",
                  "bus": {"endpoint": f"ipc://{run}/wattsight-bus", "secret_file": str(key)},
                  "store": {"path": str(folder / "store")}}
    if demo:
        data["drivers"] = {"rack": dict(DEMO_RACK)}
    elif discovery is not None:
        data["drivers"] = discovery.sections()
    return _build(data, "", "<default>")
