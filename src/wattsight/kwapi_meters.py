"""Kwapi ``Ipmi``, ``Wattsup`` and ``Json_url`` sections -> wattsight ``ipmi``, ``serial`` and ``http``.

The rest of :mod:`wattsight.kwapi_drivers`: meters that Kwapi read one probe at a time.
"""

from __future__ import annotations

from .drivers import jsonpath
from .drivers.http import POWER_UNITS
from .kwapi_drivers import Context, Converted, begin, commented, finish, leftovers, need
from .kwapi_ini import Channel, KwapiSection


# -- IPMI -----------------------------------------------------------------------------------------
def ipmi(ks: KwapiSection, ctx: Context, metric: str) -> Converted:
    """One ``ipmi`` section per BMC Kwapi read, with ``source = "sdr"``: Kwapi ran ``ipmitool -I
    <interface> -H <host> ... sensor reading "<sensor>"`` (the only sensor in Watts when none is given)."""
    if metric != "power":
        return commented(ks, f"the ipmi driver reads power; Kwapi's data_type is {ks.data_type.get('name')!r}")
    params = dict(ks.params)
    interface = str(params.pop("interface", "lanplus"))
    if interface not in ("lan", "lanplus"):
        return commented(ks, f"interface {interface!r} reads the local BMC in-band, and the ipmi driver reads "
                             "BMCs over the network: give the BMC's address with interface 'lanplus' (or read "
                             "the host itself with the hwmon or rapl drivers)")
    username, password = need(ks, params, "username", "a BMC user"), need(ks, params, "password", "its password")
    sensor, host, resolution = (params.pop(k, None) for k in ("sensor", "host", "resolution"))
    bmcs = _bmcs(ks, host)
    if isinstance(bmcs, str):
        return commented(ks, bmcs)
    out = Converted([])
    for name, address, c in bmcs:
        s = begin(ks, name, "ipmi", {} if resolution is None else {"resolution": resolution})
        for key, value in (("host", address), ("username", username), ("password", password),
                           ("lanplus", interface == "lanplus"), ("source", "sdr")):
            s.set(key, value)
        if sensor:
            s.set("sensors", [str(sensor)])
        else:
            s.note("Kwapi read the BMC's only sensor in Watts (and nothing if it had several); wattsight sums "
                   "every sensor in Watts: list the one to read in `sensors`")
        s.set("name", c.probe)  # a name with a dot is the whole probe id: the Kwapi id
        if host is None:
            s.note(f"kwapi-g5k read the BMC {address} from the probe id {c.probe}")
        elif len(ks.channels) > 1:
            s.note("Kwapi's Ipmi driver published its first probe only: "
                   f"{[x.probe for x in ks.channels[1:]]} were never read, and are not here")
        if c is bmcs[-1][2]:
            leftovers(s, params)
        out.blocks.append(s.text())
        out.nodes[c.probe] = c.nodes
    return out


def _bmcs(ks: KwapiSection, host) -> list[tuple[str, str, Channel]] | str:
    """(section name, BMC address, channel) of each BMC, or why there is none.

    openstack Kwapi: the BMC at ``host``, published as the first probe.  kwapi-g5k: no ``host``;
    each probe ``<site>.<host>.<n>`` is the BMC ``<host>.<site>``.
    """
    if host is not None:
        return [(ks.name, str(host), ks.channels[0])]
    bad = [c.probe for c in ks.channels if len(c.probe.split(".")) != 3]
    if bad:
        return (f"there is no 'host' in its parameters, and probe id {bad[0]!r} is not '<site>.<host>.<n>', "
                "from which kwapi-g5k took the BMC's address <host>.<site>")
    return [(ks.name if len(ks.channels) == 1 else f"{ks.name}-{c.position}",
             "{1}.{0}".format(*c.probe.split(".")), c) for c in ks.channels]


# -- Watts up? on a serial line -------------------------------------------------------------------
def wattsup(ks: KwapiSection, ctx: Context, metric: str) -> Converted:
    """One ``serial`` section: Kwapi read the meter on ``device`` (default /dev/ttyUSB0) for its first probe."""
    if metric == "network":
        return commented(ks, "a Watts up? meter measures power and energy, not network bytes")
    params = dict(ks.params)
    s = begin(ks, ks.name, "serial", {})
    device = params.pop("device", None)
    if device is None:
        s.note("Kwapi's default device")
    s.set("device", str(device or "/dev/ttyUSB0"))
    s.set("probe", ks.channels[0].probe)
    if len(ks.channels) > 1:
        s.note(f"Kwapi's Wattsup driver published its first probe only: {[c.probe for c in ks.channels[1:]]} "
               "were never read, and are not here")
    s.note("Kwapi logged one record a second at 115200 bit/s: wattsight's defaults (interval, baud)")
    leftovers(s, params, " (Kwapi's Wattsup driver ignored them)")
    return finish(s, ks.channels[:1])


# -- JSON over HTTP -------------------------------------------------------------------------------
def json_url(ks: KwapiSection, ctx: Context, metric: str) -> Converted:
    """One ``http`` section: Kwapi read ``reply[<name>]["watt"]``, ``<name>`` being the second part of
    the probe's ``probes_names`` entry (``lyon.taurus-7`` -> ``taurus-7``), stamped with its
    ``timestamp``, and published it under the probe id; entries absent from a reply were skipped."""
    if metric != "power":
        return commented(ks, f"Kwapi's Json_url driver read 'watt' fields; its data_type is {metric!r}")
    unit = str(ks.data_type.get("unit", "W"))
    if unit not in POWER_UNITS:
        return commented(ks, f"its values are in {unit!r}, which is no power unit wattsight knows "
                             f"({', '.join(POWER_UNITS)})")
    params = dict(ks.params)
    s = begin(ks, ks.name, "http", params)
    s.set("url", need(ks, params, "url", "the URL of the JSON document"))
    if unit != "W":
        s.set("power_unit", unit)
    keys = {}
    for c in ks.channels:
        name = c.name if ks.has_names and c.name and "." in c.name else c.probe
        keys[c.probe] = name.split(".")[1]
    if not ks.has_names:
        s.note("Kwapi's Json_url driver read the entries named by probes_names, and this section has none (it "
               "read nothing): wattsight reads each probe's own name")
    s.set("missing", "skip")
    s.note("Kwapi skipped a probe absent from the reply")
    if all(c.probe.split(".", 1)[1] == keys[c.probe] for c in ks.channels):
        s.note('kwapi-g5k\'s layout {"<name>": {"watt": ..., "timestamp": ...}}: each probe reads <name>.watt, '
               "stamped with <name>.timestamp (the meter's own time), <name> being the probe id without its site")
        s.set("probes", [c.probe for c in ks.channels])
        leftovers(s, params)
    else:
        s.note("each probe reads <name>.watt of the entry Kwapi read for it (from probes_names); in this form "
               "the measurement time is the reply's, not the meter's <name>.timestamp")
        leftovers(s, params)
        s.table("probes", {c.probe: {"power": jsonpath.render((keys[c.probe], "watt"))} for c in ks.channels})
    return finish(s, ks.channels)
