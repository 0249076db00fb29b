"""The http driver against a real HTTP server (tests/peers/httpjson.py): readings, units, layouts,
the meter's timestamps, credentials, and every error a meter can cause."""

from __future__ import annotations

import json

import pytest
from peers.httpjson import JsonServer

from wattsight import cli
from wattsight.drivers.http import HttpJsonConfig, HttpJsonDriver, number
from wattsight.drivers.jsonpath import PathMissing, get, parse
from wattsight.errors import MeterAuthError, MeterReplyError, MeterUnreachable

NOW = 1_800_000_000_000
PDU = {"data": {"time": 1_700_000_000.25,
                "outlets": [{"id": i + 1, "watts": 100.0 + i, "energy": 1000.0 + i} for i in range(4)]}}


@pytest.fixture(scope="module")
def server():
    with JsonServer(path="/api/outlets") as srv:
        yield srv


@pytest.fixture
def srv(server):
    """The module's server, started and reset to answer PDU."""
    server.start()
    server.document, server.raw, server.status, server.delay, server.auth = PDU, None, 200, 0.0, None
    return server


def driver(srv, clock=lambda: NOW, **settings) -> HttpJsonDriver:
    settings.setdefault("probes", {"taurus-7": {"power": "data.outlets[2].watts"}})
    cfg = HttpJsonConfig.model_validate({"type": "http", "url": srv.url, **settings})
    return HttpJsonDriver(cfg, site="lyon", clock=clock)


def values(batch) -> dict:
    return {(s.probe, s.metric): (s.value, s.unit, s.kind) for s in batch.samples()}


# -- readings ---------------------------------------------------------------------------------
def test_power_and_energy_arrive_in_si_units_stamped_when_the_reply_arrived(srv):
    d = driver(srv, probes={"taurus-7": {"power": "data.outlets[2].watts", "energy": "data.outlets[2].energy",
                                         "energy_unit": "Wh"}})
    batch = d.read()
    assert values(batch) == {("lyon.taurus-7", "power"): (102.0, "W", "gauge"),
                             ("lyon.taurus-7", "energy"): (1002.0 * 3600, "J", "counter")}
    assert set(batch.t.tolist()) == {NOW}
    assert {s.provenance for s in batch.series} == {"measured"}


@pytest.mark.parametrize("unit, factor", [("W", 1.0), ("kW", 1000.0), ("mW", 0.001)])
def test_power_unit_converts_to_watts(srv, unit, factor):
    got = values(driver(srv, power_unit=unit).read())
    assert got[("lyon.taurus-7", "power")][0] == pytest.approx(102.0 * factor)


@pytest.mark.parametrize("unit, factor", [("J", 1.0), ("kJ", 1e3), ("Wh", 3600.0), ("kWh", 3.6e6)])
def test_energy_unit_converts_to_joules_globally_or_per_probe(srv, unit, factor):
    probes = {"a": {"energy": "data.outlets[0].energy"}, "b": {"energy": "data.outlets[1].energy", "energy_unit": "J"}}
    got = values(driver(srv, probes=probes, energy_unit=unit).read())
    assert got[("lyon.a", "energy")][0] == pytest.approx(1000.0 * factor)
    assert got[("lyon.b", "energy")][0] == 1001.0


def test_a_range_makes_one_probe_per_outlet_and_probes_need_no_request(srv):
    d = driver(srv, probes={"pdu-1-{n}": {"power": "data.outlets[{i}].watts", "range": [1, 4]},
                            "paris.other": {"power": "data.outlets[0].watts"}})
    before = srv.requests
    probes = d.probes()
    assert srv.requests == before
    assert [p.id for p in probes] == ["lyon.pdu-1-1", "lyon.pdu-1-2", "lyon.pdu-1-3", "lyon.pdu-1-4", "paris.other"]
    assert "data.outlets[3].watts" in probes[3].description and srv.url in probes[3].description
    got = values(d.read())
    assert [got[(f"lyon.pdu-1-{n}", "power")][0] for n in range(1, 5)] == [100.0, 101.0, 102.0, 103.0]


def test_the_list_form_reads_the_kwapi_g5k_layout_with_its_timestamps(srv):
    srv.document = {"taurus-7": {"watt": 180.5, "timestamp": 1_700_000_000.2},
                    "taurus-8": {"watt": "95.25", "timestamp": 1_700_000_000.9}}
    d = driver(srv, probes=["lyon.taurus-7", "taurus-8"])
    batch = d.read()
    got = {(s.probe, s.measured_at): s.value for s in batch.samples()}
    assert got == {("lyon.taurus-7", 1_700_000_000.2): 180.5, ("lyon.taurus-8", 1_700_000_000.9): 95.25}
    # As kwapi-g5k did: a reading whose timestamp has not moved is not published twice.
    srv.document = {"taurus-7": {"watt": 181.0, "timestamp": 1_700_000_001.2}, "taurus-8": srv.document["taurus-8"]}
    assert values(d.read()) == {("lyon.taurus-7", "power"): (181.0, "W", "gauge")}


