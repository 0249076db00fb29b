"""The /api/v1 endpoints over a real store holding series of known energy (test_api_helpers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_api_helpers import client, store  # noqa: F401  (fixtures)
from test_api_helpers import (
    BUS_STATS,
    CONFIG,
    CONST_COUNTER_J,
    FROM_S,
    GAPPY_J,
    RAMP_J,
    RAPL_J,
    RUNNER_STATE,
    RX_B,
    T0,
    T_END,
    TIMES,
    TO_S,
    TX_B,
    client_for,
    topology,
)

from wattsight import __version__, timeseries
from wattsight.energy import J_PER_KWH
from wattsight.sample import Batch, Probe, Series

RANGE = f"from={FROM_S}&to={TO_S}"


def problem(r, status: int) -> str:
    """The detail of an error answer, after checking its status and shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    return body["detail"]


# -- probes ---------------------------------------------------------------------------------


def test_probes_joins_store_and_topology(client):
    body = client.get("/api/v1/probes").json()
    ids = [p["id"] for p in body["probes"]]
    assert ids == ["lyon.const", "lyon.gappy", "lyon.ramp", "lyon.rapl", "lyon.sw1", "lyon.waiting"]
    assert body["count"] == 6
    by_id = {p["id"]: p for p in body["probes"]}
    ramp = by_id["lyon.ramp"]
    assert ramp["site"] == "lyon" and ramp["driver"] == "dummy" and ramp["period"] == 1.0
    assert ramp["aliases"] == ["ramp", "taurus-1-psu"] and ramp["nodes"] == ["lyon.node-1"]
    assert ramp["shared"] is False and ramp["description"] == "PSU of node-1"
    last = ramp["last"]["power"]
    assert last["value"] == 200.0 and last["unit"] == "W"
    assert last["kind"] == "gauge" and last["provenance"] == "measured"
    assert last["measured_at"] == T_END / 1000
    assert last["measured_at_iso"] == "2023-11-14T23:13:20.000Z"
    assert last["samples"] == 3601
    assert by_id["lyon.const"]["shared"] is True
    assert by_id["lyon.const"]["metrics"] == ["energy", "power"]
    assert by_id["lyon.const"]["last"]["energy"]["kind"] == "counter"


def test_probe_known_only_to_topology_has_null_last(client):
    waiting = client.get("/api/v1/probes/lyon.waiting").json()
    assert waiting["last"] is None and waiting["metrics"] == []
    assert waiting["driver"] == "ipmi" and waiting["description"] == "not read yet"


def test_probe_known_only_to_store_gets_default_metadata(client):
    rapl = client.get("/api/v1/probes/lyon.rapl").json()
    assert rapl["driver"] is None and rapl["nodes"] == ["lyon.rapl"] and rapl["aliases"] == []
    assert rapl["last"]["energy"]["value"] == pytest.approx(RAPL_J)


def test_probe_by_alias(client):
    assert client.get("/api/v1/probes/taurus-1-psu").json()["id"] == "lyon.ramp"


def test_probe_paths_with_a_trailing_slash(client):
    assert client.get("/api/v1/probes/ramp/").json()["id"] == "lyon.ramp"
    assert client.get("/api/v1/probes/ramp/power/").json()["metric"] == "power"
    assert client.get("/api/v1/probes/").json()["count"] == 6


def test_unknown_probe_is_404_naming_it_and_the_listing(client):
    detail = problem(client.get("/api/v1/probes/lyon.rampe"), 404)
    assert "'lyon.rampe'" in detail and "/api/v1/probes" in detail
    assert "lyon.ramp" in detail  # the close match is suggested


def test_probe_power_gives_energy_integrated_since_first_sample(client):
    body = client.get("/api/v1/probes/ramp/power").json()
    assert body["probe"] == "lyon.ramp" and body["metric"] == "power"
    assert body["value"] == 200.0 and body["unit"] == "W" and body["measured_at"] == T_END / 1000
    e = body["energy"]
    assert e["method"] == "integrated"
    assert e["joules"] == pytest.approx(RAMP_J, rel=1e-12)
    assert e["kwh"] == pytest.approx(RAMP_J / J_PER_KWH)
    assert e["coverage"] == 1.0 and e["from"] == FROM_S and e["to"] == TO_S


