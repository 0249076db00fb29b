"""``wattsight config from-inventory``: inventory YAML -> a configuration the real drivers accept,
with exactly the probe -> nodes mapping of the wiring (tests/data/inventory/*.yaml)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from wattsight import app, config, inventory, inventory_toml, plugins
from wattsight.cli import main
from wattsight.errors import ConfigError, PluginError

DATA = Path(__file__).parent / "data" / "inventory"


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "bus.key"
    path.write_bytes(base64.b64encode(b"k" * 32))
    path.chmod(0o600)
    return path


def needs(*types: str) -> None:
    for t in types:
        try:
            plugins.load(t)
        except PluginError as exc:
            pytest.skip(f"the {t} driver is not installed yet ({exc})")


def generate(name: str, key: Path) -> tuple[str, config.Config]:
    """The configuration generated from an example inventory, loaded by ``wattsight.config``."""
    inv, src = inventory.load(DATA / name)
    text = inventory_toml.generate(inv, src, bus_key=str(key))
    return text, config.loads(text, key.parent / "wattsight.toml")


def topology(cfg: config.Config):
    """The topology the running app would build: the drivers' own probes, with the [probes] sections."""
    probes = [p for c in cfg.drivers.values() for p in plugins.load(c.type)(c, site=cfg.site).probes()]
    assert len({p.id for p in probes}) == len(probes)
    topo = app.build_topology(probes, cfg.probes)
    assert set(topo.probes) == {p.id for p in probes}, "every [probes] section names a probe a driver reads"
    return topo


def mapping(cfg: config.Config) -> dict[str, tuple[str, ...]]:
    return {pid: p.nodes for pid, p in topology(cfg).probes.items()}


# -- the Grid'5000 shapes ---------------------------------------------------------------------
def test_one_pdu_measured_as_a_whole_feeds_two_nodes_through_one_shared_probe(key):
    needs("snmp")
    text, cfg = generate("shared-pdu.yaml", key)
    assert mapping(cfg) == {"rennes.parapide-pdu-1": ("rennes.parapide-1", "rennes.parapide-2")}
    topo = topology(cfg)
    assert topo.shared_probes("rennes.parapide-1") == ["rennes.parapide-pdu-1"]
    pdu = cfg.drivers["parapide-pdu-1"]
    # G5K's total_oids list, written iso.3.6..., becomes the one total OID; custom OIDs replace the preset's
    assert pdu.total_power_oid == "1.3.6.1.4.1.318.1.1.12.1.16.0" and list(pdu.metrics) == ["power"]
    assert "# from " + str(DATA / "shared-pdu.yaml") + ":5 pdus.parapide-pdu-1: APC AP7851" in text


def test_a_node_with_two_psus_is_the_sum_of_two_outlet_probes(key):
    needs("snmp")
    text, cfg = generate("two-psu.yaml", key)
    assert mapping(cfg) == {"lyon.taurus-pdu-1.1": ("lyon.taurus-1",), "lyon.taurus-pdu-1.2": ("lyon.taurus-1",),
                            "lyon.taurus-pdu-1.3": ("lyon.taurus-2",)}
    topo = topology(cfg)
    assert topo.node_probes("lyon.taurus-1") == ["lyon.taurus-pdu-1.1", "lyon.taurus-pdu-1.2"]
    assert topo.shared_probes("lyon.taurus-1") == []
    # aliases: a node's only probe answers to the node's name; two PSUs to <node>.psu1 and .psu2
    assert topo.resolve("lyon.taurus-2") == "lyon.taurus-pdu-1.3"
    assert topo.resolve("lyon.taurus-1.psu2") == "lyon.taurus-pdu-1.2"
    pdu = cfg.drivers["taurus-pdu-1"]
    assert (pdu.preset, pdu.outlets, pdu.port, pdu.version, pdu.period) == ("eaton", [1, 2, 3], 1161, "2c", 1.0)
    assert f"# from {DATA / 'two-psu.yaml'}:16 nodes.taurus-1.pdu[1]" in text


def test_an_upstream_pdu_that_is_not_measured_gives_no_probe_and_says_so(key):
    needs("snmp")
    text, cfg = generate("upstream-pdu.yaml", key)
    assert mapping(cfg) == {"lyon.wattmetre-1.0": ("lyon.neowise-1",), "lyon.wattmetre-1.1": ("lyon.neowise-2",)}
    nodes = topology(cfg).nodes()
    assert "lyon.neowise-3" not in nodes and set(cfg.drivers) == {"wattmetre-1"}
    notes = re.sub(r"\n#\s+", " ", text.split("# Not configured")[1])  # comments wrapped at 110 columns
    assert "PDU pdu1a" in notes and "is not measured (monitored: false): no probe for it" in notes
    assert re.search(r"node lyon\.neowise-3 \(.*upstream-pdu\.yaml:24\) has no power probe: it is fed only by "
                     r"PDUs that are not measured: pdu1a, pdu1b", notes), notes


