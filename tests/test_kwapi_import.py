"""Converting a Kwapi / kwapi-g5k drivers.conf into a wattsight configuration.

Every example of ``tests/data/kwapi`` converts into a file that ``config.loads`` accepts whole,
whose drivers publish the full Kwapi probe ids; and the converted SNMP and HTTP sections, run
against real peers (snmpsim, an HTTP server), read the values that Kwapi's own drivers read at
the same places: Kwapi's algorithm is replayed here from its source (a walk of the OID whose
n-th row goes to the n-th probe; ``reply[<probes_names entry>]["watt"]``), independently of the
importer.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import tomllib
from pathlib import Path

import pytest
from peers.httpjson import JsonServer
from peers.snmpsim import INTEGER, SnmpSim, pdu_records, responder, switch_records

from wattsight import plugins
from wattsight.config import loads
from wattsight.errors import ConfigError
from wattsight.kwapi_import import import_kwapi

KWAPI = Path(__file__).parent / "data" / "kwapi"
FILES = sorted(p for p in KWAPI.glob("*.conf") if p.name != "bad-literal.conf")
needs_dummy = pytest.mark.skipif("dummy" not in plugins.names(), reason="the dummy driver is not installed")
needs_snmpsim = pytest.mark.skipif(responder() is None, reason="snmpsim-command-responder is not installed "
                                                               "(pip install snmpsim; test.sh does)")


def convert(path: Path, key_file: Path | None = None) -> str:
    text = import_kwapi(path.read_text(), str(path))
    return text.replace("/etc/wattsight/bus.key", str(key_file)) if key_file else text


def kwapi_sections(path: Path) -> dict[str, dict]:
    """What Kwapi's driver_manager.load_all_drivers read: ast.literal_eval of each section's values."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return {name: {"driver": s["driver"], "probes": ast.literal_eval(s["probes"]),
                   "names": ast.literal_eval(s.get("probes_names", "[]")),
                   "data_type": ast.literal_eval(s.get("data_type", "{}")),
                   "params": ast.literal_eval(s.get("parameters", "{}"))} for name, s in parser.items()
            if name != "DEFAULT"}


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "bus.key"
    path.write_text("c2VjcmV0LWtleS1mb3ItdGhlLXRlc3Rz\n")
    return path


# -- every file ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_file_loads_whole_and_its_drivers_publish_the_kwapi_ids(path, key_file):
    text = convert(path, key_file)
    cfg = loads(text)
    kwapi = kwapi_sections(path)
    ids = {p for sec in kwapi.values() for p in sec["probes"] if isinstance(p, str)}
    for name in kwapi:  # each section is converted, or kept as comments saying why
        converted = [d for d in cfg.drivers if d == name or d.startswith(f"{name}-")]
        assert converted or f"# Kwapi [{name}] (driver {kwapi[name]['driver']}) is not converted: " in text, name
    for name, section in cfg.drivers.items():
        driver = plugins.load(section.type)(section, site=cfg.site)  # no I/O: probes come from the config
        for probe in driver.probes():  # a Kwapi id, or "<id>.<position>" of a channel Kwapi summed into <id>
            assert probe.id in ids or cfg.probes[probe.id].nodes[0] in ids, (name, probe.id)
        getattr(driver, "close", lambda: None)()


# -- what each file becomes ----------------------------------------------------------------------
@needs_dummy
def test_kwapi_dummy_file_round_trips():
    cfg = loads(convert(KWAPI / "openstack-dummy.conf"))
    assert cfg.site == "nancy" and cfg.bus_secret() == b"Change This Or Be Hacked"
    assert set(cfg.drivers) == {"sgriffon1-IN", "sgriffon1-OUT", "griffon-pdu4", "wattmeter-2"}
    assert cfg.drivers["wattmeter-2"].probes == ["nancy.wattmeter-2.1", "nancy.wattmeter-2.2"]
    assert (cfg.drivers["wattmeter-2"].min, cfg.drivers["wattmeter-2"].max) == (10.0, 20.0)
    assert cfg.drivers["sgriffon1-IN"].metrics == ["network"]
    assert cfg.drivers["sgriffon1-OUT"].enabled is False  # the dummy gives both directions already
    assert "nancy.sgriffon1.1-4" not in str(cfg.drivers)  # None: an empty port
    assert cfg.probes["nancy.griffon-pdu4.1"].nodes == [f"nancy.griffon-{i}" for i in range(30, 35)]