def test_probe_power_prefers_the_energy_counter(client):
    e = client.get("/api/v1/probes/lyon.const/power").json()["energy"]
    assert e["method"] == "counter" and e["joules"] == pytest.approx(CONST_COUNTER_J)


def test_probe_network_counter_gives_its_increase(client):
    body = client.get("/api/v1/probes/lyon.sw1/network_in").json()
    assert body["unit"] == "B" and body["kind"] == "counter"
    assert body["increase"]["amount"] == pytest.approx(RX_B) and "energy" not in body


def test_probe_unknown_metric_is_404_listing_the_metrics(client):
    detail = problem(client.get("/api/v1/probes/lyon.const/voltage"), 404)
    assert "'voltage'" in detail and "energy, power" in detail


def test_probe_id_holding_a_slash(store):
    store.handle(Batch.of_series(Series("lyon.pdu/7", "power", "W"), TIMES, np.full(len(TIMES), 10.0)))
    client = client_for(store)
    assert client.get("/api/v1/probes/lyon.pdu/7").json()["id"] == "lyon.pdu/7"
    assert client.get("/api/v1/probes/lyon.pdu/7/power").json()["energy"]["joules"] == pytest.approx(36000)


# -- series ---------------------------------------------------------------------------------


def test_series_raw_within_the_cap(client):
    r = client.get(f"/api/v1/series?probes=ramp&from={TO_S - 600}&to={TO_S}&resolution=raw")
    body = r.json()
    assert body["resolution"] == "raw" and body["step"] is None
    (s,) = body["series"]
    assert (s["probe"], s["metric"], s["unit"], s["kind"], s["provenance"]) == (
        "lyon.ramp", "power", "W", "gauge", "measured")
    assert s["columns"] == ["t", "value"] and s["count"] == 601 and len(s["points"]) == 601
    assert s["points"][0] == [TO_S - 600, pytest.approx(100 + 100 * 3000 / 3600)]
    assert s["points"][-1] == [TO_S, 200.0]


def test_series_raw_over_the_cap_is_refused_pointing_to_auto(client):
    detail = problem(client.get(f"/api/v1/series?probes=ramp&{RANGE}&resolution=raw"), 422)
    assert "resolution=auto" in detail and "max_points=1000" in detail and "3601" in detail


def test_series_auto_buckets_within_max_points(client):
    body = client.get(f"/api/v1/series?probes=ramp,lyon.const&{RANGE}&resolution=auto").json()
    step_ms = timeseries.step_for(T0, T_END, CONFIG.max_points)
    assert body["step"] == step_ms / 1000 == 5.0 and body["agg"] == "minmax"
    ramp, const = body["series"]
    assert ramp["columns"] == ["t", "min", "avg", "max"]
    assert len(ramp["points"]) <= CONFIG.max_points
    t, lo, avg, hi = ramp["points"][10]
    assert t == FROM_S + 50  # T0 is a multiple of 5 s
    seconds = np.arange(50, 55)
    assert lo == pytest.approx(100 + 100 * 50 / 3600) and hi == pytest.approx(100 + 100 * 54 / 3600)
    assert avg == pytest.approx(np.mean(100 + 100 * seconds / 3600))
    assert all(p[1:] == [50.0, 50.0, 50.0] for p in const["points"])


def test_series_explicit_step_aligns_buckets_and_one_aggregate(client):
    body = client.get(f"/api/v1/series?probes=ramp&{RANGE}&resolution=1m&agg=avg").json()
    (s,) = body["series"]
    assert s["columns"] == ["t", "avg"] and s["step"] == 60.0
    assert all(p[0] % 60 == 0 for p in s["points"])  # boundaries stay put as a graph slides
    assert body["from"] == FROM_S - FROM_S % 60
    t, avg = s["points"][5]
    start = t - FROM_S
    assert avg == pytest.approx(np.mean(100 + 100 * np.arange(start, start + 60) / 3600))


def test_series_leaves_gaps_out(client):
    body = client.get(f"/api/v1/series?probes=lyon.gappy&{RANGE}&resolution=1m&agg=max").json()
    times = [p[0] for p in body["series"][0]["points"]]
    assert not any(FROM_S + 960 <= t < FROM_S + 2640 for t in times)


