"""/api/v1/recordings on the real app, a real store of known energy and a real SQLite file."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from test_api_helpers import T_END, TIMES
from test_recordings_helpers import S0, TOKEN, Clock, bearer, detail, make_client, ramp_joules

from wattsight.sample import Batch, Series

pytest_plugins = ("test_recordings_helpers",)  # its fixtures: store, client, auth_client

RAMP = {"probes": ["ramp"]}  # an alias of lyon.ramp


def start(c, at: float = S0 + 100, env: dict = RAMP, **extra) -> dict:
    r = c.post("/api/v1/recordings", json={"scenario": "bench", "environment": env, "start": at, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def step(c, rid: str, name: str, at: float, status: int = 201, **extra) -> dict:
    r = c.post(f"/api/v1/recordings/{rid}/steps", json={"name": name, "time": at, **extra})
    assert r.status_code == status, r.text
    return r.json()


# -- steps at the caller's times ------------------------------------------------------------


def test_steps_are_taken_at_the_callers_times_not_at_arrival(client):
    """The app's clock says T_END (an hour later) when every request arrives: the report must use
    the times in the bodies, so its energies are the ramp's exact integrals over those."""
    rid = start(client)["id"]
    step(client, rid, "warm-up", S0 + 100)
    step(client, rid, "run", S0 + 700)
    stopped = client.post(f"/api/v1/recordings/{rid}/stop", json={"time": S0 + 1900}).json()
    assert [(s["name"], s["start"], s["end"]) for s in stopped["steps"]] == [
        ("warm-up", S0 + 100, S0 + 700), ("run", S0 + 700, S0 + 1900)]
    report = client.get(f"/api/v1/recordings/{rid}/report").json()
    for s, (a, b) in zip(report["steps"], [(100, 700), (700, 1900)]):
        want = ramp_joules(S0 + a, S0 + b)
        assert (s["from"], s["to"], s["duration_s"]) == (S0 + a, S0 + b, b - a)
        assert s["energy"]["joules"] == pytest.approx(want, rel=1e-9)
        assert s["probes"]["lyon.ramp"]["joules"] == pytest.approx(want, rel=1e-9)
        assert s["energy"]["kwh"] == pytest.approx(want / 3.6e6)
        assert s["energy"]["cost"] == pytest.approx(want / 3.6e6 * 0.25) and s["energy"]["currency"] == "EUR"
        assert s["energy"]["coverage"] == 1.0
        assert s["mean_power_w"] == pytest.approx(want / (b - a))
        assert s["peak_power_w"] == pytest.approx(100 + 100 * b / 3600)  # the ramp's last sample
    total = report["total"]
    assert total["energy"]["joules"] == pytest.approx(ramp_joules(S0 + 100, S0 + 1900), rel=1e-9)
    assert total["duration_s"] == 1800 and not report["running"]


def test_a_step_ended_explicitly_leaves_a_gap_before_the_next(client):
    rid = start(client)["id"]
    step(client, rid, "a", S0 + 100)
    r = client.post(f"/api/v1/recordings/{rid}/steps/a/end", json={"time": S0 + 200})
    assert r.status_code == 200 and r.json()["step"]["end"] == S0 + 200 and r.json()["step"]["end_explicit"]
    step(client, rid, "b", S0 + 500)
    steps = client.get(f"/api/v1/recordings/{rid}/steps").json()["steps"]
    assert [(s["start"], s["end"]) for s in steps] == [(S0 + 100, S0 + 200), (S0 + 500, None)]
    report = client.get(f"/api/v1/recordings/{rid}/report").json()
    assert report["steps"][0]["energy"]["joules"] == pytest.approx(ramp_joules(S0 + 100, S0 + 200))