@needs_dummy
def test_kwapi_summed_channels_become_one_probe_each_feeding_the_node():
    text = import_kwapi("[DEFAULT]\nmetering_secret = k\n[pdu]\ndriver = DummyWatts\n"
                        "probes = ['lyon.t-1', 'lyon.t-1', 'lyon.t-2']\n", "drivers.conf")
    cfg = loads(text)
    assert cfg.drivers["pdu"].probes == ["lyon.t-1.1", "lyon.t-1.2", "lyon.t-2"]
    assert cfg.probes["lyon.t-1.1"].nodes == cfg.probes["lyon.t-1.2"].nodes == ["lyon.t-1"]


def test_kwapi_g5k_file_converts_every_driver():
    path = KWAPI / "g5k-lyon.conf"
    text = import_kwapi(path.read_text(), str(path))
    data = tomllib.loads(text)
    drivers = data["drivers"]
    assert data["site"] == "lyon" and data["bus"]["secret"] == "lyon-3b1f0c9e5d"
    assert {k: d["type"] for k, d in drivers.items()} == {
        "taurus-pdu1": "snmp", "sagittaire-pdu": "snmp", "orion-1": "ipmi", "nova-wattmeters": "http",
        "gw-lyon-IN": "snmp-switch"}
    pdu = drivers["taurus-pdu1"]  # APC's rPDU2 outlet power column: the apc preset, outlet n = n-th row
    assert (pdu["host"], pdu["version"], pdu["community"], pdu["period"], pdu["preset"], pdu["metrics"]) == (
        "taurus-pdu1.lyon.grid5000.fr", "2c", "public", 1.0, "apc", ["power"])
    assert pdu["outlets"] == {str(i): f"lyon.taurus-pdu1.{i}" for i in (1, 2, 4, 5)}
    assert "skipped (None, not read): 3" in text
    raritan = drivers["sagittaire-pdu"]  # Raritan's first MIB (PDU-MIB) has no preset: its OID, in W
    assert (raritan["preset"], raritan["power_oid"], raritan["power_scale"]) == (
        "generic", "1.3.6.1.4.1.13742.4.1.2.2.1.7.{outlet}", 1.0)
    assert (raritan["version"], raritan["user"], raritan["auth_protocol"], raritan["priv_protocol"]) == (
        "3", "kwapi", "none", "none")
    bmc = drivers["orion-1"]
    assert (bmc["host"], bmc["lanplus"], bmc["source"], bmc["sensors"], bmc["name"]) == (
        "orion-1-bmc.lyon.grid5000.fr", True, "sdr", ["Power Meter"], "lyon.orion-1")
    assert "cache = 'yes'" in text  # kept as a comment
    assert drivers["nova-wattmeters"]["probes"] == ["lyon.nova-1", "lyon.nova-2", "lyon.nova-3"]
    switch = drivers["gw-lyon-IN"]
    assert (switch["counters"], switch["ports_by"], switch["ports"]) == (
        "64", "ifindex", {"1": "lyon.gw-lyon.Te0-0-0-1", "2": "lyon.gw-lyon.Te0-0-0-2"})
    assert data["probes"]["lyon.taurus-pdu1.4"]["nodes"] == ["lyon.taurus-3", "lyon.taurus-4"]
    assert "later release" not in text
    assert "check_drivers_interval = '60'" in text  # nothing dropped silently


