"""Converting a Kwapi / kwapi-g5k drivers.conf into a wattsight configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from wattsight import plugins
from wattsight.config import loads
from wattsight.errors import ConfigError
from wattsight.kwapi_import import import_kwapi

KWAPI = Path(__file__).parent / "data" / "kwapi"
needs_dummy = pytest.mark.skipif("dummy" not in plugins.names(), reason="the dummy driver is not installed")


# -- Kwapi import ---------------------------------------------------------------------------------
@needs_dummy
def test_kwapi_dummy_file_round_trips():
    path = KWAPI / "openstack-dummy.conf"
    cfg = loads(import_kwapi(path.read_text(), str(path)))
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
        "gw-lyon-IN": "snmp"}
    pdu = drivers["taurus-pdu1"]
    assert (pdu["host"], pdu["version"], pdu["community"], pdu["period"]) == (
        "taurus-pdu1.lyon.grid5000.fr", "2c", "public", 1.0)
    assert pdu["probes"] == [f"lyon.taurus-pdu1.{i}" for i in (1, 2, 4, 5)]
    assert "positions (1-based) of these probes: 1, 2, 4, 5; skipped (None, not read): 3" in text
    assert drivers["sagittaire-pdu"]["oid"] == "1.3.6.1.4.1.13742.4.1.2.2.1.7"
    assert drivers["orion-1"]["sensor"] == "Power Meter" and "cache = 'yes'" in text  # kept as a comment
    assert drivers["gw-lyon-IN"]["metrics"] == ["network_in"]
    assert data["probes"]["lyon.taurus-pdu1.4"]["nodes"] == ["lyon.taurus-3", "lyon.taurus-4"]
    assert "the 'ipmi' driver comes in a later release" in text
    assert "check_drivers_interval = '60'" in text  # nothing dropped silently


def test_kwapi_wattsup_file_without_secret():
    path = KWAPI / "wattsup-lab.conf"
    text = import_kwapi(path.read_text(), str(path))
    data = tomllib.loads(text)
    assert data["drivers"]["bench-2"] == {"type": "serial", "probes": ["lab.bench-2"], "protocol": "wattsup",
                                          "device": "/dev/ttyUSB1"}
    assert "baudrate = 115200" in text and "enable_signing = false" in text
    assert data["bus"] == {"secret_file": "/etc/wattsight/bus.key"} and "head -c 32" in text


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
    ("[a]\nthis is not ini\n", 2, "key = value"),
])
def test_kwapi_errors(section, line, words):
    with pytest.raises(ConfigError) as info:
        import_kwapi(section, "drivers.conf")
    assert info.value.line == line and words in str(info.value)
    assert str(info.value).startswith("drivers.conf:")


# -- docs -----------------------------------------------------------------------------------------
