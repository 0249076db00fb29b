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
read with :func:`ast.literal_eval` only (:mod:`wattsight.kwapi_ini`).

Each section becomes a ``[drivers.<name>]`` section that validates against the wattsight
driver reading the same meter the same way (:mod:`wattsight.kwapi_drivers`,
:mod:`wattsight.kwapi_meters`): ``Snmp``/``Raritan``/``Eaton`` -> ``snmp`` (the n-th row Kwapi
walked is outlet n, published under the same full probe id), ``SnmpIn``/``SnmpOut`` and network
``Snmp`` sections -> ``snmp-switch``, ``Ipmi`` -> ``ipmi``, ``Wattsup`` -> ``serial``,
``Json_url`` -> ``http``, ``Dummy*`` -> ``dummy``.  ``probes_names`` becomes
``[probes."<id>"] nodes``.  Nothing is dropped silently: a parameter without an equivalent is
a comment in its section, and a section without an equivalent (an unknown driver, in-band IPMI,
an OID that is not an IF-MIB octet counter on a switch...) is kept as commented-out text saying
why.
"""

from __future__ import annotations

from collections import Counter

from .kwapi_drivers import METRICS, Context, Converted, commented, dummy, kv, snmp, toml_key
from .kwapi_ini import IniSection, KwapiSection, parse_ini, read_section, unquote
from .kwapi_meters import ipmi, json_url, wattsup
from .sample import site_of

#: Kwapi class name (lower case) -> converter.
CONVERTERS = {"dummy": dummy, "dummywatts": dummy, "dummynet": dummy, "snmp": snmp, "snmpin": snmp,
              "snmpout": snmp, "raritan": snmp, "eaton": snmp, "ipmi": ipmi, "wattsup": wattsup,
              "json_url": json_url}


def convert(ks: KwapiSection, ctx: Context) -> Converted:
    """The wattsight section(s) of one Kwapi section, or the section as comments saying why not."""
    cls = ks.driver.lower()
    name = str(ks.data_type.get("name", "power"))
    metric = "network" if cls in ("snmpin", "snmpout") else METRICS.get(name)
    if cls not in CONVERTERS:
        return commented(ks, f"Kwapi's {ks.driver} driver has no wattsight equivalent (wattsight knows "
                             "Snmp, SnmpIn, SnmpOut, Raritan, Eaton, Ipmi, Wattsup, Json_url, Dummy)")
    if metric is None:
        return commented(ks, f"its data_type {name!r} is no metric wattsight has (power, energy, "
                             f"network_in, network_out)")
    if not ks.channels:
        return commented(ks, "every probe is None: Kwapi read nothing here")
    return CONVERTERS[cls](ks, ctx, metric)


def _header(default: IniSection, path: str, site: str) -> list[str]:
    entries = {k: unquote(v) for k, (v, _) in default.entries.items()}
    out = [f"# Converted from the Kwapi drivers.conf {path} by `wattsight config import-kwapi`.",
           "# Review it, then run `wattsight config check` on it.", kv("site", site), "", "[bus]"]
    if "probes_endpoint" in entries:
        out.append(f"# Kwapi published on {entries.pop('probes_endpoint')}; wattsight uses its own endpoint")
    secret = entries.pop("metering_secret", None)
    if entries.get("enable_signing", "true").lower() in ("false", "0", "no"):
        out.append("# Kwapi had enable_signing = false: wattsight always signs its messages")
    entries.pop("enable_signing", None)
    if secret:
        out += ["# from Kwapi metering_secret; better: put it in a file readable by wattsight only",
                "# and set secret_file = \"/etc/wattsight/bus.key\" instead", kv("secret", secret)]
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
    default = next((s for s in sections if s.name == "DEFAULT"), IniSection("DEFAULT", 1))
    kwapi = [read_section(s, path) for s in sections if s.name != "DEFAULT"]
    sites = Counter(site_of(c.probe) for ks in kwapi for c in ks.channels)
    site = sites.most_common(1)[0][0] if sites else "local"
    ctx = Context(site)
    out = _header(default, path, site)
    nodes: dict[str, list[str]] = {}
    for ks in kwapi:
        done = convert(ks, ctx)
        for block in done.blocks:
            out += block
        for probe, fed in done.nodes.items():
            nodes.setdefault(probe, [])
            nodes[probe] += [f for f in fed if f not in nodes[probe]]
    for probe, fed in nodes.items():
        if fed:
            out += [f"\n[probes.{toml_key(probe)}]", kv("nodes", fed)]
    return "\n".join(out) + "\n"