def test_kwapi_g5k_generated_file_keeps_its_layout():
    data = tomllib.loads(convert(KWAPI / "g5k-nancy.conf"))
    drivers = data["drivers"]
    # a wattmetre: each probe reads the entry of the node in its probes_names
    assert drivers["wattmetre1"]["probes"] == {f"nancy.wattmetre1.{i}": {"power": f"gros-{i}.watt"}
                                               for i in (1, 2, 4)}
    assert drivers["grisou-pdu1"]["power_oid"] == "1.3.6.1.4.1.534.6.6.7.5.5.1.3.0.{outlet}"  # iso. -> 1.
    assert data["probes"]["nancy.grisou-pdu1.0"]["nodes"] == ["nancy.grisou-1", "nancy.grisou-2"]
    # the -IN section holds what the nodes sent (ifHCInOctets), which kwapi-g5k labelled network_out
    assert drivers["gw-nancy-IN"].get("enabled", True) and drivers["gw-nancy-OUT"]["enabled"] is False
    # kwapi-g5k's Ipmi: each probe <site>.<host>.<n> is the BMC <host>.<site>, one section each
    assert {k: (d["host"], d["name"]) for k, d in drivers.items() if d["type"] == "ipmi"} == {
        "graphene-bmcs-1": ("graphene-1.nancy", "nancy.graphene-1.1"),
        "graphene-bmcs-2": ("graphene-2.nancy", "nancy.graphene-2.1")}


def test_kwapi_openstack_hardware_file():
    text = convert(KWAPI / "openstack-hardware.conf")
    drivers = tomllib.loads(text)["drivers"]
    eaton = drivers["paravance-pdu"]  # Kwapi's Eaton class: outletWatts of strapping index 0
    assert (eaton["preset"], eaton["pdu_index"], eaton["version"], eaton["outlets"]) == (
        "eaton", 0, "3", {"1": "rennes.paravance-1.1", "2": "rennes.paravance-1.2", "3": "rennes.paravance-2",
                          "5": "rennes.paravance-3"})
    assert drivers["parasilo-pdu"]["preset"] == "apc" and drivers["parasilo-pdu"]["version"] == "1"
    assert drivers["sw-rennes-IN"]["counters"] == "32" and drivers["sw-rennes-OUT"]["enabled"] is False
    assert drivers["paravance-4"]["lanplus"] is False and "sensors" not in drivers["paravance-4"]
    assert drivers["desk"] == {"type": "serial", "device": "/dev/ttyUSB0", "probe": "rennes.desk-1"}
    assert "['rennes.desk-2'] were never read" in text
    for name, why in [("sw-rennes-ERR", "1.3.6.1.2.1.2.2.1.14 is none of them"),
                      ("frontend", "interface 'open' reads the local BMC in-band"),
                      ("old-meter", "Kwapi's Omegawatt driver has no wattsight equivalent")]:
        assert name not in drivers and why in text
        assert f"#   [{name}]" in text  # its Kwapi text, as comments


def test_kwapi_wattsup_file_without_secret():
    path = KWAPI / "wattsup-lab.conf"
    text = import_kwapi(path.read_text(), str(path))
    data = tomllib.loads(text)
    assert data["drivers"]["bench-2"] == {"type": "serial", "device": "/dev/ttyUSB1", "probe": "lab.bench-2"}
    assert "baudrate = 115200" in text and "enable_signing = false" in text
    assert data["bus"] == {"secret_file": "/etc/wattsight/bus.key"} and "head -c 32" in text


# -- errors --------------------------------------------------------------------------------------
def test_kwapi_bad_section_names_file_line_and_section():
    path = KWAPI / "bad-literal.conf"
    with pytest.raises(ConfigError) as info:
        import_kwapi(path.read_text(), str(path))
    err = info.value
    assert (err.file, err.line) == (str(path), 10) and "[broken] probes" in str(err)


