"""What makes the overview open fast keeps the answers the same: /series written without FastAPI's
encoder, a range cut inside an hour answered from minute rollups, the summary's whole-minute start."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.encoders import jsonable_encoder
from test_api_helpers import FROM_S, HOUR, T0, T_END, client_for, open_store, topology

from wattsight.consumers.api.catalog import Catalog
from wattsight.consumers.api.models import fast_json
from wattsight.consumers.api.queries import rolled_buckets, series_report

MINUTE = 60_000
CUT = T0 + 37 * MINUTE + 12_345  # "now", inside a minute and an hour
KEYS = [("lyon.ramp", "power"), ("lyon.gappy", "power"), ("lyon.const", "energy"), ("lyon.sw1", "network_in")]


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    s.flush()  # into segments and rollups, as a running store does every minute
    yield s
    s.close()


@pytest.mark.parametrize("query", [
    "probes=ramp,lyon.gappy&metric=power&resolution=auto",
    "probes=lyon.gappy&resolution=1m&agg=avg",  # empty buckets of the gap left out
    "probes=lyon.sw1&metric=network_in&resolution=10m&agg=max",
    f"probes=ramp&resolution=raw&from={FROM_S}&to={FROM_S + 30}",
    f"probes=ramp,lyon.const&resolution=1h&from={FROM_S}&to={CUT / 1000}",
])
def test_series_answer_is_what_fastapi_would_have_written(store, query):
    client = client_for(store)
    r = client.get(f"/api/v1/series?{query}" + ("" if "from=" in query else f"&from={FROM_S}&to={T_END // 1000}"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    params = dict(p.split("=", 1) for p in query.split("&"))
    start = int(float(params.get("from", FROM_S)) * 1000)
    end = int(float(params.get("to", T_END / 1000)) * 1000)
    direct = series_report(store, Catalog(store, topology()), params["probes"].split(","),
                           params.get("metric", "power"), start, end, resolution=params["resolution"],
                           agg=params.get("agg", "minmax"), max_points=1000)
    assert r.json() == jsonable_encoder(direct)
    assert sum(s["count"] for s in r.json()["series"]) > 0


def test_fast_json_writes_numpy_and_nan_as_plain_json():
    body = json.loads(fast_json({"a": np.float64(1.5), "b": [float("nan"), np.int64(3)], "c": (1, "x")}).body)
    assert body == {"a": 1.5, "b": [None, 3], "c": [1, "x"]}


@pytest.mark.parametrize("step", [HOUR, 10 * MINUTE, 2 * MINUTE])
@pytest.mark.parametrize("end", [CUT, T0 + 37 * MINUTE, T0 + 20 * MINUTE + 1, T_END + 1])
def test_a_cut_last_bucket_holds_what_raw_samples_give(store, step, end):
    got = rolled_buckets(store, KEYS, T0, end, step)
    raw = store.buckets(KEYS, T0, end - 1, step, use_rollups=False)
    for k in KEYS:
        a, b = got[k], raw[k]
        assert np.asarray(a["t"]).tolist() == np.asarray(b["t"]).tolist(), k
        for col in ("n", "min", "max", "last"):
            assert np.asarray(a[col]).tolist() == np.asarray(b[col]).tolist(), (k, col)
        assert np.allclose(a["avg"], b["avg"], rtol=1e-12, atol=0), k


def test_the_cut_bucket_is_read_minute_by_minute(store):
    calls = []
    real = store.buckets

    def spy(keys, start, end, step, **kw):
        calls.append((start, end, step))
        return real(keys, start, end, step, **kw)

    store.buckets = spy
    rolled_buckets(store, KEYS, T0, CUT, HOUR)
    # the hour "now" is in is not read as one raw bucket: minute cells, and the last minute raw
    assert calls == [(T0, CUT - 1, MINUTE)]
    calls.clear()
    rolled_buckets(store, KEYS, T0, T0 + 2 * HOUR, HOUR)  # not cut: one call, as before
    assert calls == [(T0, T0 + 2 * HOUR - 1, HOUR)]
