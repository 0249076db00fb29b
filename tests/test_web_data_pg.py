"""The web data routes over the PostgreSQL store answer as over the embedded one (same data, same figures)."""

from __future__ import annotations

import pytest
from store_contract import PgBackend
from test_api_helpers import FROM_S, T0, TO_S, batches, client_for, open_store

RANGES = [f"from={FROM_S}&to={TO_S}", f"from={(T0 + 17_300) / 1000}&to={TO_S - 5.7}"]


@pytest.fixture
def pg_store():
    backend = PgBackend()
    try:
        store = backend.open()
        for b in batches():
            store.handle(b)
        yield store
    finally:
        backend.cleanup()


@pytest.mark.parametrize("span", RANGES)
def test_summary_is_the_same_over_postgresql(pg_store, tmp_path, span):
    embedded = open_store(tmp_path / "store")
    try:
        embedded.flush()
        want = client_for(embedded).get(f"/api/v1/summary?{span}").json()
    finally:
        embedded.close()
    got = client_for(pg_store).get(f"/api/v1/summary?{span}").json()
    assert sorted(got["probes"]) == sorted(want["probes"])
    for pid, w in want["probes"].items():
        g = got["probes"][pid]
        assert g["samples"] == w["samples"] and g["min"] == w["min"] and g["max"] == w["max"], pid
        assert g["avg"] == (None if w["avg"] is None else pytest.approx(w["avg"], rel=1e-12)), pid
        assert g["energy"]["joules"] == pytest.approx(w["energy"]["joules"], rel=1e-9), pid
        assert g["energy"]["coverage"] == pytest.approx(w["energy"]["coverage"]), pid
    assert got["nodes"].keys() == want["nodes"].keys()
    network = client_for(pg_store).get(f"/api/v1/summary?{span}&metric=network_out").json()
    assert network["probes"]["lyon.sw1"]["avg"] == pytest.approx(500.0)


def test_graph_and_export_over_postgresql(pg_store):
    c = client_for(pg_store)
    r = c.get("/graph/hour/?width=400&height=200")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    r = c.get(f"/api/v1/export.zip?{RANGES[0]}&probes=ramp&resolution=1m")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