@pytest.mark.parametrize("section, line, words", [
    ("[a]\nprobes = ['lyon.a']\n", 1, "[a] driver"),
    ("[a]\ndriver = Dummy\n", 1, "[a] probes"),
    ("[a]\ndriver = Dummy\nprobes = ['lyon.a', 'lyon.b']\nprobes_names = ['lyon.x']\n", 4, "probes_names"),
    ("[a]\ndriver = Dummy\nprobes = __import__('os').getcwd()\n", 3, "cannot be read"),
    ("[a]\ndriver = Dummy\nprobes = 'lyon.a'\n", 3, "is not a"),
    ("[a]\ndriver = Dummy\nprobes = ['no dot here']\n", 3, "<site>.<name>"),
    ("[a]\ndriver = Dummy\nprobes = ['lyon.a']\nparameters = {'min': 'low'}\n", 4, "not a number"),
    ("[a]\ndriver = Snmp\nprobes = ['lyon.a']\nparameters = {'oid': '1.3.6.1'}\n", 4, "no 'ip'"),
    ("[a]\ndriver = Snmp\nprobes = ['lyon.a']\nparameters = {'ip': 'pdu', 'oid': 'ifInOctets'}\n", 4,
     "not a numeric OID"),
    ("[a]\ndriver = Ipmi\nprobes = ['lyon.a']\nparameters = {'host': 'bmc', 'username': 'u'}\n", 4,
     "no 'password'"),
    ("[a]\nthis is not ini\n", 2, "key = value"),
])
def test_kwapi_errors(section, line, words):
    with pytest.raises(ConfigError) as info:
        import_kwapi(section, "drivers.conf")
    assert info.value.line == line and words in str(info.value)
    assert str(info.value).startswith("drivers.conf:")


# -- against real peers: the same values as Kwapi -------------------------------------------------
#: Kwapi's Raritan and Eaton classes: the OID they walked and their maxRows.
KWAPI_FIXED = {"raritan": ("1.3.6.1.4.1.13742.4.1.2.2.1.7", 20), "eaton": ("1.3.6.1.4.1.534.6.6.7.6.5.1.3", 24)}
IN_OCTETS = ("1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.2.2.1.10")


class KwapiAgent(SnmpSim):
    """snmpsim with the SNMPv3 user Kwapi's Raritan and Eaton classes used: 'kwapi', noAuthNoPriv."""

    def command(self) -> list[str]:
        return [a for a in super().command() if not a.startswith("--v3-")] + ["--v3-user=kwapi"]


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    sim = KwapiAgent(tmp_path_factory.mktemp("kwapi-snmpsim"))
    public = {**pdu_records("apc", 8), **switch_records(8)}  # the v1/v2c PDUs and switches of the files
    public["1.3.6.1.4.1.534.6.6.7.5.5.1.3.0.1"] = (INTEGER, 4321)  # an Eaton's groupWatts, 2 groups
    public["1.3.6.1.4.1.534.6.6.7.5.5.1.3.0.2"] = (INTEGER, 1234)
    sim.write("public", public)
    sim.write("private", pdu_records("apc", 4))
    v3 = pdu_records("eaton", 24)  # what SNMPv3 reads: an Eaton ePDU and a Raritan PDU-MIB table
    v3.update({f"1.3.6.1.4.1.13742.4.1.2.2.1.7.{i}": (INTEGER, 200 + 3 * i) for i in range(1, 21)})
    sim.write("v3", v3, v3=True)
    with sim:
        yield sim


def kwapi_snmp_read(port: int, sec: dict) -> dict[str, int]:
    """What Kwapi's Snmp/SnmpIn/SnmpOut/Raritan/Eaton published: the first rows of a walk of the OID,
    the n-th to the n-th probe (None: not published), the channels of one id summed."""
    import pysnmp.hlapi.v3arch.asyncio as hl

    cls, p = sec["driver"].lower(), sec["params"]
    oid, rows = KWAPI_FIXED.get(cls, (p.get("oid"), len(sec["probes"])))
    oid = oid.replace("iso.", "1.", 1).lstrip(".")  # Kwapi's pysnmp resolved the MIB name "iso"
    if cls in KWAPI_FIXED or p.get("protocol") == "3":
        auth = hl.UsmUserData(p["user"])
    else:
        auth = hl.CommunityData(p["community"], mpModel=0 if p["protocol"] == "1" else 1)

    async def walk() -> list[int]:
        engine = hl.SnmpEngine()
        target = await hl.UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=0)
        values = []
        async for error, status, _, binds in hl.walk_cmd(engine, auth, target, hl.ContextData(),
                                                         hl.ObjectType(hl.ObjectIdentity(oid)),
                                                         lexicographicMode=False, lookupMib=False):
            assert not error and not status, (error, status)
            values += [int(v) for _, v in binds]
            if len(values) >= rows:
                break
        engine.close_dispatcher()
        return values[:rows]

    published: dict[str, int] = {}
    for pid, value in zip(sec["probes"], asyncio.run(walk())):
        if pid:
            published[pid] = published.get(pid, 0) + value
    return published


