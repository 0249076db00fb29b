"""The `snmp-switch` driver against a real SNMP agent (snmpsim) serving IF-MIB counters.

Ports map to the probes of the nodes plugged into them (by ifIndex or by ifName); the 64-bit
counters are read in one GET for all ports, and an agent without them is read through the 32-bit
ones, published as counters that wrap at 2**32 -- which the traffic maths then unwraps.
"""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
from peers.snmpsim import (
    COUNTER32,
    IF_IN,
    V3_USER,
    SnmpSim,
    UdpRelay,
    free_udp_port,
    octets_in,
    octets_out,
    probe_options,
    responder,
    switch_records,
)
from pydantic import ValidationError

from wattsight import cli
from wattsight.drivers.snmp_switch import SnmpSwitchConfig, SnmpSwitchDriver
from wattsight.energy import wrap_deltas
from wattsight.errors import MeterReplyError, MeterUnreachable
from wattsight.sample import counter_range, wrapping_counter

pytestmark = pytest.mark.skipif(responder() is None, reason="snmpsim-command-responder is not installed "
                                                            "(pip install snmpsim; test.sh does)")
T = 1_700_000_000_456
WRAP32 = wrapping_counter(2**32)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    agent = SnmpSim(tmp_path_factory.mktemp("snmpsim-switch"))
    agent.write("switch", switch_records(24), v3=True)
    agent.write("old", switch_records(24, hc=False))           # an agent with 32-bit counters only
    agent.write("renumbered", switch_records(4, first_index=10101))
    agent.write("live", switch_records(2, hc=False))
    agent.write("public", switch_records(4))  # what the SAMPLE section reads
    with agent:
        yield agent


def make(port: int, **kw) -> SnmpSwitchDriver:
    settings = {"type": "snmp-switch", "host": "127.0.0.1", "port": port, "community": "switch", "ports": 24,
                "probe": "node-{port}", "timeout": 1.0, **kw}
    return SnmpSwitchDriver(SnmpSwitchConfig.model_validate(settings, strict=False), site="lyon", clock=lambda: T)


def read(driver: SnmpSwitchDriver) -> dict:
    try:
        batch = driver.read()
    finally:
        driver.close()
    assert np.all(batch.t == T)
    return {(s.probe, s.metric): (s.value, s.unit, s.kind) for s in batch.samples()}


def test_every_port_gives_64_bit_byte_counters_to_its_nodes_probe(sim):
    got = read(make(sim.port))
    assert len(got) == 48
    for n in (1, 7, 24):
        assert got[(f"lyon.node-{n}", "network_in")] == (float(octets_in(n)), "B", "counter")
        assert got[(f"lyon.node-{n}", "network_out")] == (float(octets_out(n)), "B", "counter")


def test_ports_by_ifname_and_by_ifindex(sim):
    got = read(make(sim.port, ports={"Gi1/0/3": "node-a", "4": "paris.node-b"}))
    assert got == {("lyon.node-a", "network_in"): (float(octets_in(3)), "B", "counter"),
                   ("lyon.node-a", "network_out"): (float(octets_out(3)), "B", "counter"),
                   ("paris.node-b", "network_in"): (float(octets_in(4)), "B", "counter"),
                   ("paris.node-b", "network_out"): (float(octets_out(4)), "B", "counter")}


def test_ifnames_find_renumbered_interfaces(sim):
    got = read(make(sim.port, community="renumbered", ports={"Gi1/0/2": "node-2"}))
    assert got[("lyon.node-2", "network_in")][0] == octets_in(2)


def test_24_ports_are_read_with_one_snmp_request(sim):
    with UdpRelay(sim.address) as relay:
        driver = make(relay.port)
        counts = []
        for _ in range(3):
            before = relay.requests
            assert len(driver.read()) == 48
            counts.append(relay.requests - before)
        driver.close()
    assert counts == [1, 1, 1]


def test_without_64_bit_counters_the_32_bit_ones_are_read_as_wrapping_counters(sim):
    with UdpRelay(sim.address) as relay:
        driver = make(relay.port, community="old")
        counts = []
        for _ in range(2):
            before = relay.requests
            got = {(s.probe, s.metric): (s.value, s.kind) for s in driver.read().samples()}
            counts.append(relay.requests - before)
        driver.close()
    assert counts == [2, 1]  # the first read finds out, once
    assert got[("lyon.node-5", "network_in")] == (float(octets_in(5) % 2**32), WRAP32)
    assert got[("lyon.node-5", "network_out")] == (float(octets_out(5) % 2**32), WRAP32)
    assert counter_range(WRAP32) == 2**32