def test_a_running_recording_is_reported_up_to_now(store, tmp_path):
    clock = Clock(int((S0 + 1800) * 1000))
    c = make_client(store, tmp_path / "r.sqlite", clock=clock)
    rid = start(c, S0 + 600)["id"]
    step(c, rid, "open", S0 + 1200)
    report = c.get(f"/api/v1/recordings/{rid}/report").json()
    assert report["running"] and report["total"]["to"] == S0 + 1800
    assert report["steps"][0]["open"] and report["steps"][0]["to"] == S0 + 1800
    assert report["total"]["energy"]["joules"] == pytest.approx(ramp_joules(S0 + 600, S0 + 1800))
    assert any("running" in w for w in report["warnings"])
    clock.ms += 600_000  # ten minutes later: the same recording, more energy
    later = c.get(f"/api/v1/recordings/{rid}/report").json()
    assert later["total"]["energy"]["joules"] == pytest.approx(ramp_joules(S0 + 600, S0 + 2400))


def test_environments_by_node_short_name_or_everything(client):
    by_node = start(client, env={"nodes": ["node-1"]})
    assert by_node["environment"] == {"nodes": ["lyon.node-1"]}
    report = client.get(f"/api/v1/recordings/{by_node['id']}/report").json()
    assert set(report["total"]["nodes"]) == {"lyon.node-1"}
    assert set(report["total"]["probes"]) == {"lyon.ramp", "lyon.const"}
    everything = start(client, env={})
    report = client.get(f"/api/v1/recordings/{everything['id']}/report").json()
    assert set(report["total"]["probes"]) == {"lyon.ramp", "lyon.const", "lyon.gappy", "lyon.rapl"}
    assert report["total"]["energy"]["coverage"] < 1  # lyon.gappy misses half an hour


def test_each_probe_says_the_provenance_of_the_series_its_energy_comes_from(store, client):
    """A modelled series (a CPU model, the demo rack) is reported as such, next to measured ones, so a
    client needs no second request per probe; a node is its probes' provenance when they agree."""
    store.handle(Batch.of_series(Series("lyon.model", "power", "W", "gauge", "modelled"), TIMES,
                                 np.full(len(TIMES), 42.0)))
    everything = start(client, env={})
    client.post(f"/api/v1/recordings/{everything['id']}/stop", json={"time": S0 + 200})
    total = client.get(f"/api/v1/recordings/{everything['id']}/report").json()["total"]
    for pid, e in total["probes"].items():
        metric = "energy" if e["method"] == "counter" else "power"
        stored = client.get(f"/api/v1/probes/{pid}").json()["last"][metric]["provenance"]
        assert e["provenance"] == stored, pid
    assert total["probes"]["lyon.model"]["provenance"] == "modelled"
    assert total["probes"]["lyon.model"]["joules"] == pytest.approx(42.0 * 100)
    nodes = {n: e["provenance"] for n, e in total["nodes"].items()}
    assert nodes["lyon.node-1"] == nodes["lyon.node-2"] == "measured" and nodes["lyon.model"] == "modelled"


def test_list_recordings_latest_first_and_by_scenario(client):
    a = start(client, S0 + 10)["id"]
    b = client.post("/api/v1/recordings", json={"scenario": "other", "start": S0 + 20}).json()["id"]
    assert [r["id"] for r in client.get("/api/v1/recordings").json()["recordings"]] == [b, a]
    only = client.get("/api/v1/recordings", params={"scenario": "bench"}).json()
    assert only["count"] == 1 and only["recordings"][0]["id"] == a


# -- clocks ------------------------------------------------------------------------------------


def test_a_caller_clock_out_of_sync_is_reported_and_stored(client):
    now = T_END / 1000
    rec = start(client, client_time=now - 5.0)
    assert rec["clock_offset_s"] == pytest.approx(5.0)
    assert len(rec["warnings"]) == 1 and "5.000 s behind" in rec["warnings"][0]
    assert "max_clock_skew = 2 s" in rec["warnings"][0]
    s = step(client, rec["id"], "a", S0 + 200, client_time=now + 3.5)
    assert s["clock_offset_s"] == pytest.approx(-3.5) and "ahead of" in s["warnings"][0]
    assert s["step"]["clock_offset_s"] == pytest.approx(-3.5)
    assert step(client, rec["id"], "b", S0 + 300, client_time=now - 1.0)["warnings"] == []
    stored = client.get(f"/api/v1/recordings/{rec['id']}").json()
    assert stored["clock_offset_s"] == pytest.approx(5.0) and len(stored["warnings"]) == 2


