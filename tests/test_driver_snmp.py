"""The `snmp` PDU driver against a real SNMP agent (snmpsim) serving each vendor's OIDs.

Every preset is read from recorded-style data whose values make a wrong scale show; a UDP
relay counts the datagrams to show that a read of a 24-outlet PDU is one SNMP request; v1,
v2c and v3 (auth + privacy) are read; and each error comes from the real agent.
"""

from __future__ import annotations

import asyncio
import json
import tomllib

import numpy as np
import pytest
from peers._common import wait_until
from peers.snmpsim import (
    GAUGE32,
    INTEGER,
    OCTETS,
    V3_USER,
    SnmpSim,
    UdpRelay,
    energy_wh,
    free_udp_port,
    pdu_records,
    power_w,
    probe_options,
    responder,
)
from pydantic import ValidationError

from wattsight import cli
from wattsight.drivers.snmp import SnmpPduConfig, SnmpPduDriver
from wattsight.errors import MeterAuthError, MeterReplyError, MeterUnreachable
from wattsight.sample import wrapping_counter

pytestmark = pytest.mark.skipif(responder() is None, reason="snmpsim-command-responder is not installed "
                                                            "(pip install snmpsim; test.sh does)")

PRESETS = ("apc", "eaton", "raritan", "servertech", "liebert")
T = 1_700_000_000_123
APC_OUTLET_POWER = "1.3.6.1.4.1.318.1.1.26.9.4.3.1.7"


def broken_records() -> dict:
    """An APC PDU whose outlet 2 reads 250 kW, outlet 3 'not available' (-1), outlet 4 a string."""
    rec = pdu_records("apc", 24)
    rec[f"{APC_OUTLET_POWER}.2"] = (INTEGER, 250_000)
    rec[f"{APC_OUTLET_POWER}.3"] = (INTEGER, -1)
    rec[f"{APC_OUTLET_POWER}.4"] = (OCTETS, "n/a")
    return rec


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    agent = SnmpSim(tmp_path_factory.mktemp("snmpsim"), max_varbinds=64)
    for preset in PRESETS:
        agent.write(preset, pdu_records(preset, 24))
    agent.write("v3", pdu_records("apc", 24), v3=True)  # SNMPv3 (empty context) is served this file
    agent.write("apc40", pdu_records("apc", 40))
    agent.write("broken", broken_records())
    agent.write("public", pdu_records("apc", 24))  # what the SAMPLE section reads
    agent.write("live", pdu_records("apc", 24))  # rewritten by a test: snmpsim only finds files at start
    rec = pdu_records("raritan", 2)
    rec["1.3.6.1.4.1.13742.6.3.5.4.1.7.1.1.5"] = (GAUGE32, 42)  # 42 decimal digits
    agent.write("raritan-bad", rec)
    with agent:
        yield agent


def make(port: int, *, clock=lambda: T, **kw) -> SnmpPduDriver:
    settings = {"type": "snmp", "host": "127.0.0.1", "port": port, "preset": "apc", "community": "apc",
                "outlets": 24, "probe": "pdu-1-{outlet}", "total": "pdu-1", "timeout": 1.0, **kw}
    return SnmpPduDriver(SnmpPduConfig.model_validate(settings, strict=False), site="lyon", clock=clock)


def read(driver: SnmpPduDriver) -> dict:
    try:
        batch = driver.read()
    finally:
        driver.close()
    assert np.all(batch.t == T)
    return {(s.probe, s.metric): (s.value, s.unit, s.kind) for s in batch.samples()}


