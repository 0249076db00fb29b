"""The web UI's data routes over a real store of known data (test_api_helpers): summary and PNG graphs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_api_helpers import (  # noqa: F401  (fixtures)
    CONFIG,
    CONST_COUNTER_J,
    FROM_S,
    GAPPY_J,
    HOUR,
    RAMP_J,
    RAPL_J,
    RX_B,
    T0,
    T_END,
    TO_S,
    TX_B,
    client,
    client_for,
    open_store,
    store,
    topology,
)

from wattsight.config import StoreConfig
from wattsight.config.models import RecorderConfig
from wattsight.consumers.api import ApiContext, create_app
from wattsight.consumers.store import Store
from wattsight.energy import J_PER_KWH
from wattsight.recordings.db import RecordingsDB
from wattsight.recordings.service import Recorder
from wattsight.sample import Batch, Series, Topology
from wattsight.web import graphs
from wattsight.web.graphs_render import OKABE_ITO
from wattsight.web.selection import display_step
from wattsight.web.summary import range_stats

RANGE = f"from={FROM_S}&to={TO_S}"
PRICE = CONFIG.price_per_kwh


def problem(r, status: int) -> str:
    assert r.status_code == status, r.text
    return r.json()["detail"]


# -- summary --------------------------------------------------------------------------------


def test_summary_power_per_probe_is_exact(client):
    body = client.get(f"/api/v1/summary?{RANGE}").json()
    assert body["metric"] == "power" and body["unit"] == "W" and body["currency"] == "EUR"
    assert sorted(body["probes"]) == ["lyon.const", "lyon.gappy", "lyon.ramp", "lyon.rapl"]
    ramp = body["probes"]["lyon.ramp"]
    assert (ramp["min"], ramp["max"], ramp["last"], ramp["samples"]) == (100.0, 200.0, 200.0, 3601)
    assert ramp["avg"] == pytest.approx(150.0, rel=1e-12)
    assert ramp["energy"]["joules"] == pytest.approx(RAMP_J, rel=1e-9)
    assert ramp["energy"]["kwh"] == pytest.approx(RAMP_J / J_PER_KWH, rel=1e-9)
    assert ramp["energy"]["cost"] == pytest.approx(RAMP_J / J_PER_KWH * PRICE, rel=1e-9)
    assert ramp["energy"]["method"] == "integrated" and ramp["aliases"] == ["ramp", "taurus-1-psu"]
    const = body["probes"]["lyon.const"]
    assert const["energy"]["method"] == "counter"
    assert const["energy"]["joules"] == pytest.approx(CONST_COUNTER_J)
    assert const["shared"] is True and const["avg"] == 50.0
    gappy = body["probes"]["lyon.gappy"]
    assert gappy["energy"]["coverage"] == pytest.approx(0.5, abs=1e-3)
    assert gappy["energy"]["joules"] == pytest.approx(GAPPY_J, rel=1e-3) and gappy["samples"] == 1802
    rapl = body["probes"]["lyon.rapl"]  # an energy counter only: energy, no power figures
    assert rapl["min"] is None and rapl["avg"] is None and rapl["energy"]["joules"] == pytest.approx(RAPL_J)


def test_summary_totals_per_site_and_node(client):
    body = client.get(f"/api/v1/summary?{RANGE}").json()
    total_j = RAMP_J + CONST_COUNTER_J + GAPPY_J + RAPL_J
    site = body["sites"]["lyon"]
    assert site["probes"] == 4 and site["joules"] == pytest.approx(total_j, rel=1e-3)
    assert site["cost"] == pytest.approx(total_j / J_PER_KWH * PRICE, rel=1e-3)
    assert site["coverage"] == pytest.approx(0.5, abs=1e-3)
    assert site["last"] == pytest.approx(200.0 + 50.0 + 100.0)
    assert body["total"]["joules"] == pytest.approx(site["joules"])
    node1 = body["nodes"]["lyon.node-1"]  # two probes summed, one of them shared with node-2
    assert node1["joules"] == pytest.approx(RAMP_J + CONST_COUNTER_J, rel=1e-9)
    assert node1["shared"] is True and node1["shared_probes"] == ["lyon.const"]
    assert body["nodes"]["lyon.node-2"]["joules"] == pytest.approx(CONST_COUNTER_J + GAPPY_J, rel=1e-3)


def test_summary_selection_by_alias_node_site_regex(client):
    def ids(query: str) -> list[str]:
        r = client.get(f"/api/v1/summary?{RANGE}&{query}")
        assert r.status_code == 200, r.text
        return sorted(r.json()["probes"])

    assert ids("probes=ramp") == ["lyon.ramp"]
    assert ids("nodes=lyon.node-2") == ["lyon.const", "lyon.gappy"]  # sw1 (network only) left out
    assert ids("site=lyon&regex=^lyon\\.r") == ["lyon.ramp", "lyon.rapl"]
    assert ids("regex=taurus") == ["lyon.ramp"]  # an alias matches
    assert ids("probes=ramp&nodes=lyon.node-2&regex=gap") == ["lyon.gappy"]
    body = client.get(f"/api/v1/summary?{RANGE}&probes=ramp,lyon.sw1").json()
    assert list(body["probes"]) == ["lyon.ramp"]
    assert body["skipped"][0]["probe"] == "lyon.sw1" and "network_in" in body["skipped"][0]["reason"]


def test_summary_network_rates(client):
    body = client.get(f"/api/v1/summary?{RANGE}&metric=network_in").json()
    assert body["unit"] == "B/s" and list(body["probes"]) == ["lyon.sw1"]
    sw1 = body["probes"]["lyon.sw1"]
    assert sw1["bytes"] == pytest.approx(RX_B) and sw1["avg"] == pytest.approx(1000.0)
    assert sw1["min"] == pytest.approx(1000.0) and sw1["max"] == pytest.approx(1000.0)
    assert body["nodes"]["lyon.node-2"]["bytes"] == pytest.approx(RX_B)
    minute = client.get(f"/api/v1/summary?from={TO_S - 60}&to={TO_S}&metric=network_in").json()
    short = minute["probes"]["lyon.sw1"]  # buckets never shorter than the probe's 1 s period
    assert minute["step"] == 1.0 and (short["min"], short["max"], short["last"]) == (1000.0, 1000.0, 1000.0)
    out = client.get(f"/api/v1/summary?{RANGE}&metric=network_out").json()
    assert out["total"]["bytes"] == pytest.approx(TX_B) and out["total"]["rate"] == pytest.approx(500.0)


def test_summary_errors_say_what_to_do(client):
    assert "did you mean" in problem(client.get(f"/api/v1/summary?{RANGE}&probes=lyon.rampp"), 404)
    assert "network_out" in problem(client.get(f"/api/v1/summary?{RANGE}&metric=volts"), 422)
    assert "lyon" in problem(client.get(f"/api/v1/summary?{RANGE}&site=paris"), 404)
    assert "regular expression" in problem(client.get(f"/api/v1/summary?{RANGE}&regex=(unclosed"), 422)


def test_summary_and_graph_of_a_job(store, tmp_path):
    """job=<id>: the probes of the nodes the job ran on (a scheduler's short host names matched)."""
    rec = Recorder(RecordingsDB(tmp_path / "rec.sqlite"), RecorderConfig(), None)
    ctx = ApiContext(store=store, topology=topology(), config=CONFIG, clock=lambda: T_END, recorder=rec)
    c = TestClient(create_app(ctx))
    r = c.post("/api/v1/jobs", json={"id": "4242", "nodes": ["node-1"], "start": FROM_S, "end": TO_S})
    assert r.status_code == 201, r.text
    body = c.get(f"/api/v1/summary?{RANGE}&job=4242").json()
    assert sorted(body["probes"]) == ["lyon.const", "lyon.ramp"]
    assert body["nodes"]["lyon.node-1"]["joules"] == pytest.approx(RAMP_J + CONST_COUNTER_J, rel=1e-9)
    png(c.get("/graph/hour/?job=4242"), 800, 320)
    assert "4343" in problem(c.get(f"/api/v1/summary?{RANGE}&job=4343"), 404)


def test_summary_of_an_unaligned_range_after_flush(store):
    """Edges inside minutes: raw samples there, rollup cells between; the same figures as the raw data."""
    store.flush()
    a, b = T0 + 17_300, T_END - 5_700
    body = client_for(store).get(f"/api/v1/summary?probes=ramp&from={a / 1000}&to={b / 1000}").json()
    s = np.arange(18, 3595)  # the samples in range, in seconds since T0
    ramp = body["probes"]["lyon.ramp"]
    assert ramp["samples"] == len(s) and ramp["min"] == pytest.approx(100 + 100 * 18 / 3600)
    assert ramp["avg"] == pytest.approx(np.mean(100 + 100 * s / 3600), rel=1e-12)
    assert ramp["last"] == pytest.approx(100 + 100 * 3594 / 3600)


def test_range_stats_match_raw_samples_over_days(tmp_path):
    """Two days of data: pieces of whole days, hours and minutes from rollups equal numpy on the samples."""
    day = 24 * HOUR
    start = T0 - T0 % day
    t = start + np.arange(0, 2 * 86400 + 3000, 1, dtype=np.int64) * 1000
    rng = np.random.default_rng(3)
    keys = [("x.a", "power"), ("x.b", "power")]
    with Store(StoreConfig(path=tmp_path / "s"), clock=lambda: int(t[-1])) as st:
        for pid, _ in keys:
            st.handle(Batch.of_series(Series(pid, "power", "W"), t, rng.normal(200, 30, len(t)).round(1)))
        st.flush()
        raw = st.read(keys, int(t[0]), int(t[-1]))
        for lo, hi in [(start + 1234, start + 2 * day + 777), (start + HOUR, start + day + 2 * HOUR - 1),
                       (start + 59_999, start + 61_000)]:
            got = range_stats(st, keys, lo, hi)
            for k in keys:
                tt, vv = raw[k]
                v = vv[(tt >= lo) & (tt <= hi)]
                assert got[k]["n"] == len(v) and got[k]["last"] == v[-1]
                assert (got[k]["min"], got[k]["max"]) == (v.min(), v.max())
                assert got[k]["avg"] == pytest.approx(v.mean(), rel=1e-12)


# -- PNG graphs -----------------------------------------------------------------------------


def png(r, width: int, height: int) -> np.ndarray:
    """The decoded image (RGB array) after checking the answer, its size and that it is not blank."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (width, height)
    rgb = np.asarray(img.convert("RGB"))
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20  # axes, text and curves, not one flat colour
    return rgb


def has_colour(rgb: np.ndarray, hex_colour: str, at_least: int = 200) -> bool:
    want = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb.astype(int) - want).sum(axis=2) <= 12).sum()) >= at_least


def test_summary_graph_stacks_probes_in_palette_colours(client):
    rgb = png(client.get("/graph/hour/?width=640&height=300"), 640, 300)
    assert has_colour(rgb, OKABE_ITO[0]) and has_colour(rgb, OKABE_ITO[1])  # const and gappy areas
    rgb = png(client.get("/graph/day"), 800, 320)  # without the trailing slash, default size


def test_probe_graph_by_alias_and_network_graph(client):
    rgb = png(client.get("/graph/hour/ramp/?width=500&height=200"), 500, 200)
    assert has_colour(rgb, OKABE_ITO[0], at_least=50)  # the line
    assert not has_colour(rgb, OKABE_ITO[1], at_least=50)
    png(client.get("/graph/hour/lyon.sw1/?metric=network"), 800, 320)
    png(client.get("/graph/week/?metric=network_in&probes=lyon.sw1"), 800, 320)


def test_graph_without_data_says_so_in_the_image(client):
    png(client.get("/graph/minute/"), 800, 320)  # the clock is at T_END: the last minute has data
    late = client_for(client.app.state.ctx.store, clock=lambda: T_END + 10 * HOUR)
    rgb = png(late.get("/graph/minute/"), 800, 320)
    assert not has_colour(rgb, OKABE_ITO[0], at_least=20)


def test_graph_cache_etag_and_304(client):
    first = client.get("/graph/hour/?width=400&height=200")
    again = client.get("/graph/hour/?width=400&height=200")
    cache = graphs.cache_of(client.app)
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert (cache.hits, cache.misses) == (1, 1)
    max_age = int(first.headers["cache-control"].split("max-age=")[1])
    assert 1 <= max_age <= graphs.PERIODS["hour"][1] // 1000
    r = client.get("/graph/hour/?width=400&height=200", headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 304 and r.content == b""
    head = client.head("/graph/hour/?width=400&height=200")  # link checkers, wikis
    assert head.status_code == 200 and head.headers["etag"] == first.headers["etag"] and head.content == b""
    other = client.get("/graph/hour/?width=401&height=200")
    assert other.headers["etag"] != first.headers["etag"] and (cache.hits, cache.misses) == (3, 2)


def test_graph_cache_key_moves_with_the_period_step(store):
    now = [T_END]
    c = client_for(store, clock=lambda: now[0])
    a = c.get("/graph/minute/ramp/").headers["etag"]
    now[0] += graphs.PERIODS["minute"][1]  # the next step: a new image (the window slid)
    b = c.get("/graph/minute/ramp/").headers["etag"]
    cache = graphs.cache_of(c.app)
    assert a != b and cache.misses == 2


def test_graph_errors(client):
    detail = problem(client.get("/graph/fortnight/"), 422)
    assert all(p in detail for p in graphs.PERIODS)
    assert "GET /api/v1/probes" in problem(client.get("/graph/day/nope/"), 404)
    assert "network_in" in problem(client.get("/graph/day/lyon.sw1/"), 404)  # no power: says what it has
    assert "width" in problem(client.get("/graph/day/?width=99999"), 422)
    assert "network" in problem(client.get("/graph/day/?metric=volts"), 422)


def test_long_periods_are_bucketed_not_raw(tmp_path):
    """A year graph of 1 Hz data asks the store for day buckets, never 31 M raw samples."""
    s = open_store(tmp_path / "s")
    try:
        s.flush()
        views = client_for(s)
        step = display_step([], *graphs.period_range("year", T_END), 800)
        assert step >= 12 * HOUR
        png(views.get("/graph/year/?width=800&height=320"), 800, 320)
    finally:
        s.close()


def test_an_empty_store_gives_empty_answers_not_errors(tmp_path):
    with Store(StoreConfig(path=tmp_path / "empty")) as empty:
        c = client_for(empty, topo=Topology())
        body = c.get("/api/v1/summary").json()
        assert body["probes"] == {} and body["total"]["joules"] == 0 and body["count"] == 0
        png(c.get("/graph/day/"), 800, 320)  # says how to add a probe
        assert c.get("/api/v1/summary?metric=network_out").json()["total"]["bytes"] == 0


def test_network_chart_has_in_above_and_out_below_as_rates(store):
    """The data of /graph/hour/lyon.sw1/?metric=network: counters made rates, out drawn negative."""
    from wattsight.consumers.api.catalog import Catalog
    from wattsight.web.selection import Selection

    view = Catalog(store, topology()).resolve("lyon.sw1")
    start, end = graphs.period_range("hour", T_END)
    chart = graphs.chart(store, Selection("network", [view]), start, end, 800, probe=view)
    [up], [down] = chart.up, chart.down
    assert up.label == "lyon.sw1 in" and down.label == "lyon.sw1 out"
    inside = (chart.t > T0) & (chart.t + 10_000 < end)  # buckets wholly inside the data
    assert np.allclose(up.avg[inside], 1000.0) and np.allclose(down.avg[inside], 500.0)
    assert chart.unit == "B/s" and not chart.stacked
    rgb = np.asarray(Image.open(io.BytesIO(graphs.render_png(chart, 800, 320))).convert("RGB"))
    rows = np.flatnonzero((np.abs(rgb.astype(int) - [0, 114, 178]).sum(axis=2) <= 90).sum(axis=1) > 100)
    assert len(rows) > 0 and rows.max() < 320 // 2  # the in line in the upper half: out is below


def test_a_stack_of_many_probes_draws_the_top_ones_and_sums_the_others_hourly(tmp_path):
    """60 probes of constant power 10 x i W: the 7 heaviest in colour, the other 53 summed."""
    n = graphs.TOP + graphs.FINE_OTHERS + 3
    t = T_END - 2 * HOUR + np.arange(0, 2 * 3600, dtype=np.int64) * 1000
    with Store(StoreConfig(path=tmp_path / "many"), clock=lambda: T_END) as st:
        for i in range(n):
            st.handle(Batch.of_series(Series(f"x.p{i:02d}", "power", "W"), t, np.full(len(t), 10.0 * i)))
        st.flush()
        from wattsight.consumers.api.catalog import Catalog
        from wattsight.web.selection import select

        sel = select(Catalog(st, Topology()), "power")
        start, end = graphs.period_range("day", T_END)
        chart = graphs.chart(st, sel, start, end, 800)
        assert [c.label for c in chart.up[:7]] == [f"x.p{i:02d}" for i in range(n - 1, n - 8, -1)]
        others = chart.up[-1]
        assert others.others and others.label.startswith(f"others ({n - 7} probes")
        whole_hours = (chart.t >= -(-t[0] // HOUR) * HOUR) & (chart.t < T_END // HOUR * HOUR)
        assert whole_hours.sum() == 30  # one hour of 2 min buckets
        assert np.allclose(others.avg[whole_hours], 10.0 * sum(range(n - 7)))
        assert np.allclose(chart.up[0].avg[(chart.t >= t[0]) & (chart.t < T_END - 120_000)], 10.0 * (n - 1))
        png(client_for(st, topo=Topology()).get("/graph/day/"), 800, 320)


def test_counter_rates_bridge_one_empty_bucket_not_a_gap_or_a_reset():
    from wattsight.web.selection import rates

    b = {"t": np.array([0, 1000, 3000, 7000, 8000, 9000]), "last": np.array([0, 1000, 3000, 7000, 5, 1005.0])}
    t, r = rates(b, 1000)
    assert t.tolist() == b["t"].tolist()
    assert np.isnan(r[0]) and r[1] == 1000.0 and r[2] == 1000.0  # one empty bucket: over 2 s
    assert np.isnan(r[3]) and np.isnan(r[4]) and r[5] == 1000.0  # a 4 s gap, then a reset: no rate
