"""The ipmi driver against a real BMC: OpenIPMI's ipmi_sim (tests/peers/ipmi_sim.py).

Three simulated BMCs: one that answers DCMI (through the C plugin built at fixture time) and has
two PSU sensors in Watts, one without DCMI with one Watts sensor (``Pwr Consumption``), and one
with neither.  Every one also has an ``Inlet Temp`` sensor in degrees C, which must never be read
as power.  Each test sets the power it expects, on the peer, at run time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from peers import ipmi_sim
from peers.ipmi_sim import READER, IpmiSim, free_port, start_many
from pydantic import SecretStr

from wattsight import cli
from wattsight.drivers.ipmi import IpmiConfig, IpmiDriver, sensor_slug
from wattsight.drivers.ipmi_clients import NoDcmi, PyghmiClient, SensorValue, parse_dcmi, parse_sdr_csv
from wattsight.errors import MeterAuthError, MeterReplyError, MeterUnreachable
from wattsight.runner import Runner

pytestmark = pytest.mark.skipif(ipmi_sim.missing() is not None, reason=str(ipmi_sim.missing()))
CLIENTS = ["pyghmi", "ipmitool"]
T = 1_700_000_000_123  # the injected clock, ms


@pytest.fixture(scope="module")
def dcmi_bmc(tmp_path_factory):
    why = ipmi_sim.dcmi_missing()
    if why:
        pytest.skip(f"the DCMI plugin for ipmi_sim cannot be built here: {why}")
    with IpmiSim(tmp_path_factory.mktemp("dcmi"), power_sensors=("PSU1 Input", "PSU2 Input")) as bmc:
        yield bmc


@pytest.fixture(scope="module")
def sdr_bmc(tmp_path_factory):
    with IpmiSim(tmp_path_factory.mktemp("sdr"), dcmi=False) as bmc:
        yield bmc


@pytest.fixture(scope="module")
def bare_bmc(tmp_path_factory):
    with IpmiSim(tmp_path_factory.mktemp("bare"), dcmi=False, power_sensors=()) as bmc:
        yield bmc


def driver(bmc: IpmiSim, client: str, **kw) -> IpmiDriver:
    settings = {"type": "ipmi", "host": bmc.host, "port": bmc.port, "username": bmc.username,
                "password": bmc.password, "client": client, "name": "node-1", "privilege": "administrator", **kw}
    return IpmiDriver(IpmiConfig.model_validate(settings), site="lab", clock=lambda: T)


def read(drv: IpmiDriver) -> dict[str, float]:
    return {s.probe: s.value for s in drv.read().samples()}


# -- the power follows the peer ------------------------------------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
def test_dcmi_power_follows_the_bmc_at_run_time(dcmi_bmc, client):
    drv = driver(dcmi_bmc, client)
    try:
        for watts in (312, 1480, 96):
            dcmi_bmc.set_power(watts)
            batch = drv.read()
            (s,) = batch.samples()
            assert (s.probe, s.metric, s.value, s.unit, s.kind, s.provenance) == \
                ("lab.node-1", "power", watts, "W", "gauge", "measured")
            assert batch.t.tolist() == [T]
        assert drv.mode == "dcmi"
    finally:
        drv.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_watts_sensors_follow_the_bmc_and_the_temperature_is_never_power(sdr_bmc, client):
    drv = driver(sdr_bmc, client)
    try:
        for watts in (200, 748, 1020):
            sdr_bmc.set_power(watts)
            assert read(drv) == {"lab.node-1": watts}
        assert (drv.mode, drv.watts_sensors) == ("sdr", ["Pwr Consumption"])
    finally:
        drv.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_auto_prefers_dcmi_and_sdr_reads_the_sensors(dcmi_bmc, client):
    dcmi_bmc.set_power(400)  # 200 W on each PSU sensor
    dcmi_bmc.set_dcmi(404)   # DCMI says something else: which source was read shows
    auto, sdr = driver(dcmi_bmc, client), driver(dcmi_bmc, client, source="sdr")
    try:
        assert read(auto) == {"lab.node-1": 404}
        assert read(sdr) == {"lab.node-1": 400}
    finally:
        auto.close()
        sdr.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_an_inactive_dcmi_measurement_falls_back_to_the_sensors(dcmi_bmc, client):
    dcmi_bmc.set_power(240)
    dcmi_bmc.set_dcmi(999, active=False)
    auto, dcmi = driver(dcmi_bmc, client), driver(dcmi_bmc, client, source="dcmi")
    try:
        assert read(auto) == {"lab.node-1": 240} and auto.mode == "sdr"
        with pytest.raises(MeterReplyError, match=r'not active.*source = "sdr"'):
            dcmi.read()
    finally:
        auto.close()
        dcmi.close()
        dcmi_bmc.set_power(240)


@pytest.mark.parametrize("client", CLIENTS)
def test_each_sensor_as_its_own_probe_or_a_chosen_one(dcmi_bmc, client):
    dcmi_bmc.set_sensor("PSU1 Input", 300)
    dcmi_bmc.set_sensor("PSU2 Input", 120)
    each = driver(dcmi_bmc, client, sensors=["PSU1 Input", "PSU2 Input"], combine="each")
    one = driver(dcmi_bmc, client, sensors=["PSU2 Input"])
    try:
        assert [p.id for p in each.probes()] == ["lab.node-1.PSU1_Input", "lab.node-1.PSU2_Input"]
        assert read(each) == {"lab.node-1.PSU1_Input": 300, "lab.node-1.PSU2_Input": 120}
        assert read(one) == {"lab.node-1": 120}
        dcmi_bmc.set_sensor("PSU2 Input", 160)
        assert read(each)["lab.node-1.PSU2_Input"] == 160 and read(one) == {"lab.node-1": 160}
    finally:
        each.close()
        one.close()


@pytest.mark.parametrize("source", ["dcmi", "sdr"])
def test_pyghmi_and_ipmitool_read_the_same_values(dcmi_bmc, source):
    a, b = driver(dcmi_bmc, "pyghmi", source=source), driver(dcmi_bmc, "ipmitool", source=source)
    try:
        for watts in (88, 560, 2000):
            dcmi_bmc.set_power(watts)
            got = read(a)
            assert got == read(b) == {"lab.node-1": watts}
    finally:
        a.close()
        b.close()


def test_pyghmi_keeps_its_session_and_logs_in_again_after_the_bmc_restarts(tmp_path):
    with IpmiSim(tmp_path, dcmi=False, watts=300) as bmc:
        drv = driver(bmc, "pyghmi")
        try:
            assert read(drv) == {"lab.node-1": 300}
            session = drv.client._cmd.ipmi_session
            bmc.set_power(320)
            assert read(drv) == {"lab.node-1": 320}
            assert drv.client._cmd.ipmi_session is session  # no new login per read
            bmc.stop()
            with pytest.raises(MeterUnreachable, match="session lost"):
                drv.read()
            bmc.start()  # the same port, a new BMC that knows nothing of our session
            bmc.set_power(340)
            assert read(drv) == {"lab.node-1": 340}
            assert drv.client._cmd.ipmi_session is not session
        finally:
            drv.close()


def test_several_bmcs_on_one_host_are_told_apart(tmp_path):
    sims = start_many(tmp_path, 3, dcmi=False)
    drivers = [driver(s, "pyghmi", name=f"node-{i}") for i, s in enumerate(sims)]
    try:
        for i, s in enumerate(sims):
            s.set_power(100 + 40 * i)
        assert [read(d) for d in drivers] == [{f"lab.node-{i}": 100 + 40 * i} for i in range(3)]
    finally:
        for d in drivers:
            d.close()
        for s in sims:
            s.stop()


# -- wattsight probe ------------------------------------------------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
def test_wattsight_probe_once_prints_the_reading(sdr_bmc, client, capsys):
    sdr_bmc.set_power(612)
    args = ["probe", "ipmi", "--host", sdr_bmc.host, "--port", str(sdr_bmc.port), "--username", sdr_bmc.username,
            "--password", sdr_bmc.password, "--client", client, "--once"]
    assert cli.main([*args, "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    got = json.loads(line)
    assert (got["probe"], got["metric"], got["value"], got["unit"]) == \
        (f"local.127.0.0.1:{sdr_bmc.port}", "power", 612.0, "W")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "612" in out and "power" in out and sdr_bmc.password not in out


def test_wattsight_probe_says_what_went_wrong(sdr_bmc, capsys):
    code = cli.main(["probe", "ipmi", "--host", sdr_bmc.host, "--port", str(sdr_bmc.port), "--username",
                     sdr_bmc.username, "--password", "not-the-password", "--once"])
    err = capsys.readouterr().err
    assert code == 1 and "refused" in err and "not-the-password" not in err


# -- errors against the real peer -----------------------------------------------------------------
@pytest.mark.parametrize("client", CLIENTS)
def test_nothing_listening_is_unreachable_naming_host_and_probe(sdr_bmc, client):
    port = free_port()
    drv = driver(sdr_bmc, client, port=port)
    with pytest.raises(MeterUnreachable) as info:
        drv.read()
    assert f"127.0.0.1:{port}" in str(info.value) and "lab.node-1" in str(info.value)
    assert "`port`" in str(info.value)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_port_that_never_answers_is_unreachable_within_the_time_out(sdr_bmc, client):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # takes datagrams, answers none
        silent.bind(("127.0.0.1", 0))
        drv = driver(sdr_bmc, client, port=silent.getsockname()[1], timeout=0.4)
        with pytest.raises(MeterUnreachable, match=r"no answer from UDP 127\.0\.0\.1:\d+ within 0\.4 s"):
            drv.read()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("who", ["password", "username"])
def test_wrong_credentials_are_an_auth_error(sdr_bmc, client, who):
    wrong = {"password": "not-the-password"} if who == "password" else {"username": "nobody"}
    with pytest.raises(MeterAuthError, match="`username` and `password`") as info:
        driver(sdr_bmc, client, **wrong).read()
    assert sdr_bmc.password not in str(info.value) and "not-the-password" not in str(info.value)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_user_level_account_reads_with_privilege_user(dcmi_bmc, client):
    # ipmi_sim (like some BMCs) answers DCMI only at administrator level: "auto" falls back.
    dcmi_bmc.set_power(520)
    dcmi_bmc.set_dcmi(999)
    drv = driver(dcmi_bmc, client, username=READER, privilege="user")
    try:
        assert read(drv) == {"lab.node-1": 520} and drv.mode == "sdr"
    finally:
        drv.close()
    with pytest.raises(MeterAuthError, match=r"0xd4 \(insufficient privilege.*`privilege`"):
        driver(dcmi_bmc, client, username=READER, privilege="user", source="dcmi").read()


@pytest.mark.parametrize("client", CLIENTS)
def test_no_dcmi_and_no_watts_sensor_says_so(bare_bmc, client):
    with pytest.raises(MeterReplyError, match=r"no DCMI power reading \(.*0xc1.*\) and none of the BMC's "
                                               r"sensors reads in Watts") as info:
        driver(bare_bmc, client).read()
    assert "Inlet Temp" in str(info.value)


@pytest.mark.parametrize("client", CLIENTS)
def test_source_dcmi_on_a_bmc_without_it_says_what_to_configure(sdr_bmc, client):
    with pytest.raises(MeterReplyError, match=r'0xc1 \(invalid command\); set source = "sdr"'):
        driver(sdr_bmc, client, source="dcmi").read()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_sensor_that_is_not_there_or_not_in_watts_is_a_reply_error(sdr_bmc, client):
    with pytest.raises(MeterReplyError, match=r"no sensor named 'PSU9'.*\['Pwr Consumption'\]"):
        driver(sdr_bmc, client, sensors=["PSU9"]).read()
    with pytest.raises(MeterReplyError, match=r"'Inlet Temp' reads in .*not Watts"):
        driver(sdr_bmc, client, sensors=["Inlet Temp"]).read()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_reading_above_max_watts_is_out_of_range(dcmi_bmc, client):
    dcmi_bmc.set_power(800)
    for source in ("dcmi", "sdr"):
        drv = driver(dcmi_bmc, client, source=source, max_watts=500)
        with pytest.raises(MeterReplyError, match=r"800 W is out of range \(0\.\.500 W"):
            drv.read()
        drv.close()


def test_the_password_is_never_logged_shown_or_repr(sdr_bmc, caplog):
    caplog.set_level(logging.DEBUG)
    good = IpmiConfig(type="ipmi", host=sdr_bmc.host, port=sdr_bmc.port, username=sdr_bmc.username,
                      password=sdr_bmc.password, period=0.2, timeout=1.0, name="good")
    bad = good.model_copy(update={"password": SecretStr("wrong-" * 3), "name": "bad"})
    runner = Runner({"good": (IpmiDriver, good), "bad": (IpmiDriver, bad)}, site="lab", sink=lambda b: None,
                    max_backoff=0.3)

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        await runner.run(stop)

    asyncio.run(main())
    state = {s["driver"]: s for s in runner.state()}
    assert state["good"]["reads"] >= 2 and "refused" in state["bad"]["last_error"]
    drv = IpmiDriver(good, site="lab")
    drv.read()
    shown = [caplog.text, json.dumps(runner.state()), repr(good), str(good), good.model_dump_json(),
             repr(drv), repr(drv.client), str(drv.probes())]
    drv.close()
    for text in shown:
        assert sdr_bmc.password not in text and "wrong-wrong-" not in text


# -- parsing and config, without a BMC ------------------------------------------------------------
def test_dcmi_reply_of_a_real_bmc():
    # ipmitool's documented raw vector: 170 W now, junk min/max 0/1023, average 138, active.
    data = bytes.fromhex("dc aa 00 00 00 ff 03 8a 00 96 43 ac 66 a9 dd a5 00 40")
    assert parse_dcmi(0, data, probe="p") == 170.0
    with pytest.raises(NoDcmi, match="not active"):
        parse_dcmi(0, data[:-1] + b"\x00", probe="p")
    with pytest.raises(NoDcmi, match="0xc1"):
        parse_dcmi(0xC1, b"", probe="p")
    with pytest.raises(MeterReplyError, match="malformed"):
        parse_dcmi(0, data[:10], probe="p")


def test_ipmitool_sensor_lines_keep_names_units_and_missing_readings():
    text = "PSU1 PIn,168,Watts,ok\nPSU2 PIn,,,ns\nSys, Power,210,Watts,ok\nInlet Temp,24,degrees C,ok\n"
    assert parse_sdr_csv(text) == [SensorValue("PSU1 PIn", 168.0, "W"), SensorValue("PSU2 PIn", None, ""),
                                   SensorValue("Sys, Power", 210.0, "W"), SensorValue("Inlet Temp", 24.0, "degrees C")]


def test_a_negative_sensor_reading_is_out_of_range():
    class Signed:  # a BMC whose signed sensor reads below zero (the simulator's sensors are unsigned)
        def dcmi(self):
            return 0xC1, b""

        def sensors(self, names=()):
            return [SensorValue("PSU1 PIn", -12.0, "W")]

        def close(self):
            pass

    cfg = IpmiConfig(type="ipmi", host="bmc", username="u", password="p")
    with pytest.raises(MeterReplyError, match="-12 W is out of range"):
        IpmiDriver(cfg, site="lab", client_factory=lambda c, label: Signed()).read()


def test_config_rules_and_defaults():
    cfg = IpmiConfig(type="ipmi", host="10.0.0.5", username="u", password="p")
    assert (cfg.port, cfg.client, cfg.source, cfg.combine, cfg.privilege, cfg.probe_name) == \
        (623, "auto", "auto", "sum", "administrator", "10.0.0.5")
    assert IpmiConfig(type="ipmi", host="h", port=6230, username="u", password="p").probe_name == "h:6230"
    assert "password=SecretStr('**********')" in repr(cfg)
    assert IpmiConfig.model_validate({"type": "ipmi", "host": "h", "username": 42, "password": 1234},
                                     strict=False).password.get_secret_value() == "1234"
    for bad, why in (({"combine": "each"}, "needs `sensors`"), ({"source": "dcmi", "sensors": ["A"]}, "SDR"),
                     ({"client": "pyghmi", "lanplus": False}, "ipmitool"), ({"host": "fe80::1%eth0"}, "`name`")):
        with pytest.raises(ValueError, match=why):
            IpmiConfig.model_validate({"type": "ipmi", "host": "h", "username": "u", "password": "p", **bad})
    assert sensor_slug("PSU1 Input (W)") == "PSU1_Input_W"


def test_pyghmi_client_repr_hides_the_password():
    assert "s3cret" not in repr(PyghmiClient("h", 623, "u", "s3cret", 1.0))