def test_32_bit_counters_on_request(sim):
    got = read(make(sim.port, counters="32", ports=[2]))
    assert got[("lyon.node-2", "network_in")] == (float(octets_in(2) % 2**32), "B", WRAP32)


def test_snmp_v1_reads_the_32_bit_counters(sim):
    got = read(make(sim.port, version="1", ports=[2]))
    assert got[("lyon.node-2", "network_out")] == (float(octets_out(2) % 2**32), "B", WRAP32)


def test_snmp_v3(sim):
    v3 = {k: V3_USER[k] for k in ("user", "auth_protocol", "auth_key", "priv_protocol", "priv_key")}
    got = read(make(sim.port, version="3", ports={"Gi1/0/9": "node-9"}, timeout=3.0, **v3))
    assert got[("lyon.node-9", "network_in")] == (float(octets_in(9)), "B", "counter")


def test_a_32_bit_counter_that_wraps_between_reads_counts_the_bytes_that_passed(sim):
    records = switch_records(2, hc=False)
    driver = make(sim.port, community="live", ports=[1])
    values = []
    try:
        for counter in (2**32 - 1000, 500):  # 1500 B passed, across the wrap
            records[f"{IF_IN}.1"] = (COUNTER32, counter)
            sim.write("live", records)
            batch = driver.read()
            values.append(next(s.value for s in batch.samples() if s.metric == "network_in"))
        kind = next(s.kind for s in batch.series if s.metric == "network_in")
    finally:
        driver.close()
    assert values == [2**32 - 1000, 500]
    assert wrap_deltas(np.array(values), counter_range(kind)).tolist() == [1500.0]


# -- errors ------------------------------------------------------------------------------------
def test_64_bit_counters_required_but_missing_says_what_to_set(sim):
    with pytest.raises(MeterReplyError, match=r'1\.3\.6\.1\.2\.1\.31\.1\.1\.1\.6\.3 .*ifHCInOctets.*counters = "auto"'):
        read(make(sim.port, community="old", counters="64", ports=[3]))


def test_a_port_the_switch_does_not_have(sim):
    with pytest.raises(MeterReplyError, match=r"ifIndex 99, probe lyon.node-99\) answered noSuch.*check `ports`"):
        read(make(sim.port, ports=[1, 99]))


def test_an_interface_name_the_switch_does_not_have(sim):
    with pytest.raises(MeterReplyError, match=r"no interface named Te9/9.*Gi1/0/1"):
        read(make(sim.port, ports={"Te9/9": "node-x"}))


def test_no_agent_is_unreachable_naming_the_agent_and_probes():
    port = free_udp_port()
    with pytest.raises(MeterUnreachable, match=rf"127\.0\.0\.1:{port}.*no answer.*lyon\.node-1"):
        read(make(port, timeout=0.5))


def test_a_wrong_community_is_no_answer(sim):
    with pytest.raises(MeterUnreachable, match="no answer: host down or wrong community/credentials") as err:
        read(make(sim.port, community="guess-this", timeout=0.5))
    assert "guess-this" not in str(err.value)


def test_configuration_errors():
    base = {"type": "snmp-switch", "host": "sw"}
    with pytest.raises(ValidationError, match="no 64-bit counters"):
        SnmpSwitchConfig.model_validate(base | {"ports": 4, "version": "1", "counters": "64"})
    with pytest.raises(ValidationError, match="must contain {port}"):
        SnmpSwitchConfig.model_validate(base | {"ports": 4, "probe": "node"})
    with pytest.raises(ValidationError, match="not numbers"):
        SnmpSwitchConfig.model_validate(base | {"ports": {"Gi1/0/1": "n"}, "ports_by": "ifindex"})


def test_wattsight_probe_snmp_switch_once(sim, capsys):
    code = cli.main(["probe", "snmp-switch", "--host", "127.0.0.1", "--port", str(sim.port), "--community", "old",
                     "--ports", "1,2", "--probe", "node-{port}", "--once", "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["probe"], r["metric"], r["value"], r["kind"]) for r in rows} == {
        (f"local.node-{n}", m, float(f(n) % 2**32), WRAP32)
        for n in (1, 2) for m, f in (("network_in", octets_in), ("network_out", octets_out))}


def test_every_setting_of_the_sample_can_be_given_to_wattsight_probe(sim, capsys):
    section = next(iter(tomllib.loads(SnmpSwitchDriver.SAMPLE)["drivers"].values()))
    args = probe_options(section | {"host": "127.0.0.1", "port": sim.port})
    assert cli.main(["probe", "snmp-switch", *args, "--once", "--json"]) == 0, capsys.readouterr().err
    rows = {(r["probe"], r["metric"]): r["value"] for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[("local.node-3", "network_out")] == octets_out(3)