def test_the_list_form_takes_path_templates(srv):
    srv.document = {"nodes": {"n1": {"p": 10, "e": 5}, "n2": {"p": 20, "e": 6}}}
    d = driver(srv, probes=["n1", "n2"], power="nodes.{name}.p", energy="nodes.{name}.e", energy_unit="kWh")
    assert values(d.read()) == {("lyon.n1", "power"): (10.0, "W", "gauge"), ("lyon.n1", "energy"): (1.8e7, "J", "counter"),
                                ("lyon.n2", "power"): (20.0, "W", "gauge"), ("lyon.n2", "energy"): (2.16e7, "J", "counter")}


@pytest.mark.parametrize("fmt, raw, ms", [("unix", 1_700_000_000.25, 1_700_000_000_250),
                                          ("unix_ms", 1_700_000_000_250, 1_700_000_000_250),
                                          ("iso8601", "2023-11-14T22:13:20.250Z", 1_700_000_000_250),
                                          ("iso8601", "2023-11-14T23:13:20.250+01:00", 1_700_000_000_250),
                                          ("iso8601", "2023-11-14T22:13:20.250", 1_700_000_000_250)])
def test_the_meters_own_timestamp_is_honoured(srv, fmt, raw, ms):
    srv.document = {**PDU, "data": {**PDU["data"], "time": raw}}
    batch = driver(srv, timestamp="data.time", timestamp_format=fmt).read()
    assert batch.t.tolist() == [ms]


def test_one_keep_alive_connection_serves_every_read(srv):
    d = driver(srv)
    opened = srv.connections
    for _ in range(3):
        d.read()
    assert srv.connections == opened + 1
    d.close()


# -- credentials ------------------------------------------------------------------------------
def test_basic_auth_reads_with_the_right_password_and_never_shows_it(srv):
    srv.auth = ("monitor", "s3cret-pw")
    d = driver(srv, username="monitor", password="s3cret-pw")
    assert values(d.read())[("lyon.taurus-7", "power")][0] == 102.0
    assert "s3cret-pw" not in repr(d.config) and "s3cret-pw" not in str(d.config.model_dump())


def test_a_wrong_password_is_an_auth_error_that_does_not_show_it(srv):
    srv.auth = ("monitor", "s3cret-pw")
    with pytest.raises(MeterAuthError, match="401.*refused.*username") as err:
        driver(srv, username="monitor", password="wrong-pw").read()
    assert "wrong-pw" not in str(err.value) and srv.url in str(err.value)


def test_no_credentials_for_a_meter_that_wants_them_says_so(srv):
    srv.auth = ("monitor", "s3cret-pw")
    with pytest.raises(MeterAuthError, match="needs credentials"):
        driver(srv).read()


def test_a_forbidden_reply_is_an_auth_error(srv):
    srv.status = 403
    with pytest.raises(MeterAuthError, match="403"):
        driver(srv, token="tok-123").read()


def test_a_token_is_sent_as_a_bearer_header_and_kept_secret(srv):
    d = driver(srv, token="tok-123", headers={"X-Site": "lyon"})
    d.read()
    assert srv.last_headers["Authorization"] == "Bearer tok-123" and srv.last_headers["X-Site"] == "lyon"
    assert "tok-123" not in repr(d.config)


@pytest.mark.parametrize("bad, says", [({"url": "http://u:pw@127.0.0.1/"}, "credentials"),
                                       ({"url": "ftp://127.0.0.1/x"}, "http"),
                                       ({"headers": {"Authorization": "Basic eA=="}}, "not kept secret"),
                                       ({"password": "pw"}, "username"),
                                       ({"probes": {"a": {}}}, "power` or `energy"),
                                       ({"probes": {"a": {"power": "x..y"}}}, "cannot read"),
                                       ({"probes": {"a-{n}": {"power": "x"}}}, "no `range`"),
                                       ({"probes": ["a", "a"]}, "twice"),
                                       ({"power": "x"}, "for a list of probes")])
def test_bad_settings_are_refused_at_configuration_time(bad, says):
    settings = {"type": "http", "url": "http://127.0.0.1:1/", "probes": {"a": {"power": "x"}}, **bad}
    with pytest.raises(ValueError, match=says):
        HttpJsonConfig.model_validate(settings)


# -- errors against the real server -----------------------------------------------------------
def test_a_stopped_meter_is_unreachable_and_the_same_driver_reads_again_when_it_is_back(srv):
    d = driver(srv)
    d.read()
    srv.stop()
    with pytest.raises(MeterUnreachable, match=r"cannot connect.*is the meter up") as err:
        d.read()
    assert srv.url in str(err.value)
    srv.start()
    assert values(d.read())[("lyon.taurus-7", "power")][0] == 102.0


def test_a_meter_that_does_not_answer_in_time_is_unreachable(srv):
    srv.delay = 1.0
    with pytest.raises(MeterUnreachable, match=r"no answer within 0.2 s"):
        driver(srv, timeout=0.2).read()