def test_series_step_giving_too_many_points_is_refused(client):
    detail = problem(client.get(f"/api/v1/series?probes=ramp&{RANGE}&resolution=1s"), 422)
    assert "max_points=1000" in detail and "resolution=auto" in detail


@pytest.mark.parametrize("resolution", ["fast", "10", "0s", "-5s", "1y"])
def test_series_bad_resolution(client, resolution):
    detail = problem(client.get(f"/api/v1/series?probes=ramp&resolution={resolution}"), 422)
    assert "resolution" in detail


def test_series_bad_agg(client):
    detail = problem(client.get("/api/v1/series?probes=ramp&agg=median"), 422)
    assert "agg" in detail and "minmax" in detail


def test_series_needs_probes(client):
    assert "probes" in problem(client.get("/api/v1/series"), 422)
    assert "probes=" in problem(client.get("/api/v1/series?probes=,"), 422)


def test_series_unknown_probe_or_metric(client):
    assert "'nope'" in problem(client.get("/api/v1/series?probes=ramp,nope"), 404)
    assert "'power'" in problem(client.get("/api/v1/series?probes=lyon.rapl"), 404)


def test_series_missing_readings_are_null(store):
    store.handle(Batch.of_series(Series("lyon.flaky", "power", "W"), [T0, T0 + 1000, T0 + 2000],
                                 [10.0, math.nan, 12.0]))
    body = client_for(store).get(f"/api/v1/series?probes=lyon.flaky&{RANGE}&resolution=raw").json()
    assert [p[1] for p in body["series"][0]["points"]] == [10.0, None, 12.0]


@pytest.mark.parametrize("start,end", [
    ("-10m", "now"), ("now-10m", "now"), ("2023-11-14T23:03:20Z", "2023-11-14T23:13:20Z"),
    ("2023-11-15T00:03:20+01:00", "2023-11-15T00:13:20 01:00"),  # '+' sent unencoded is a space
    (str(TO_S - 600), str(TO_S)), (f"{TO_S - 600}.0", "now"),
])
def test_time_forms(client, start, end):
    r = client.get("/api/v1/series", params={"probes": "ramp", "from": start, "to": end, "resolution": "raw"})
    assert r.status_code == 200, r.text
    assert r.json()["from"] == TO_S - 600 and r.json()["to"] == TO_S


@pytest.mark.parametrize("start,end,word", [
    ("yesterday", "now", "from='yesterday' is not a time"),
    ("now", "-1h", "is not before"),
    ("-1h", "-1h", "is not before"),
    ("-1h", "1700000000000", "milliseconds given?"),
    ("0001-01-01", "now", "outside the times"),
    ("-5", "now", "not a duration"),
    ("", "now", "from is empty"),
])
def test_bad_times(client, start, end, word):
    detail = problem(client.get("/api/v1/energy", params={"from": start, "to": end}), 422)
    assert word in detail


# -- energy ---------------------------------------------------------------------------------


def test_energy_of_everything(client):
    body = client.get(f"/api/v1/energy?{RANGE}").json()
    assert body["from"] == FROM_S and body["to"] == TO_S
    assert body["price_per_kwh"] == 0.25 and body["currency"] == "EUR"
    probes = body["probes"]
    assert sorted(probes) == ["lyon.const", "lyon.gappy", "lyon.ramp", "lyon.rapl"]  # no network probe
    expect = {"lyon.ramp": (RAMP_J, "integrated", 1.0), "lyon.const": (CONST_COUNTER_J, "counter", 1.0),
              "lyon.gappy": (GAPPY_J, "integrated", 0.5), "lyon.rapl": (RAPL_J, "counter", 1.0)}
    for pid, (joules, method, coverage) in expect.items():
        p = probes[pid]
        assert p["joules"] == pytest.approx(joules, rel=1e-12), pid
        assert p["kwh"] == pytest.approx(joules / J_PER_KWH) and p["cost"] == pytest.approx(p["kwh"] * 0.25)
        assert p["method"] == method and p["coverage"] == pytest.approx(coverage)