def test_the_skew_limit_is_configurable(store, tmp_path):
    c = make_client(store, tmp_path / "r.sqlite", max_clock_skew=10.0)
    assert start(c, client_time=T_END / 1000 - 5.0)["warnings"] == []


def test_a_time_in_the_servers_future_is_reported(client):
    rec = start(client, at=T_END / 1000 + 60)
    assert any("future" in w for w in rec["warnings"])


# -- auth --------------------------------------------------------------------------------------


def test_writes_need_the_token_when_one_is_configured(auth_client):
    body = {"scenario": "bench", "environment": RAMP, "start": S0 + 100}
    r = auth_client.post("/api/v1/recordings", json=body)
    assert "Authorization: Bearer <token>" in detail(r, 401) and r.headers["www-authenticate"] == "Bearer"
    wrong = auth_client.post("/api/v1/recordings", json=body, headers=bearer("not-it"))
    assert "not the one configured" in detail(wrong, 401) and TOKEN not in wrong.text
    ok = auth_client.post("/api/v1/recordings", json=body, headers=bearer())
    assert ok.status_code == 201
    rid = ok.json()["id"]
    detail(auth_client.post(f"/api/v1/recordings/{rid}/steps", json={"name": "a"}), 401)
    detail(auth_client.post(f"/api/v1/recordings/{rid}/stop", json={}), 401)
    detail(auth_client.post("/api/v1/jobs", json={"id": "1", "nodes": ["n"], "start": S0}), 401)
    assert auth_client.get(f"/api/v1/recordings/{rid}").status_code == 200  # reads stay open
    assert auth_client.get(f"/api/v1/recordings/{rid}/report").status_code == 200


def test_reads_need_the_token_when_configured(store, tmp_path):
    c = make_client(store, tmp_path / "r.sqlite", token=TOKEN, read_token_required=True)
    assert "read_token_required" in detail(c.get("/api/v1/recordings"), 401)
    detail(c.get("/api/v1/jobs"), 401)
    assert c.get("/api/v1/recordings", headers=bearer()).status_code == 200


def test_the_token_can_come_from_a_file(store, tmp_path):
    (tmp_path / "recorder.token").write_text(TOKEN + "\n")
    (tmp_path / "recorder.token").chmod(0o600)
    c = make_client(store, tmp_path / "r.sqlite", token_file=str(tmp_path / "recorder.token"))
    body = {"scenario": "bench", "start": S0 + 100}
    detail(c.post("/api/v1/recordings", json=body), 401)
    assert c.post("/api/v1/recordings", json=body, headers=bearer()).status_code == 201


# -- errors ------------------------------------------------------------------------------------


def test_unknown_recording_and_step_are_404(client):
    assert "no recording 'nope'" in detail(client.get("/api/v1/recordings/nope"), 404)
    detail(client.get("/api/v1/recordings/nope/report"), 404)
    detail(client.post("/api/v1/recordings/nope/steps", json={"name": "a", "time": S0}), 404)
    rid = start(client)["id"]
    step(client, rid, "a", S0 + 100)
    msg = detail(client.post(f"/api/v1/recordings/{rid}/steps/b/end", json={"time": S0 + 200}), 404)
    assert "has no step 'b'" in msg and "'a'" in msg