def wattsight_read(cfg, types: tuple[str, ...], ids: set[str], **where) -> dict[tuple[str, str], float]:
    """Every enabled section of ``types`` read once, pointed at the peer: (Kwapi id, metric) -> value."""
    out: dict[tuple[str, str], float] = {}
    for section in cfg.drivers.values():
        if section.type not in types or not section.enabled:
            continue
        driver = plugins.load(section.type)(section.model_copy(update=where), site=cfg.site)
        try:
            batch = driver.read()
        finally:
            driver.close()
        for s in batch.samples():  # "<id>.<position>" channels of a summed id add up to that id
            pid = s.probe if s.probe in ids else cfg.probes[s.probe].nodes[0]
            out[(pid, s.metric)] = out.get((pid, s.metric), 0.0) + s.value
    return out


@needs_snmpsim
@pytest.mark.parametrize("path", [KWAPI / n for n in ("g5k-lyon.conf", "g5k-nancy.conf", "openstack-hardware.conf")],
                         ids=lambda p: p.name)
def test_converted_snmp_sections_read_what_kwapi_read(agent, path):
    text = convert(path)
    cfg = loads(text)
    kwapi = {n: s for n, s in kwapi_sections(path).items()
             if s["driver"].lower() in ("snmp", "snmpin", "snmpout", "raritan", "eaton")
             and f"[drivers.{n}]" in text}
    ids = {p for s in kwapi.values() for p in s["probes"] if p}
    got = wattsight_read(cfg, ("snmp", "snmp-switch"), ids, host="127.0.0.1", port=agent.port, timeout=3.0)
    compared = set()
    for name, sec in kwapi.items():
        oid = KWAPI_FIXED.get(sec["driver"].lower(), (sec["params"].get("oid", ""),))[0]
        power = sec["driver"].lower() not in ("snmpin", "snmpout") and sec["data_type"].get("name", "power") == "power"
        metric = "power" if power else "network_in" if oid.endswith(IN_OCTETS) else "network_out"
        for pid, value in kwapi_snmp_read(agent.port, sec).items():
            assert got[(pid, metric)] == value, (name, pid, metric)
            compared.add(pid)
    assert compared == ids


def test_converted_http_sections_read_what_kwapi_json_url_read():
    """kwapi-g5k's Json_url: reply[probes_names[i][0].split('.')[1]]['watt'] published as probes[i]."""
    for path in (KWAPI / "g5k-lyon.conf", KWAPI / "g5k-nancy.conf"):
        cfg = loads(convert(path))
        kwapi = {n: s for n, s in kwapi_sections(path).items() if s["driver"] == "Json_url"}
        doc = {f"{c}-{i}": {"watt": 100.25 + 10 * i, "timestamp": 1_700_000_000.5 + i}
               for c in ("nova", "gros") for i in range(1, 6)}
        with JsonServer(doc, path="/GetWatts-json.php") as srv:
            got = wattsight_read(cfg, ("http",), {p for s in kwapi.values() for p in s["probes"]}, url=srv.url)
        for sec in kwapi.values():
            for pid, name in zip(sec["probes"], sec["names"]):
                entry = doc[(name[0] if isinstance(name, list) else name).split(".")[1]]
                assert got[(pid, "power")] == entry["watt"], pid