def test_energy_node_sums_and_shared_flags(client):
    nodes = client.get(f"/api/v1/energy?{RANGE}").json()["nodes"]
    one, two = nodes["lyon.node-1"], nodes["lyon.node-2"]
    assert one["joules"] == pytest.approx(RAMP_J + CONST_COUNTER_J)
    assert one["probes"] == ["lyon.const", "lyon.ramp"]
    assert one["shared"] is True and one["shared_probes"] == ["lyon.const"] and one["coverage"] == 1.0
    assert two["joules"] == pytest.approx(CONST_COUNTER_J + GAPPY_J)  # whole, never split
    assert two["probes"] == ["lyon.const", "lyon.gappy"]  # lyon.sw1 (network) is left out
    assert two["coverage"] == pytest.approx(0.5)  # a node is as covered as its least covered probe
    assert two["cost"] == pytest.approx(two["kwh"] * 0.25)
    assert nodes["lyon.rapl"]["shared"] is False


def test_energy_of_some_nodes(client):
    body = client.get(f"/api/v1/energy?nodes=lyon.node-1&{RANGE}").json()
    assert list(body["nodes"]) == ["lyon.node-1"]
    assert sorted(body["probes"]) == ["lyon.const", "lyon.ramp"]


def test_energy_of_some_probes_by_alias_and_part_of_the_range(client):
    body = client.get(f"/api/v1/energy?probes=ramp&from={FROM_S + 1800}&to={TO_S}").json()
    assert body["nodes"] == {} and list(body["probes"]) == ["lyon.ramp"]
    assert body["probes"]["lyon.ramp"]["joules"] == pytest.approx(175.0 * 1800)  # 150 W -> 200 W


def test_energy_of_a_probe_without_samples(client):
    p = client.get(f"/api/v1/energy?probes=lyon.waiting&{RANGE}").json()["probes"]["lyon.waiting"]
    assert p == {"joules": 0.0, "kwh": 0.0, "coverage": 0.0, "covered_s": 0.0, "cost": 0.0, "method": None}


def test_energy_refuses_network_probes_and_unknown_names(client):
    assert "/api/v1/traffic" in problem(client.get(f"/api/v1/energy?probes=lyon.sw1&{RANGE}"), 422)
    assert "'lyon.node-9'" in problem(client.get(f"/api/v1/energy?nodes=lyon.node-9&{RANGE}"), 404)
    assert "'lyon.x'" in problem(client.get(f"/api/v1/energy?probes=lyon.x&{RANGE}"), 404)


def test_energy_gap_limit_follows_the_probe_period(store):
    """A 60 s probe: gaps up to 3 periods (180 s) are bridged though max_gap is 5 s."""
    t = T0 + np.arange(0, 61) * 60_000
    store.handle(Batch.of_series(Series("lyon.slow", "power", "W"), t, np.full(len(t), 10.0)))
    topo = topology()
    topo.add(Probe("lyon.slow", period=60.0))
    p = client_for(store, topo=topo).get(f"/api/v1/energy?probes=lyon.slow&{RANGE}").json()["probes"]
    assert p["lyon.slow"]["joules"] == pytest.approx(36_000) and p["lyon.slow"]["coverage"] == 1.0
    unknown_period = client_for(store).get(f"/api/v1/energy?probes=lyon.slow&{RANGE}").json()
    assert unknown_period["probes"]["lyon.slow"]["coverage"] == 0.0  # 60 s > max_gap: nothing bridged


# -- traffic --------------------------------------------------------------------------------


def test_traffic(client):
    body = client.get(f"/api/v1/traffic?{RANGE}").json()
    assert list(body["probes"]) == ["lyon.sw1"]
    sw = body["probes"]["lyon.sw1"]
    assert sw["network_in"]["bytes"] == pytest.approx(RX_B) and sw["network_in"]["coverage"] == 1.0
    assert sw["network_out"]["bytes"] == pytest.approx(TX_B)


def test_traffic_refuses_power_probes(client):
    assert "network_in" in problem(client.get(f"/api/v1/traffic?probes=ramp&{RANGE}"), 422)


# -- health, drivers, docs ------------------------------------------------------------------