def test_step_times_outside_the_recording_are_422(client):
    rid = start(client, S0 + 100)["id"]
    msg = detail(client.post(f"/api/v1/recordings/{rid}/steps", json={"name": "early", "time": S0 + 50}), 422)
    assert "before the start of recording" in msg
    step(client, rid, "a", S0 + 300)
    msg = detail(client.post(f"/api/v1/recordings/{rid}/steps", json={"name": "back", "time": S0 + 200}), 422)
    assert "before the start of the latest step 'a'" in msg
    client.post(f"/api/v1/recordings/{rid}/stop", json={"time": S0 + 400})
    msg = detail(client.post(f"/api/v1/recordings/{rid}/steps/a/end", json={"time": S0 + 500}), 422)
    assert "after the time it was closed" in msg
    # ending a step earlier than the stop closed it is a late end: accepted
    assert client.post(f"/api/v1/recordings/{rid}/steps/a/end", json={"time": S0 + 350}).status_code == 200
    msg = detail(client.post(f"/api/v1/recordings/{rid}/stop", json={"time": S0 + 50}), 409)
    assert "stopped already" in msg


def test_stop_before_the_start_and_bad_times_are_422(client):
    rid = start(client, S0 + 100)["id"]
    assert "before the recording's start" in detail(
        client.post(f"/api/v1/recordings/{rid}/stop", json={"time": S0}), 422)
    assert "not a time" in detail(client.post(f"/api/v1/recordings/{rid}/steps",
                                              json={"name": "a", "time": "yesterday-ish"}), 422)
    assert "milliseconds given" in detail(client.post(f"/api/v1/recordings/{rid}/steps",
                                                      json={"name": "a", "time": S0 * 1000}), 422)


def test_duplicate_step_names_are_409_but_an_identical_retry_is_200(client):
    rid = start(client)["id"]
    first = step(client, rid, "a", S0 + 100)
    retry = step(client, rid, "a", S0 + 100, status=200)
    assert retry["step"] == first["step"]
    msg = detail(client.post(f"/api/v1/recordings/{rid}/steps", json={"name": "a", "time": S0 + 300}), 409)
    assert "has a step named 'a' already" in msg and "'a-2'" in msg


def test_an_identical_create_is_a_retry_answered_200_with_the_stored_recording(client):
    """A client whose answer was lost sends the same body again: no second, orphaned recording."""
    first = start(client, at=S0 + 100, metadata={"run": 1})
    again = client.post("/api/v1/recordings", json={"scenario": "bench", "environment": RAMP, "start": S0 + 100,
                                                    "metadata": {"run": 1}})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert start(client, at=S0 + 100, metadata={"run": 2})["id"] != first["id"]  # another run: 201
    assert start(client, at=S0 + 101, metadata={"run": 1})["id"] != first["id"]  # another start: 201
    assert client.get("/api/v1/recordings", params={"scenario": "bench"}).json()["count"] == 3


def test_a_stopped_recording_takes_no_step_409(client):
    rid = start(client)["id"]
    client.post(f"/api/v1/recordings/{rid}/stop", json={"time": S0 + 500})
    again = client.post(f"/api/v1/recordings/{rid}/stop", json={"time": S0 + 500})
    assert again.status_code == 200  # an identical retry
    msg = detail(client.post(f"/api/v1/recordings/{rid}/steps", json={"name": "late", "time": S0 + 400}), 409)
    assert "was stopped at" in msg and "start a new recording" in msg