def test_two_pdus_feeding_one_node_and_bmcs(key):
    needs("snmp", "redfish", "ipmi")
    _, cfg = generate("two-pdus.yaml", key)
    assert mapping(cfg) == {
        "lille.pdu-b1p1.1": ("lille.chetemi-1",), "lille.pdu-b1p2.1": ("lille.chetemi-1",),
        "lille.pdu-b1p1.2": ("lille.chetemi-2",), "lille.pdu-b1p2.2": ("lille.chetemi-2",),
        # chetemi-1's outlets measure it: its BMC stands alone, so the node is not counted twice
        "lille.chetemi-1.bmc": (),
        "lille.chetemi-3.bmc": ("lille.chetemi-3",),
    }
    topo = topology(cfg)
    assert topo.node_probes("lille.chetemi-1") == ["lille.pdu-b1p1.1", "lille.pdu-b1p2.1"]
    assert topo.resolve("lille.chetemi-3") == "lille.chetemi-3.bmc"
    assert cfg.drivers["chetemi-1-bmc"].url == "https://chetemi-1-bmc"
    assert "not added to the node" in cfg.probes["lille.chetemi-1.bmc"].description


def test_switch_ports_map_to_nodes_and_an_uplink_to_none(key):
    needs("snmp-switch")
    _, cfg = generate("network.yaml", key)
    assert mapping(cfg) == {"nancy.gw-nancy.1": ("nancy.grisou-1",), "nancy.gw-nancy.2": ("nancy.grisou-2",),
                            "nancy.gw-nancy.3": ("nancy.grisou-2",), "nancy.gw-nancy.48": ()}
    topo = topology(cfg)
    assert topo.node_probes("nancy.grisou-2") == ["nancy.gw-nancy.2", "nancy.gw-nancy.3"]
    assert topo.resolve("nancy.grisou-2.eth1") == "nancy.gw-nancy.3"
    assert "uplink to renater-nancy" in cfg.probes["nancy.gw-nancy.48"].description


# -- the command ------------------------------------------------------------------------------
def test_the_command_writes_a_file_that_config_check_accepts(tmp_path, key, capsys):
    needs("snmp")
    out = tmp_path / "site.toml"
    code = main(["config", "from-inventory", str(DATA / "two-psu.yaml"), "-o", str(out), "--bus-key", str(key)])
    assert code == 0, capsys.readouterr().err
    assert "1 driver section(s), 3 probe(s) (3 mapped to nodes)" in capsys.readouterr().err
    assert main(["config", "check", str(out)]) == 0