def expected(preset: str) -> dict:
    """What every preset's data means in W and J (see peers.snmpsim.pdu_records)."""
    tenth = preset == "raritan"  # Raritan: power with one decimal digit, +0.3 W
    kind = wrapping_counter(2**32 * 3600) if preset in ("eaton", "raritan") else "counter"
    out = {}
    for i in range(1, 25):
        out[(f"lyon.pdu-1-{i}", "power")] = (power_w(i) + (0.3 if tenth else 0), "W", "gauge")
        out[(f"lyon.pdu-1-{i}", "energy")] = (energy_wh(i) * 3600.0, "J", kind)
    total_w = sum(power_w(i) for i in range(1, 25))
    out[("lyon.pdu-1", "power")] = (float(total_w), "W", "gauge")
    out[("lyon.pdu-1", "energy")] = (sum(energy_wh(i) for i in range(1, 25)) * 3600.0, "J", kind)
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_reads_watts_and_joules_from_its_vendors_oids(sim, preset):
    got = read(make(sim.port, preset=preset, community=preset))
    want = expected(preset)
    assert got.keys() == want.keys()
    for key, (value, unit, kind) in want.items():
        assert got[key][0] == pytest.approx(value, rel=1e-12), key
        assert got[key][1:] == (unit, kind), key
    # the data were chosen so that scales differ visibly: outlet 1 draws 107 W and has used 1123.4 kWh
    assert got[("lyon.pdu-1-1", "energy")][0] == pytest.approx(1_123_400 * 3600)


def test_a_24_outlet_pdu_is_read_with_one_snmp_request(sim):
    with UdpRelay(sim.address) as relay:
        driver = make(relay.port)
        counts = []
        for _ in range(3):
            before = relay.requests
            assert len(driver.read()) == 24 * 2 + 2
            counts.append(relay.requests - before)
        driver.close()
    assert counts == [1, 1, 1]


def test_raritan_reads_its_decimal_digits_once_then_one_request_per_read(sim):
    with UdpRelay(sim.address) as relay:
        driver = make(relay.port, preset="raritan", community="raritan")
        counts = []
        for _ in range(3):
            before = relay.requests
            driver.read()
            counts.append(relay.requests - before)
        driver.close()
    assert counts == [2, 1, 1]


def test_max_varbinds_splits_a_read_for_an_agent_that_takes_fewer_oids(sim):
    # 40 outlets and the total are 82 OIDs: at most 30 per request makes 3 requests, sent together.
    with UdpRelay(sim.address) as relay:
        driver = make(relay.port, community="apc40", outlets=40, max_varbinds=30)
        batch = driver.read()
        driver.close()
    assert relay.requests == 3 and len(batch) == 82
    assert {s.value for s in batch.samples() if s.probe == "lyon.pdu-1-40" and s.metric == "power"} == {380.0}


def test_snmp_v1(sim):
    got = read(make(sim.port, version="1"))
    assert got[("lyon.pdu-1-5", "power")] == (135.0, "W", "gauge")
    assert got[("lyon.pdu-1", "power")][0] == 4500.0


def test_snmp_v3_with_authentication_and_privacy(sim):
    v3 = {k: V3_USER[k] for k in ("user", "auth_protocol", "auth_key", "priv_protocol", "priv_key")}
    got = read(make(sim.port, version="3", timeout=3.0, **v3))  # the first v3 read also discovers the engine
    assert got == expected("apc")


def test_snmp_v3_md5_des(tmp_path):
    keys = {"auth_protocol": "md5", "priv_protocol": "des"}
    agent = SnmpSim(tmp_path, v3=keys)
    agent.write("v3", pdu_records("eaton", 24), v3=True)
    with agent:
        got = read(make(agent.port, preset="eaton", version="3", user=V3_USER["user"], auth_key=V3_USER["auth_key"],
                        priv_key=V3_USER["priv_key"], timeout=3.0, **keys))
    assert got == expected("eaton")


