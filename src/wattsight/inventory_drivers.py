"""The only place that knows the drivers' keys: inventory devices -> ``[drivers.*]`` sections.

Each function returns the section (a dict, in the order it is written) and the probe id of each
outlet, port or BMC.  Probe ids are given in full (``<site>.<device>.<outlet>``) so they do not
depend on a driver's default naming; :func:`check_section` validates every section with the
driver's own ``Config`` and checks that the driver announces exactly the probe ids written here.
"""

from __future__ import annotations

from .config.explain import Issue, translate
from .errors import PluginError, WattsightError
from .inventory import Bmc, Pdu, Snmp, Source, Switch, preset_of
from .sample import site_of


def _snmp_keys(host: str, snmp: Snmp) -> dict:
    keys: dict = {"host": host}
    if snmp.port != 161:
        keys["port"] = snmp.port
    keys["version"] = snmp.version
    if snmp.version != "3":
        keys["community"] = snmp.community
        return keys
    keys["user"] = snmp.user
    for key in ("auth_protocol", "auth_key", "priv_protocol", "priv_key"):
        value = getattr(snmp, key)
        if value is not None:
            keys[key] = value.lower() if key.endswith("protocol") else value
    return keys


def _period(own: float | None, default: float | None) -> dict:
    period = own if own is not None else default
    return {} if period is None else {"period": period}


def snmp_pdu(name: str, pdu: Pdu, outlets: list[int] | None, period: float | None, src: Source,
             loc: tuple, *, site: str) -> tuple[dict, dict]:
    """An ``snmp`` section for one PDU: its ``outlets`` (None: the whole PDU) -> probe ids."""
    preset = preset_of(pdu)
    keys = {"type": "snmp", **_period(pdu.period, period), **_snmp_keys(pdu.host or name, pdu.snmp),
            "preset": preset}
    oids = pdu.oids
    if outlets is not None:
        keys["outlets"] = outlets
        keys["probe"] = f"{site}.{name}.{{outlet}}"
        ids = {o: f"{site}.{name}.{o}" for o in outlets}
    else:
        keys["total"] = f"{site}.{name}"
        ids = {None: f"{site}.{name}"}
    custom = {}
    if outlets is not None and oids.outlet_power:
        custom |= {"power_oid": oids.outlet_power, "power_scale": oids.outlet_power_scale}
    if outlets is not None and oids.outlet_energy:
        custom |= {"energy_oid": oids.outlet_energy, "energy_scale": oids.outlet_energy_scale}
    if outlets is None and oids.total_power:
        custom |= {"total_power_oid": oids.total_power, "total_power_scale": oids.total_power_scale}
    if custom:  # custom OIDs replace the preset's: read what they give, not the preset's other OIDs
        keys |= custom
        keys["metrics"] = ["power", "energy"] if "energy_oid" in custom else ["power"]
    check_section(keys, ids.values(), src, loc)
    return keys, ids


def bmc(section: str, node: str, b: Bmc, period: float | None, src: Source, loc: tuple, *,
        site: str) -> tuple[dict, str]:
    """An ``ipmi`` or ``redfish`` section for a node's BMC, and its probe id (``<site>.<node>.bmc``)."""
    keys = {"type": b.type, **_period(b.period, period)}
    if b.type == "redfish":
        keys["url"] = f"https://{b.host}" + (f":{b.port}" if b.port else "")
        if not b.verify_tls:
            keys["verify_tls"] = False
    else:
        keys["host"] = b.host
        if b.port is not None:
            keys["port"] = b.port
    keys |= {k: v for k in ("username", "password", "password_file") if (v := getattr(b, k)) is not None}
    # redfish puts "<site>." in front of its `probe`; ipmi takes a `name` with a dot as the whole id
    pid = f"{site}.{node}.bmc"
    if b.type == "redfish":
        keys["probe"] = f"{node}.bmc"
    else:
        keys["name"] = pid
    check_section(keys, [pid], src, loc)
    return keys, pid


def snmp_switch(name: str, sw: Switch, ports: list[str], period: float | None, src: Source, loc: tuple, *,
                site: str) -> tuple[dict, dict]:
    """An ``snmp-switch`` section for one switch: each port (ifName or ifIndex) -> probe id."""
    keys = {"type": "snmp-switch", **_period(sw.period, period), **_snmp_keys(sw.host or name, sw.snmp)}
    ids = {p: f"{site}.{name}.{p}" for p in ports}
    keys["ports"] = {p: ids[p] for p in ports}
    check_section(keys, ids.values(), src, loc)
    return keys, ids


def check_section(keys: dict, ids, src: Source, loc: tuple) -> None:
    """Validate ``keys`` with the driver's Config; the driver must announce exactly ``ids``.

    A driver that is not installed is not checked here (``wattsight config check`` will say so)."""
    from pydantic import ValidationError

    from . import plugins

    try:
        cls = plugins.load(keys["type"])
    except PluginError:
        return
    try:
        cfg = cls.Config.model_validate(keys)
    except ValidationError as exc:
        issues = [translate(e, cls.Config, ()) for e in exc.errors(include_url=False)]
        raise src.error([Issue(loc, f"makes a [drivers] section the {keys['type']} driver refuses: "
                                    f"{i.problem}" + (f" (key {'.'.join(map(str, i.loc))})" if i.loc else ""),
                               i.expected, i.hint) for i in issues]) from None
    site = site_of(next(iter(ids)))
    try:
        announced = {p.id for p in cls(cfg, site=site).probes()}
    except PluginError:  # its client library is missing here: the ids cannot be asked
        return
    if announced != set(ids):
        raise WattsightError(f"internal: the {keys['type']} driver names its probes {sorted(announced)}, "
                             f"not {sorted(ids)}: wattsight.inventory_drivers needs updating")