def test_the_command_names_the_yaml_line_and_key_of_a_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: lyon\npdus:\n  pdu-1: {vendor: Eaton}\nnodes:\n  n-1:\n    pdu:\n"
                   "      - {uid: pdu-l, port: 1}\n")
    assert main(["config", "from-inventory", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7: nodes.n-1.pdu[0].uid: no PDU named 'pdu-l'" in err and "did you mean 'pdu-1'?" in err


# -- errors: file, line, key and a fix ----------------------------------------------------------
def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        inventory.loads(text, "site.yaml")
    return str(info.value).splitlines()


def test_every_schema_problem_is_reported_at_its_line():
    lines = problems("site: lyon\n"
                     "pdus:\n"
                     "  pdu-1:\n"
                     "    vendor: Eaton\n"
                     "    snmp: {version: 2c, comunity: private}\n"
                     "    outlets: many\n"
                     "nodes:\n"
                     "  n-1:\n"
                     "    pdu:\n"
                     "      - {uid: pdu-1, port: -1}\n")
    assert lines == [
        ("site.yaml:5: pdus.pdu-1.snmp.comunity: unknown key (expected one of version, community, port, user, "
         "auth_protocol, auth_key, priv_protocol, priv_key). Hint: did you mean 'community'?"),
        ("site.yaml:6: pdus.pdu-1.outlets: 'many' is not a whole number (expected a whole number: the number of "
         "outlets, to check the ports)"),
        ("site.yaml:10: nodes.n-1.pdu[0].port: -1 is out of range (expected at least 0: the outlet number "
         "(none: a PDU measured as a whole))"),
    ]


def test_wiring_problems_say_what_to_do():
    lines = problems("site: lyon\n"
                     "pdus:\n"
                     "  pdu-1: {vendor: Eaton, outlets: 8}\n"
                     "  pdu-2: {vendor: Amazing PDU}\n"
                     "nodes:\n"
                     "  n-1:\n"
                     "    pdu:\n"
                     "      - {uid: pdu-1}\n"
                     "      - {uid: pdu-1, port: 9}\n")
    assert lines[0].startswith("site.yaml:4: pdus.pdu-2.vendor: no OIDs known for vendor 'Amazing PDU'")
    assert "Hint: set `preset:`, or give `oids:`" in lines[0]
    assert lines[1].startswith("site.yaml:8: nodes.n-1.pdu[0]: missing `port`: this PDU is measured per outlet")
    assert "per_outlet: false" in lines[1]
    assert lines[2].startswith("site.yaml:9: nodes.n-1.pdu[1].port: outlet 9 is past the PDU's 8 outlets")


def test_duplicate_keys_and_yaml_syntax_errors_name_their_lines():
    assert problems("site: lyon\npdus:\n  p: {vendor: APC}\n  p: {vendor: Eaton}\n") == [
        ("site.yaml:4: pdus.p: duplicate key (first at line 3). Hint: each name once: YAML would keep only the "
         "last one")]
    assert problems("site: lyon\npdus:\n  p: {vendor: APC\n")[0].startswith("site.yaml:4: YAML syntax error")
    assert problems("site: lyon!\n")[0].startswith("site.yaml:1: site: 'lyon!' is not a site name")


def test_a_section_the_driver_refuses_points_at_the_inventory(key):
    needs("snmp")
    # the inventory accepts any USM protocol name; the driver knows which ones exist
    inv, src = inventory.loads("site: lyon\npdus:\n  p:\n    vendor: APC\n"
                               "    snmp: {version: 3, user: mon, auth_protocol: rot13, auth_key: '12345678'}\n"
                               "nodes:\n  n: {pdu: [{uid: p, port: 1}]}\n", "site.yaml")
    with pytest.raises(ConfigError) as info:
        inventory_toml.generate(inv, src, bus_key=str(key))
    assert str(info.value).startswith("site.yaml:3: pdus.p: makes a [drivers] section the snmp driver refuses: "
                                      "'rot13' is not allowed")


# -- the generated sections read real agents ------------------------------------------------------
def test_generated_sections_read_a_real_pdu_and_switch_agent(tmp_path, key):
    needs("snmp", "snmp-switch")
    from peers.snmpsim import SnmpSim, octets_in, pdu_records, power_w, responder, switch_records

    if responder() is None:
        pytest.skip("snmpsim-command-responder is not installed (pip install snmpsim)")
    sim = SnmpSim(tmp_path / "sim")
    sim.write("pdu", pdu_records("eaton", 8))
    sim.write("sw", switch_records(4))
    site = (f"site: lab\npdus:\n  pdu-1:\n    vendor: Eaton\n    host: 127.0.0.1\n"
            f"    snmp: {{community: pdu, port: {sim.port}}}\n"
            f"switches:\n  sw-1:\n    host: 127.0.0.1\n    snmp: {{community: sw, port: {sim.port}}}\n"
            f"    ports:\n      2: {{node: n-2}}\n      Gi1/0/4: {{uplink: core}}\n"
            f"nodes:\n  n-1: {{pdu: [{{uid: pdu-1, port: 3}}, {{uid: pdu-1, port: 5}}]}}\n"
            f"  n-2: {{pdu: [{{uid: pdu-1, port: 6}}]}}\n")
    inv, src = inventory.loads(site, "site.yaml")
    cfg = config.loads(inventory_toml.generate(inv, src, bus_key=str(key)), tmp_path / "w.toml")
    with sim:
        read = {}
        for section in cfg.drivers.values():
            driver = plugins.load(section.type)(section, site=cfg.site)
            try:
                read.update({(s.probe, s.metric): s.value for s in driver.read().samples()})
            finally:
                driver.close()
    assert {p: read[(p, "power")] for p in ("lab.pdu-1.3", "lab.pdu-1.5", "lab.pdu-1.6")} == {
        "lab.pdu-1.3": power_w(3), "lab.pdu-1.5": power_w(5), "lab.pdu-1.6": power_w(6)}
    assert read[("lab.sw-1.2", "network_in")] == octets_in(2)
    assert read[("lab.sw-1.Gi1/0/4", "network_in")] == octets_in(4)   # a port named by its ifName
    assert mapping(cfg) == {"lab.pdu-1.3": ("lab.n-1",), "lab.pdu-1.5": ("lab.n-1",), "lab.pdu-1.6": ("lab.n-2",),
                            "lab.sw-1.2": ("lab.n-2",), "lab.sw-1.Gi1/0/4": ()}
