"""Kwapi's /v1 read API: the shapes OpenStack Kwapi's kwapi/plugins/api/v1.py answered with."""

from __future__ import annotations

import numpy as np
import pytest
from test_api_helpers import client, store  # noqa: F401  (fixtures)
from test_api_helpers import CONST_COUNTER_J, RAMP_J, RAPL_J, T_END, client_for

from wattsight.energy import J_PER_KWH
from wattsight.sample import Batch, Series

KWAPI_PROBES = ["lyon.const", "lyon.gappy", "lyon.ramp", "lyon.rapl"]


def test_welcome(client):
    r = client.get("/v1/")
    assert r.status_code == 200 and r.text == "Welcome to Kwapi!"


def test_probe_ids(client):
    r = client.get("/v1/probe-ids/")
    assert r.json() == {"probe_ids": KWAPI_PROBES}  # power/energy probes only, as Kwapi's collector
    assert r.headers["access-control-allow-origin"] == "*"


def test_probes_hold_kwapi_records(client):
    probes = client.get("/v1/probes/").json()["probes"]
    assert sorted(probes) == KWAPI_PROBES
    for record in probes.values():
        assert set(record) == {"timestamp", "kwh", "w"}
        assert record["timestamp"] == T_END / 1000
    assert probes["lyon.ramp"]["w"] == 200.0
    assert probes["lyon.ramp"]["kwh"] == pytest.approx(RAMP_J / J_PER_KWH)
    assert probes["lyon.const"]["kwh"] == pytest.approx(CONST_COUNTER_J / J_PER_KWH)  # counter preferred
    assert probes["lyon.const"]["w"] == 50.0
    assert probes["lyon.rapl"]["w"] == pytest.approx(30.0)  # from the counter's last two readings
    assert probes["lyon.rapl"]["kwh"] == pytest.approx(RAPL_J / J_PER_KWH)


@pytest.mark.parametrize("name", ["lyon.ramp", "ramp", "taurus-1-psu"])
def test_probe_info_keyed_by_the_name_asked(client, name):
    body = client.get(f"/v1/probes/{name}/").json()
    assert list(body) == [name]
    assert body[name] == client.get("/v1/probes/").json()["probes"]["lyon.ramp"]


def test_probe_info_by_bare_name_as_kwapi_ids_had_no_site(client):
    assert client.get("/v1/probes/rapl/").json()["rapl"]["w"] == pytest.approx(30.0)


@pytest.mark.parametrize("meter,value",
                         [("w", 200.0), ("kwh", RAMP_J / J_PER_KWH), ("timestamp", T_END / 1000)])
def test_probe_value(client, meter, value):
    assert client.get(f"/v1/probes/lyon.ramp/{meter}/").json() == {"lyon.ramp": {meter: pytest.approx(value)}}


@pytest.mark.parametrize("path", [
    "/v1/probes/lyon.nope/", "/v1/probes/lyon.nope/w/", "/v1/probes/lyon.ramp/watts/",
    "/v1/probes/lyon.sw1/", "/v1/probes/lyon.waiting/kwh/",
])
def test_unknown_probe_or_meter_is_404(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.json()["detail"]


def test_paths_without_the_trailing_slash_redirect(client):
    assert client.get("/v1/probes").json()["probes"]
    assert client.get("/v1/probes/lyon.ramp/w").json() == {"lyon.ramp": {"w": 200.0}}


def test_kwh_keeps_growing_with_new_samples(store):
    client = client_for(store, clock=lambda: T_END + 600_000)
    before = client.get("/v1/probes/lyon.ramp/kwh/").json()["lyon.ramp"]["kwh"]
    t = T_END + np.arange(1, 601, dtype=np.int64) * 1000
    store.handle(Batch.of_series(Series("lyon.ramp", "power", "W"), t, np.full(len(t), 200.0)))
    after = client.get("/v1/probes/lyon.ramp/").json()["lyon.ramp"]
    assert after["kwh"] - before == pytest.approx(200.0 * 600 / J_PER_KWH, rel=1e-9)
    assert after["timestamp"] == (T_END + 600_000) / 1000
    fresh = client_for(store).get("/v1/probes/lyon.ramp/kwh/").json()["lyon.ramp"]["kwh"]
    assert after["kwh"] == pytest.approx(fresh, rel=1e-12)  # running total == reading it all afresh
