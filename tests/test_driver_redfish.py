"""The redfish driver against a real HTTP(S) Redfish service (tests/peers/redfish.py) serving DMTF mockups."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from peers.redfish import RedfishPeer
from pydantic import ValidationError

from wattsight import cli, config
from wattsight.drivers.redfish import RedfishConfig, RedfishDriver
from wattsight.errors import MeterAuthError, MeterReplyError, MeterUnreachable

ILO4 = Path(__file__).parent / "data" / "redfish" / "hpe-ilo4"
PASSWORD = "wattsight-test"
T0 = 1_700_000_000_000
KWH = 3.6e6
ENV = "/redfish/v1/Chassis/1U/EnvironmentMetrics"
PSU1 = "/redfish/v1/Chassis/1U/PowerSubsystem/PowerSupplies/Bay1/Metrics"


@pytest.fixture
def bmc():
    with RedfishPeer("public-rackmount1") as peer:
        yield peer


@pytest.fixture
def pdu():
    with RedfishPeer("public-pdu") as peer:
        yield peer


def make(peer: RedfishPeer, **kw) -> RedfishDriver:
    settings = {"type": "redfish", "url": peer.url, "username": "admin", "password": PASSWORD, **kw}
    return RedfishDriver(RedfishConfig.model_validate(settings, strict=False), site="lab", clock=lambda: T0)


def readings(driver: RedfishDriver) -> dict[tuple[str, str], tuple[float, str, str]]:
    batch = driver.read()
    assert np.all(batch.t == T0)
    return {(s.probe, s.metric): (s.value, s.unit, s.kind) for s in batch.samples()}


# -- each model, read against its mockup ---------------------------------------------------------
def test_environment_metrics_come_first_with_their_energy_counter_in_joules(bmc):
    bmc.set(ENV, "/EnergykWh", {"Reading": 12.5})
    d = make(bmc, probe="node-1")
    assert readings(d) == {("lab.node-1", "power"): (374.0, "W", "gauge"),
                           ("lab.node-1", "energy"): (12.5 * KWH, "J", "counter")}
    assert [p.id for p in d.probes()] == ["lab.node-1"]
    d.close()


def test_a_value_changed_on_the_server_shows_in_the_next_read_and_discovery_is_not_repeated(bmc):
    d = make(bmc, probe="node-1")
    assert readings(d)[("lab.node-1", "power")][0] == 374.0
    bmc.set(ENV, "/PowerWatts/Reading", 401.5)
    assert readings(d)[("lab.node-1", "power")][0] == 401.5
    assert bmc.requests[("GET", "/redfish/v1/Chassis")] == 1     # ($expand-ed: the chassis come with it)
    assert bmc.requests[("GET", ENV)] == 3       # discovery, then one GET per read
    d.close()


def test_power_subsystem_sums_the_supplies_present_and_their_energy(bmc):
    d = make(bmc, probe="node-1", source="PowerSubsystem")
    assert readings(d) == {("lab.node-1", "power"): (937.4, "W", "gauge"),
                           ("lab.node-1", "energy"): (325675 * KWH, "J", "counter")}   # Bay2 is Absent
    d.close()
    bay2 = PSU1.replace("Bay1", "Bay2")
    bmc.put(bay2.removesuffix("/Metrics"), dict(bmc.resource(PSU1.removesuffix("/Metrics")), Id="Bay2",
                                                Metrics={"@odata.id": bay2}))
    bmc.put(bay2, dict(bmc.resource(PSU1), InputPowerWatts={"Reading": 120.0}, EnergykWh={"Reading": 10}))
    d = make(bmc, probe="node-1", source="PowerSubsystem")
    assert readings(d) == {("lab.node-1", "power"): (937.4 + 120.0, "W", "gauge"),
                           ("lab.node-1", "energy"): ((325675 + 10) * KWH, "J", "counter")}
    d.close()
    bmc.delete(bay2, "/EnergykWh")       # a sum of counters with one missing would be wrong: none
    d = make(bmc, probe="node-1", source="PowerSubsystem")
    assert readings(d) == {("lab.node-1", "power"): (937.4 + 120.0, "W", "gauge")}
    d.close()


def test_auto_falls_back_to_power_subsystem_then_to_the_legacy_power_resource(bmc):
    bmc.delete(ENV)
    d = make(bmc, probe="node-1")
    assert readings(d)[("lab.node-1", "power")][0] == 937.4
    d.close()
    bmc.delete("/redfish/v1/Chassis/1U/PowerSubsystem")
    d = make(bmc, probe="node-1")
    assert readings(d) == {("lab.node-1", "power"): (344.0, "W", "gauge")}   # PowerControl[0]; no energy
    d.close()


def test_sensors_give_the_chassis_total_and_its_energy_sensor(bmc):
    bmc.set("/redfish/v1/Chassis/1U/Sensors/TotalPower", "/Reading", 377)
    d = make(bmc, probe="node-1", source="Sensors")
    assert readings(d) == {("lab.node-1", "power"): (377.0, "W", "gauge"),
                           ("lab.node-1", "energy"): (325675 * KWH, "J", "counter")}
    d.close()


def test_energy_false_publishes_power_only(bmc):
    d = make(bmc, probe="node-1", source="PowerSubsystem", energy=False)
    assert list(readings(d)) == [("lab.node-1", "power")]
    d.close()


@pytest.mark.parametrize("expand", [True, False])
def test_pdu_outlets_give_power_and_energy_per_outlet(expand):
    with RedfishPeer("public-pdu", expand=expand) as pdu:
        d = make(pdu, rack_pdu="1")
        got = readings(d)
        outlets = ["A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3"]   # A4, A5 measure nothing
        assert sorted({probe for probe, _ in got}) == [f"lab.127.0.0.1.{o}" for o in outlets]
        assert got[("lab.127.0.0.1.A1", "power")] == (197.4, "W", "gauge")
        assert got[("lab.127.0.0.1.A1", "energy")] == (36166 * KWH, "J", "counter")
        assert got[("lab.127.0.0.1.C2", "power")] == (394.1, "W", "gauge")
        before = sum(pdu.requests.values())
        pdu.set("/redfish/v1/PowerEquipment/RackPDUs/1/Outlets/B1", "/PowerWatts/Reading", 0.0)
        assert readings(d)[("lab.127.0.0.1.B1", "power")][0] == 0.0
        # One $expand GET reads every outlet where the service offers it, else one GET per outlet.
        assert sum(pdu.requests.values()) - before == (1 if expand else 9)
        d.close()


def test_pdu_outlets_mapped_to_probe_names(pdu):
    d = make(pdu, rack_pdu="1", outlet_probes={"A2": "node-2", "B3": "lyon.node-3"})
    assert [p.id for p in d.probes()] == ["lab.node-2", "lab.lyon.node-3"]
    got = readings(d)
    assert got[("lab.node-2", "power")][0] == 384.5 and got[("lab.lyon.node-3", "power")][0] == 426.5
    assert len(got) == 4
    d.close()


# -- HPE iLO ------------------------------------------------------------------------------------
def test_hpe_ilo4_legacy_power_with_trailing_slashes_and_chunked_replies():
    with RedfishPeer(ILO4, chunked=True, slash_redirect=True) as ilo:
        d = make(ilo, probe="dl360", chassis="1")
        assert readings(d) == {("lab.dl360", "power"): (142.0, "W", "gauge")}
        # The 308 to .../1/, then .../1/ itself (the peer counts paths without their slash).
        assert ilo.requests[("GET", "/redfish/v1/Chassis/1")] == 2
        ilo.set("/redfish/v1/Chassis/1/Power/", "/PowerControl/0/PowerConsumedWatts", 150)
        assert readings(d)[("lab.dl360", "power")][0] == 150.0
        d.close()
        # Old iLO 4 firmware has only the top-level copy, and only HP's links.PowerMetrics.
        ilo.delete("/redfish/v1/Chassis/1/Power/", "/PowerControl")
        ilo.delete("/redfish/v1/Chassis/1/", "/Power")
        ilo.set("/redfish/v1/Chassis/1/Power/", "/PowerConsumedWatts", 151)
        d = make(ilo, probe="dl360")
        assert readings(d)[("lab.dl360", "power")][0] == 151.0
        d.close()


def test_hpe_fast_power_meter_publishes_each_average_once_at_the_ilo_time():
    with RedfishPeer(ILO4) as ilo:
        d = make(ilo, probe="dl360", source="FastPowerMeter")
        first = list(d.read().samples())
        assert [s.value for s in first] == [131, 138, 160, 149, 142, 136]
        assert (first[0].measured_at, first[-1].measured_at) == (1714564800.0, 1714564850.0)  # 12:00:00, :50Z
        assert len(d.read()) == 0
        meter = "/redfish/v1/Chassis/1/Power/FastPowerMeter/"
        rows = ilo.resource(meter)["PowerDetail"]
        ilo.set(meter, "/PowerDetail", rows[1:] + [dict(rows[-1], Time="2024-05-01T12:01:00Z", Average=155)])
        assert [(s.measured_at, s.value) for s in d.read().samples()] == [(1714564860.0, 155.0)]
        d.close()


# -- authentication -------------------------------------------------------------------------------
def test_a_session_is_opened_once_reopened_when_forgotten_and_closed_on_close(bmc):
    d = make(bmc)
    d.read()
    d.read()
    assert (bmc.logins, bmc.sessions) == (1, 1)
    bmc.expire_sessions()                 # as after SessionTimeout or a BMC restart
    assert readings(d)[("lab.127.0.0.1", "power")][0] == 374.0
    assert (bmc.logins, bmc.sessions) == (2, 1)
    d.close()
    assert bmc.sessions == 0


def test_basic_auth_opens_no_session(bmc):
    d = make(bmc, auth="basic")
    assert readings(d)[("lab.127.0.0.1", "power")][0] == 374.0
    assert (bmc.logins, bmc.sessions) == (0, 0)
    d.close()


@pytest.mark.parametrize("auth", ["session", "basic"])
def test_wrong_credentials_are_an_auth_error_without_the_password(bmc, auth):
    d = make(bmc, auth=auth, password="Not-The-Secret-42")
    with pytest.raises(MeterAuthError, match="`username` and `password`") as err:
        d.read()
    assert "Not-The-Secret-42" not in str(err.value) and "admin" in str(err.value)
    assert "Not-The-Secret-42" not in repr(d.config)
    d.close()


def test_password_file(bmc, tmp_path):
    secret = tmp_path / "bmc.password"
    secret.write_text(PASSWORD + "\n")
    d = make(bmc, password=None, password_file=str(secret))
    assert readings(d)[("lab.127.0.0.1", "power")][0] == 374.0
    d.close()


# -- errors -------------------------------------------------------------------------------------
def test_a_stopped_bmc_is_unreachable_and_is_read_again_when_back_on_the_same_port(bmc):
    d = make(bmc, probe="node-1")
    d.read()
    bmc.stop()
    with pytest.raises(MeterUnreachable, match=f"127.0.0.1:{bmc.port}.*no answer"):
        d.read()
    assert [p.id for p in d.probes()] == ["lab.node-1"]        # no I/O
    bmc.start()
    assert readings(d)[("lab.node-1", "power")][0] == 374.0
    d.close()


def test_a_bmc_that_never_answers_is_unreachable_within_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()          # the kernel accepts the connection; nobody ever answers
        cfg = RedfishConfig(type="redfish", url=f"http://127.0.0.1:{silent.getsockname()[1]}", username="u",
                            password="p", timeout=0.3)
        d = RedfishDriver(cfg, site="lab")
        with pytest.raises(MeterUnreachable, match="time-out"):
            d.read()
        d.close()


def test_a_discovery_cut_short_goes_on_from_where_it_was(bmc):
    bmc.cut.add(ENV)
    d = make(bmc)
    with pytest.raises(MeterUnreachable, match="connection closed before an answer"):
        d.read()
    bmc.cut.clear()
    assert readings(d)[("lab.127.0.0.1", "power")][0] == 374.0
    assert bmc.requests[("GET", "/redfish/v1")] == 1 and bmc.requests[("GET", "/redfish/v1/Chassis")] == 1
    d.close()


def test_a_chassis_that_does_not_exist_names_the_path_and_the_chassis_there_are(bmc):
    d = make(bmc, chassis="Blade9")
    with pytest.raises(MeterReplyError, match=r"no chassis 'Blade9': GET /redfish/v1/Chassis/Blade9 answered "
                                              r"404; set `chassis` to one of \['1U'\]"):
        d.read()
    d.close()


def test_a_forced_source_the_chassis_lacks_says_what_to_set(bmc):
    bmc.delete(ENV)
    d = make(bmc, chassis="1U", source="EnvironmentMetrics")
    with pytest.raises(MeterReplyError, match="no EnvironmentMetrics resource.*source = \"auto\""):
        d.read()
    d.close()


def test_several_chassis_with_power_need_a_choice_or_a_name_each(bmc):
    chassis = bmc.resource("/redfish/v1/Chassis/1U")
    bmc.put("/redfish/v1/Chassis/2U", dict(chassis, Id="2U"))
    bmc.set("/redfish/v1/Chassis", "/Members/-", {"@odata.id": "/redfish/v1/Chassis/2U"})
    with pytest.raises(MeterReplyError, match=r"2 chassis report power \(\['1U', '2U'\]\): set `chassis`"
                                              r".*\{chassis\}"):
        make(bmc).read()
    d = make(bmc, probe="rack-{chassis}")
    assert d.probes() == []
    assert {p for p, _ in readings(d)} == {"lab.rack-1U", "lab.rack-2U"}
    d.close()


def test_missing_outlets_and_pdus_are_named(pdu):
    with pytest.raises(MeterReplyError, match=r"no outlet \['Z9'\] \(it has \['A1'"):
        make(pdu, rack_pdu="1", outlets=["A1", "Z9"]).read()
    with pytest.raises(MeterReplyError, match="outlet A4 .* measures no power"):
        make(pdu, rack_pdu="1", outlets=["A4"]).read()
    with pytest.raises(MeterReplyError, match=r"no rack PDU '7'.*one of \['1'\]"):
        make(pdu, rack_pdu="7").read()


@pytest.mark.parametrize(("reading", "error"), [(2e6, "out of range.*max_power"), (-3.0, "out of range"),
                                                (None, "is null"), ("n/a", "not a number"),
                                                (True, "not a number")])
def test_a_bad_reading_is_a_reply_error_naming_the_property(bmc, reading, error):
    d = make(bmc)
    d.read()
    bmc.set(ENV, "/PowerWatts/Reading", reading)
    with pytest.raises(MeterReplyError, match=f"{ENV}#/PowerWatts/Reading.*{error}"):
        d.read()
    d.close()


def test_a_resource_that_disappears_is_an_error_then_found_elsewhere(bmc):
    d = make(bmc)
    d.read()
    bmc.delete(ENV)
    with pytest.raises(MeterReplyError, match="EnvironmentMetrics answered 404"):
        d.read()
    assert readings(d)[("lab.127.0.0.1", "power")][0] == 937.4     # found again: PowerSubsystem
    d.close()


def test_not_a_redfish_service(bmc):
    bmc.delete("/redfish/v1")
    with pytest.raises(MeterReplyError, match="no Redfish service"):
        make(bmc).read()


def test_tls_self_signed_names_verify_tls_and_ca_file_or_verify_tls_false_accept_it():
    pytest.importorskip("cryptography", reason="the peer makes its certificate with cryptography")
    with RedfishPeer(tls=True) as bmc:
        d = make(bmc)
        with pytest.raises(MeterUnreachable, match="not trusted.*`ca_file`.*verify_tls = false"):
            d.read()
        d.close()
        for kw in ({"verify_tls": False}, {"ca_file": bmc.ca_file}):
            d = make(bmc, **kw)
            assert readings(d)[("lab.127.0.0.1", "power")][0] == 374.0
            d.close()
        assert bmc.sessions == 0


def test_a_relative_ca_file_and_password_file_are_taken_from_the_configuration_folder(tmp_path, monkeypatch):
    pytest.importorskip("cryptography", reason="the peer makes its certificate with cryptography")
    folder = tmp_path / "etc"
    (folder / "certs").mkdir(parents=True)
    (folder / "bmc.password").write_text(PASSWORD + "\n")
    elsewhere = tmp_path / "elsewhere"  # the working folder has files of the same names: not to be used
    (elsewhere / "certs").mkdir(parents=True)
    (elsewhere / "bmc.password").write_text("Not-The-Secret-42\n")
    monkeypatch.chdir(elsewhere)
    with RedfishPeer(tls=True) as bmc:
        Path(folder / "certs" / "bmc.pem").write_bytes(Path(bmc.ca_file).read_bytes())
        (elsewhere / "certs" / "bmc.pem").write_text("not a certificate\n")
        text = (f'[bus]\nsecret = "a-test-key"\n[drivers.bmc]\ntype = "redfish"\nurl = "{bmc.url}"\n'
                'ca_file = "certs/bmc.pem"\nusername = "admin"\npassword_file = "bmc.password"\n'
                'probe = "node-1"\n')
        cfg = config.loads(text, path=str(folder / "wattsight.toml")).drivers["bmc"]
        assert (cfg.ca_file, cfg.password_file) == (folder / "certs" / "bmc.pem", folder / "bmc.password")
        d = RedfishDriver(cfg, site="lab", clock=lambda: T0)
        assert readings(d) == {("lab.node-1", "power"): (374.0, "W", "gauge")}
        d.close()
        assert bmc.sessions == 0


# -- configuration and the command line -------------------------------------------------------
@pytest.mark.parametrize(("settings", "error"), [
    ({"url": "https://admin:pw@bmc-1"}, "credentials"),
    ({"url": "bmc-1"}, "http"),
    ({"password_file": "/x"}, "one of them"),
    ({"probe": "{host}-{slot}"}, "unknown"),
    ({"chassis": ["1U", "2U"]}, "{chassis}"),
    ({"outlets": ["A1"]}, "rack_pdu"),
    ({"rack_pdu": "1", "probe": "pdu"}, "{outlet}"),
])
def test_bad_settings_are_refused(settings, error):
    with pytest.raises(ValidationError, match=error):
        RedfishConfig.model_validate({"type": "redfish", "url": "https://bmc-1", "username": "u",
                                      "password": "p", **settings})


def test_the_url_is_reduced_to_the_service_address():
    cfg = RedfishConfig(type="redfish", url="https://bmc-1.example.org:8443/redfish/v1/", username="u",
                        password="p")
    assert cfg.url == "https://bmc-1.example.org:8443"
    assert [p.id for p in RedfishDriver(cfg, site="lyon").probes()] == ["lyon.bmc-1.example.org"]


def test_wattsight_probe_once_reads_the_bmc_and_logs_out(bmc, capsys):
    args = ["probe", "redfish", "--url", bmc.url, "--username", "admin", "--password", PASSWORD,
            "--probe", "node-1", "--source", "PowerSubsystem"]
    assert cli.main([*args, "--once"]) == 0
    out = capsys.readouterr().out
    assert out.split("\n", 1)[0].split() == ["probe", "metric", "measured_at", "value", "unit", "kind",
                                             "provenance"]
    assert "local.node-1" in out and "937.4" in out and "1.17243e+12" in out
    assert cli.main([*args, "--once", "--json"]) == 0
    samples = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(s["metric"], s["value"], s["kind"]) for s in samples} == {("power", 937.4, "gauge"),
                                                                       ("energy", 325675 * KWH, "counter")}
    assert bmc.sessions == 0


def test_wattsight_probe_reports_a_refused_login_without_the_password(bmc, capsys):
    code = cli.main(["probe", "redfish", "--url", bmc.url, "--username", "admin", "--password", "Wrong-77",
                     "--once"])
    err = capsys.readouterr().err
    assert code == 1 and "session login refused for user 'admin'" in err and "Wrong-77" not in err


def test_wattsight_probe_once_reads_pdu_outlets(pdu, capsys):
    code = cli.main(["probe", "redfish", "--url", pdu.url, "--username", "admin", "--password", PASSWORD,
                     "--rack-pdu", "1", "--outlet-probes", '{A1 = "node-1", C3 = "node-9"}',
                     "--once", "--json"])
    samples = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert {(s["probe"], s["metric"], s["value"]) for s in samples} == {
        ("local.node-1", "power", 197.4), ("local.node-1", "energy", 36166 * KWH),
        ("local.node-9", "power", 355.4), ("local.node-9", "energy", 61848 * KWH)}


def test_numeric_ids_are_taken_as_strings():
    base = {"type": "redfish", "username": "u", "password": "p"}
    cfg = RedfishConfig.model_validate({**base, "url": "https://pdu-1", "rack_pdu": 1, "outlets": [1, 2]})
    assert (cfg.rack_pdu, cfg.outlets) == ("1", ["1", "2"])
    cfg = RedfishConfig.model_validate({**base, "url": "https://ilo-1", "chassis": 1})
    assert cfg.chassis == ["1"]


def test_ten_bmcs_side_by_side_each_with_its_own_reading():
    peers = [RedfishPeer().start() for _ in range(10)]
    try:
        for i, peer in enumerate(peers):
            peer.set(ENV, "/PowerWatts/Reading", 100 + i)
        drivers = [make(peer, probe=f"node-{i}") for i, peer in enumerate(peers)]
        got = {p: v for d in drivers for (p, _), (v, _, _) in readings(d).items()}
        assert got == {f"lab.node-{i}": 100.0 + i for i in range(10)}
        for d in drivers:
            d.close()
        assert [p.sessions for p in peers] == [0] * 10
    finally:
        for peer in peers:
            peer.stop()