def test_values_changed_on_the_agent_are_read_at_the_next_read(sim):
    records = pdu_records("apc", 24)
    sim.write("live", records)
    driver = make(sim.port, community="live", outlets=[1], total="")
    try:
        first = {s.metric: s.value for s in driver.read().samples()}
        records[f"{APC_OUTLET_POWER}.1"] = (INTEGER, 333)
        records["1.3.6.1.4.1.318.1.1.26.9.4.3.1.11.1"] = (INTEGER, energy_wh(1) // 100 + 1)
        sim.write("live", records)
        second = {s.metric: s.value for s in driver.read().samples()}
    finally:
        driver.close()
    assert first == {"power": 107.0, "energy": energy_wh(1) * 3600.0}
    assert second == {"power": 333.0, "energy": energy_wh(1) * 3600.0 + 360_000}  # +0.1 kWh


def test_the_agent_stopped_and_started_again_on_the_same_port(tmp_path):
    agent = SnmpSim(tmp_path)
    agent.write("apc", pdu_records("apc", 24))
    driver = make(agent.port, timeout=0.5)
    try:
        with agent:
            assert len(driver.read()) == 50
        with pytest.raises(MeterUnreachable):
            driver.read()
        with agent:
            # the same driver reads again by itself; on a loaded machine a read may still miss the
            # short time-out while the new agent warms up, so retry as the runner would
            assert len(wait_until(lambda: _read_or_none(driver), 30, "a read after the restart")) == 50
    finally:
        driver.close()


def _read_or_none(driver):
    try:
        return driver.read()
    except MeterUnreachable:
        return None


def test_the_driver_closes_from_inside_a_running_event_loop_as_the_runner_does(sim):
    driver = make(sim.port)
    driver.read()

    async def close() -> None:
        driver.close()

    asyncio.run(close())
    assert driver.client._loop is None


def test_a_generic_pdu_with_oids_and_scales_from_the_configuration(sim):
    # The Eaton data read as a "generic" PDU: W as they are, energy in Wh, one outlet as a table.
    got = read(make(sim.port, community="eaton", preset="generic", outlets={"7": "gpu-node-3"}, total="",
                    power_oid="1.3.6.1.4.1.534.6.6.7.6.5.1.3.0.{outlet}", power_scale=0.5,
                    energy_oid=".1.3.6.1.4.1.534.6.6.7.6.5.1.4.0.{outlet}", energy_scale=3600.0,
                    energy_wrap=2.0**32))
    assert got == {("lyon.gpu-node-3", "power"): (power_w(7) * 0.5, "W", "gauge"),
                   ("lyon.gpu-node-3", "energy"): (energy_wh(7) * 3600.0, "J", wrapping_counter(2**32 * 3600))}


# -- errors, from the real agent ------------------------------------------------------------
def test_no_agent_is_unreachable_naming_the_agent_and_probes():
    port = free_udp_port()
    with pytest.raises(MeterUnreachable) as err:
        read(make(port, timeout=0.5))
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "lyon.pdu-1-1" in text and "no answer" in text


def test_a_host_name_that_does_not_resolve_is_unreachable():
    with pytest.raises(MeterUnreachable, match="cannot resolve .*`host`|no answer"):  # a slow resolver: no answer
        read(make(161, host="pdu-1.invalid", timeout=3.0))


def test_a_wrong_community_gets_no_answer_and_is_not_shown(sim):
    with pytest.raises(MeterUnreachable, match="no answer: host down or wrong community/credentials") as err:
        read(make(sim.port, community="s3cret-guess", timeout=0.5))
    assert "s3cret-guess" not in str(err.value)


@pytest.mark.parametrize(("change", "says"), [({"auth_key": "not-the-key"}, "auth_key"),
                                              ({"user": "mallory"}, "unknown user"),
                                              ({"priv_key": "not-the-priv-key"}, "priv_key")])
def test_wrong_v3_credentials_are_an_auth_error_without_the_secrets(sim, change, says):
    v3 = {k: V3_USER[k] for k in ("user", "auth_protocol", "auth_key", "priv_protocol", "priv_key")} | change
    driver = make(sim.port, version="3", timeout=3.0, **v3)
    assert V3_USER["auth_key"] not in repr(driver.config) and "not-the-key" not in repr(driver.config)
    with pytest.raises(MeterAuthError, match=says) as err:
        read(driver)
    for secret in (V3_USER["auth_key"], V3_USER["priv_key"], "not-the-key", "not-the-priv-key"):
        assert secret not in str(err.value)


def test_an_outlet_the_pdu_does_not_have_names_the_oid_the_outlet_and_what_to_set(sim):
    with pytest.raises(MeterReplyError) as err:
        read(make(sim.port, outlets=25))
    text = str(err.value)
    assert f"{APC_OUTLET_POWER}.25" in text and "outlet 25" in text and "noSuchInstance" in text
    assert "apc" in text and "`outlets`" in text and "lyon.pdu-1-25" in text


def test_snmp_v1_reports_the_oid_the_agent_did_not_have(sim):
    with pytest.raises(MeterReplyError, match=rf"{APC_OUTLET_POWER}\.25 .*noSuchName"):
        read(make(sim.port, version="1", outlets=25))


def test_an_oid_of_another_vendor_is_no_such_object(sim):
    with pytest.raises(MeterReplyError, match=r"answered noSuch(Object|Instance).*`total_power_oid`"):
        read(make(sim.port, community="eaton", outlets=[], total="pdu-1"))


@pytest.mark.parametrize(("outlet", "says"), [(2, r"250000 = 250000 W, out of range .*`max_power`"),
                                              (3, "not available"),
                                              (4, "the string b'n/a', not a number")])
def test_a_reply_out_of_range_is_a_reply_error(sim, outlet, says):
    with pytest.raises(MeterReplyError, match=says) as err:
        read(make(sim.port, community="broken", outlets=[outlet], total=""))
    assert f"outlet {outlet}" in str(err.value)


def test_raritan_decimal_digits_out_of_range_are_a_reply_error(sim):
    with pytest.raises(MeterReplyError, match="decimal digits .* 42"):
        read(make(sim.port, preset="raritan", community="raritan-bad", outlets=2, total=""))


# -- configuration and the command line --------------------------------------------------------
def test_configuration_errors_say_what_to_set():
    base = {"type": "snmp", "host": "pdu", "preset": "generic", "outlets": 4}
    with pytest.raises(ValidationError, match="`power_oid`"):
        SnmpPduConfig.model_validate(base)
    with pytest.raises(ValidationError, match="needs `power_scale`"):
        SnmpPduConfig.model_validate(base | {"power_oid": "1.3.6.1.4.1.9.1.{outlet}", "metrics": ["power"]})
    with pytest.raises(ValidationError, match="must contain {outlet}"):
        SnmpPduConfig.model_validate(base | {"preset": "apc", "probe": "pdu"})
    with pytest.raises(ValidationError, match="not a numeric OID"):
        SnmpPduConfig.model_validate(base | {"power_oid": "PowerNet-MIB::x.{outlet}", "power_scale": 1.0,
                                             "metrics": ["power"]})
    with pytest.raises(ValidationError, match="needs `user`"):
        SnmpPduConfig.model_validate(base | {"preset": "apc", "version": "3"})
    with pytest.raises(ValidationError, match="nothing to read"):
        SnmpPduConfig.model_validate(base | {"preset": "apc", "outlets": 0})


def test_probes_come_from_the_configuration_without_asking_the_agent():
    driver = make(free_udp_port(), outlets={"3": "node-3", "4": "paris.node-4"})
    ids = [p.id for p in driver.probes()]
    assert ids == ["lyon.node-3", "paris.node-4", "lyon.pdu-1"]
    assert all(p.driver == "snmp" for p in driver.probes())


def test_wattsight_probe_snmp_once(sim, capsys):
    args = ["probe", "snmp", "--host", "127.0.0.1", "--port", str(sim.port), "--community", "servertech",
            "--preset", "servertech", "--outlets", "24", "--probe", "pdu-1-{outlet}", "--total", "pdu-1"]
    assert cli.main([*args, "--once", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    got = {(r["probe"], r["metric"]): r["value"] for r in rows}
    assert got[("local.pdu-1-24", "power")] == power_w(24)
    assert got[("local.pdu-1", "energy")] == sum(energy_wh(i) for i in range(1, 25)) // 100 * 360_000
    assert cli.main([*args, "--once"]) == 0
    assert capsys.readouterr().out.split("\n", 1)[0].split()[:2] == ["probe", "metric"]


def test_every_setting_of_the_sample_can_be_given_to_wattsight_probe(sim, capsys):
    section = next(iter(tomllib.loads(SnmpPduDriver.SAMPLE)["drivers"].values()))
    args = probe_options(section | {"host": "127.0.0.1", "port": sim.port})
    assert cli.main(["probe", "snmp", *args, "--once", "--json"]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 50 and {"local.pdu-1-24", "local.pdu-1"} <= {r["probe"] for r in rows}


def test_wattsight_probe_snmp_says_what_failed(sim, capsys):
    code = cli.main(["probe", "snmp", "--host", "127.0.0.1", "--port", str(sim.port), "--community", "apc",
                     "--preset", "apc", "--outlets", "30", "--probe", "p-{outlet}", "--once"])
    assert code == 1
    assert "outlet 25" in capsys.readouterr().err