def test_a_wrong_path_in_the_url_is_a_reply_error_naming_it(srv):
    cfg = HttpJsonConfig.model_validate({"type": "http", "url": srv.url.replace("/api/outlets", "/api/outlet"),
                                         "probes": {"a": {"power": "x"}}})
    with pytest.raises(MeterReplyError, match=r"404.*/api/outlet\)"):
        HttpJsonDriver(cfg, site="lyon").read()


def test_a_path_missing_from_the_reply_names_the_probe_the_path_and_the_keys_there(srv):
    with pytest.raises(MeterReplyError) as err:
        driver(srv, probes={"taurus-7": {"power": "data.outlets[2].power"}}).read()
    text = str(err.value)
    assert text.startswith("lyon.taurus-7: power: data.outlets[2].power: no key 'power' at 'data.outlets[2]'")
    assert "'id', 'watts', 'energy'" in text
    with pytest.raises(MeterReplyError, match=r"no index \[9\].*a list of 4 items"):
        driver(srv, probes={"x": {"power": "data.outlets[9].watts"}}).read()


def test_missing_skip_leaves_out_absent_probes_but_not_all_of_them(srv):
    got = values(driver(srv, missing="skip", probes={"a": {"power": "data.outlets[0].watts"},
                                                     "b": {"power": "data.outlets[7].watts"}}).read())
    assert list(got) == [("lyon.a", "power")]
    with pytest.raises(MeterReplyError, match="none of the 1 probe"):
        driver(srv, missing="skip", probes={"b": {"power": "data.outlets[7].watts"}}).read()


@pytest.mark.parametrize("reading, says", [('"n/a"', 'is a string, "n/a", not a number'),
                                           ("null", "is null, not a number"),
                                           ("true", "is a boolean, true, not a number"),
                                           ("{}", "is an empty object, not a number"),
                                           ("-3.5", "is -3.5, out of range"),
                                           ("NaN", "is NaN"),
                                           ("Infinity", "is inf, out of range")])
def test_a_reading_that_is_not_a_number_at_least_zero_is_a_reply_error(srv, reading, says):
    srv.raw = f'{{"w": {reading}}}'.encode()
    with pytest.raises(MeterReplyError, match="lyon.taurus-7: power at w " + says.replace("(", r"\(")):
        driver(srv, probes={"taurus-7": {"power": "w"}}).read()


def test_a_reply_that_is_not_json_is_a_reply_error(srv):
    srv.raw = b"<html><body>Login</body></html>"
    with pytest.raises(MeterReplyError, match=r"not JSON.*<html><body>Login"):
        driver(srv).read()


def test_a_server_error_is_a_reply_error(srv):
    srv.status = 500
    with pytest.raises(MeterReplyError, match="HTTP 500"):
        driver(srv).read()


def test_a_bad_timestamp_is_a_reply_error(srv):
    srv.document = {**PDU, "data": {**PDU["data"], "time": "yesterday"}}
    with pytest.raises(MeterReplyError, match="timestamp at data.time is a string"):
        driver(srv, timestamp="data.time").read()
    with pytest.raises(MeterReplyError, match="timestamp at data.time is 'yesterday', not an ISO 8601 time"):
        driver(srv, timestamp="data.time", timestamp_format="iso8601").read()


# -- the command line -------------------------------------------------------------------------
def test_wattsight_probe_once_reads_the_real_server(srv, capsys):
    code = cli.main(["probe", "http", "--once", "--json", "--site", "lyon", "--url", srv.url,
                     "--probes", '{"pdu-{n}" = {power = "data.outlets[{i}].watts", range = [1, 2]}}',
                     "--power-unit", "kW"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert [(s["probe"], s["value"], s["unit"]) for s in got] == [("lyon.pdu-1", 100000.0, "W"),
                                                                 ("lyon.pdu-2", 101000.0, "W")]


def test_wattsight_probe_prints_the_error_and_exits_1(srv, capsys):
    srv.auth = ("monitor", "s3cret-pw")
    code = cli.main(["probe", "http", "--once", "--url", srv.url, "--probes", "a,b",
                     "--username", "monitor", "--password", "nope"])
    err = capsys.readouterr().err
    assert code == 1 and "HTTP 401" in err and "nope" not in err


# -- the path language ------------------------------------------------------------------------
def test_paths_read_keys_indexes_and_quoted_keys():
    doc = {"a": {"b.c": [1, {"d": 2}]}}
    assert parse('$.a["b.c"][-1].d') == ("a", "b.c", -1, "d")
    assert get(doc, parse('a["b.c"][1].d')) == 2
    with pytest.raises(PathMissing, match=r"no key 'x' at 'a' \(there is an object with keys 'b.c'\)"):
        get(doc, parse("a.x"))


def test_numbers_written_as_strings_are_accepted():
    assert number("12.5") == 12.5 and number(3) == 3.0


def test_a_meter_restarted_between_two_reads_is_read_at_once(srv):
    d = driver(srv)
    d.read()
    srv.stop()
    srv.start()
    assert values(d.read())[("lyon.taurus-7", "power")][0] == 102.0