def test_health_with_runner_and_bus(store):
    client = client_for(store, runner_state=lambda: RUNNER_STATE, bus_stats=lambda: BUS_STATS)
    body = client.get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert body["problems"] == ["driver bmc: backoff (lyon.bmc: connection refused)"]
    assert body["version"] == __version__ and body["time"] == TO_S
    assert body["drivers"] == RUNNER_STATE and body["bus"] == BUS_STATS
    assert body["store"]["samples_total"] == store.stats()["samples_total"] > 0
    assert client.get("/api/v1/drivers").json() == {"runner": True, "drivers": RUNNER_STATE}


def test_health_without_runner(client):
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["drivers"] is None and body["bus"] is None
    assert client.get("/api/v1/drivers").json() == {"runner": False, "drivers": []}


def test_openapi_and_docs(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/probes", "/api/v1/probes/{probe}", "/api/v1/probes/{probe}/{metric}",
                 "/api/v1/series", "/api/v1/energy", "/api/v1/traffic", "/api/v1/health",
                 "/api/v1/drivers", "/v1/probe-ids/", "/v1/probes/{probe}/{meter}/", "/metrics"):
        assert path in paths, path
    assert "from" in [p["name"] for p in paths["/api/v1/series"]["get"]["parameters"]]
    assert "swagger" in client.get("/api/v1/docs").text.lower()


def test_unknown_endpoint_points_to_the_docs(client):
    assert "/api/v1/docs" in problem(client.get("/api/v2/probes"), 404)


@pytest.mark.parametrize("query", [
    "/api/v1/series?probes=ramp&from=nan", "/api/v1/series?probes=ramp&from=1e400",
    "/api/v1/series?probes=ramp&resolution=99999999999999999999w",
    "/api/v1/series?probes=ramp&from=-99999999w",
    "/api/v1/series?probes=ramp&metric=", "/api/v1/series?probes=ramp&agg=", "/api/v1/series?probes=%00",
    "/api/v1/energy?from=9999-12-31&to=now", "/api/v1/energy?nodes=,,&probes=", "/api/v1/traffic?from=-0s",
    "/api/v1/probes/%20", "/api/v1/probes/ramp/%2e%2e", "/v1/probes/%00/w/",
    "/api/v1/series?probes=ramp&resolution=0.0001s", "/api/v1/series?probes=ramp&to=99999999999",
])
def test_odd_input_never_gives_500(client, query):
    r = client.get(query)  # TestClient re-raises server errors, so a 500 fails here
    assert r.status_code < 500, r.text


# -- wrapping counters ----------------------------------------------------------------------


def test_wrapping_counters_count_the_part_before_the_wrap(store):
    """RAPL energy and SNMP Counter32 wrap: their kind carries the range, and every figure
    adds the increase before the wrap instead of taking the drop as a reset."""
    from wattsight.sample import wrapping_counter

    t = T0 + np.arange(0, 3601) * 1000
    wrap_j = 1000.0  # a small RAPL-like range: 100 W wraps every 10 s
    joules = (np.arange(len(t)) * 100.0 + 950.0) % wrap_j
    store.handle(Batch.of_series(Series("lyon.pkg", "energy", "J", wrapping_counter(wrap_j)), t, joules))
    octets = (np.arange(len(t)) * 3.0e6 + 4.29e9) % 2**32  # 3 MB/s through a Counter32
    store.handle(Batch.of_series(Series("lyon.port", "network_in", "B", wrapping_counter(2**32)), t, octets))
    topo = topology()
    topo.add(Probe("lyon.pkg", period=1.0))
    topo.add(Probe("lyon.port", period=1.0))
    c = client_for(store, topo=topo)
    e = c.get(f"/api/v1/energy?probes=lyon.pkg&{RANGE}").json()["probes"]["lyon.pkg"]
    assert e["method"] == "counter" and e["joules"] == pytest.approx(100.0 * 3600)
    assert c.get("/api/v1/probes/lyon.pkg/energy").json()["energy"]["joules"] == pytest.approx(100.0 * 3600)
    traffic = c.get(f"/api/v1/traffic?probes=lyon.port&{RANGE}").json()["probes"]["lyon.port"]
    assert traffic["network_in"]["bytes"] == pytest.approx(3.0e6 * 3600)
    increase = c.get("/api/v1/probes/lyon.port/network_in").json()["increase"]
    assert increase["amount"] == pytest.approx(3.0e6 * 3600)