def test_bad_environments_and_bodies_are_422(client):
    body = {"scenario": "bench", "start": S0}
    msg = detail(client.post("/api/v1/recordings", json={**body, "environment": {"probes": ["lyon.rampp"]}}),
                 422)
    assert "no probe named 'lyon.rampp'" in msg and "did you mean 'lyon.ramp'" in msg
    switch = client.post("/api/v1/recordings", json={**body, "environment": {"probes": ["lyon.sw1"]}})
    assert "probe 'lyon.sw1' has no power or energy metric" in detail(switch, 422)
    assert "no node named 'rack-9'" in detail(
        client.post("/api/v1/recordings", json={**body, "environment": {"nodes": ["rack-9"]}}), 422)
    job = client.post("/api/v1/recordings", json={**body, "environment": {"job": "77"}})
    assert "no job '77'" in detail(job, 422)
    vm = client.post("/api/v1/recordings", json={**body, "environment": {"vm": "x"}})
    assert "give one of" in detail(vm, 422)
    assert "scenario" in detail(client.post("/api/v1/recordings", json={"start": S0}), 422)
    assert "colour" in detail(client.post("/api/v1/recordings", json={**body, "colour": "red"}), 422)
    huge = {**body, "metadata": {"log": "x" * 70_000}}
    assert "keep metadata small" in detail(client.post("/api/v1/recordings", json=huge), 422)


# -- persistence and threads -------------------------------------------------------------------


def test_recordings_survive_a_restart_of_the_app(store, tmp_path):
    db = tmp_path / "recordings.sqlite"
    first = make_client(store, db)
    rid = start(first)["id"]
    step(first, rid, "a", S0 + 100)
    first.app.state.ctx.recorder.db.close()
    second = make_client(store, db)  # a new app on the same file: a restarted API
    step(second, rid, "b", S0 + 700)
    second.post(f"/api/v1/recordings/{rid}/stop", json={"time": S0 + 1300})
    report = second.get(f"/api/v1/recordings/{rid}/report").json()
    assert [s["name"] for s in report["steps"]] == ["a", "b"]
    assert report["steps"][0]["energy"]["joules"] == pytest.approx(ramp_joules(S0 + 100, S0 + 700))
    with sqlite3.connect(db) as conn:  # write-ahead logging: readers never wait for a writer
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_steps_posted_from_many_threads_are_all_kept(client):
    rid = start(client)["id"]
    codes: list[int] = []

    def post(i: int) -> None:
        r = client.post(f"/api/v1/recordings/{rid}/steps", json={"name": f"s{i}", "time": S0 + 200})
        codes.append(r.status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] * 16
    steps = client.get(f"/api/v1/recordings/{rid}").json()["steps"]
    assert sorted(s["name"] for s in steps) == sorted(f"s{i}" for i in range(16))
    assert sum(s["open"] for s in steps) == 1  # each new step closed the one before
    report = client.get(f"/api/v1/recordings/{rid}/report").json()
    closed = [s for s in report["steps"] if not s["open"]]
    assert len(closed) == 15 and all(s["duration_s"] == 0 and s["energy"]["joules"] == 0 for s in closed)


def test_without_a_recorder_the_routes_say_so(store):
    from test_api_helpers import client_for

    r = client_for(store).get("/api/v1/recordings")
    assert "without the recorder" in detail(r, 503)


def test_times_may_be_iso_or_left_out(store, tmp_path):
    clock = Clock(int((S0 + 1200) * 1000))
    c = make_client(store, tmp_path / "r.sqlite", clock=clock)
    rid = c.post("/api/v1/recordings", json={"scenario": "iso", "environment": RAMP,
                                             "start": "2023-11-14T22:15:00Z"}).json()["id"]  # S0 + 100
    assert c.get(f"/api/v1/recordings/{rid}").json()["start"] == S0 + 100
    assert step(c, rid, "now", None)["step"]["start"] == S0 + 1200  # no time: the server's now
    clock.ms += 60_000
    stopped = c.post(f"/api/v1/recordings/{rid}/stop")  # no body at all
    assert stopped.status_code == 200 and stopped.json()["end"] == S0 + 1260
    assert stopped.json()["steps"][0]["end"] == S0 + 1260


def test_list_limit(client):
    for i in range(3):
        start(client, S0 + i)
    got = client.get("/api/v1/recordings", params={"limit": 2}).json()
    assert got["count"] == 2 and [r["start"] for r in got["recordings"]] == [S0 + 2, S0 + 1]
    assert "limit" in detail(client.get("/api/v1/recordings", params={"limit": 0}), 422)
