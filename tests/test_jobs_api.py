"""/api/v1/jobs on the real app and store: registration, updates, and energy per node and probe."""

from __future__ import annotations

import pytest
from test_recordings_helpers import S0, Clock, bearer, detail, make_client, ramp_joules

pytest_plugins = ("test_recordings_helpers",)  # its fixtures: store, client, auth_client

JOB = {"id": "4242", "nodes": ["node-1", "lyon.node-2"], "start": S0 + 300, "end": S0 + 2100,
       "user": "alice", "name": "train"}


def test_a_job_is_registered_then_updated(client):
    r = client.post("/api/v1/jobs", json={**JOB, "end": None, "state": "RUNNING"})
    assert r.status_code == 201
    job = r.json()
    assert (job["id"], job["nodes"], job["start"], job["end"], job["running"]) == (
        "4242", ["node-1", "lyon.node-2"], S0 + 300, None, True)
    assert job["source"] == "rest" and job["user"] == "alice"
    r = client.post("/api/v1/jobs", json={**JOB, "state": "COMPLETED"})  # the same id: an update
    assert r.status_code == 200 and r.json()["end"] == S0 + 2100 and r.json()["state"] == "COMPLETED"
    listed = client.get("/api/v1/jobs").json()
    assert listed["count"] == 1 and listed["jobs"][0]["state"] == "COMPLETED"
    assert client.get("/api/v1/jobs/4242").json()["name"] == "train"


def test_job_energy_per_node_equals_the_energy_api_over_the_job_window(client):
    client.post("/api/v1/jobs", json=JOB)
    got = client.get("/api/v1/jobs/4242/energy").json()
    want = client.get("/api/v1/energy", params={"nodes": "lyon.node-1,lyon.node-2",
                                                 "from": S0 + 300, "to": S0 + 2100}).json()
    assert (got["from"], got["to"], got["duration_s"]) == (S0 + 300, S0 + 2100, 1800)
    assert set(got["nodes"]) == {"lyon.node-1", "lyon.node-2"}  # "node-1" matched without its site
    for node, e in want["nodes"].items():
        assert got["nodes"][node]["joules"] == pytest.approx(e["joules"], rel=1e-12)
        assert got["nodes"][node]["coverage"] == pytest.approx(e["coverage"])
        assert got["nodes"][node]["shared_probes"] == e["shared_probes"]
    for probe, e in want["probes"].items():
        assert got["probes"][probe]["joules"] == pytest.approx(e["joules"], rel=1e-12)
    assert got["probes"]["lyon.ramp"]["joules"] == pytest.approx(ramp_joules(S0 + 300, S0 + 2100))
    # the shared probe lyon.const is counted once in the total, not once per node
    assert got["energy"]["joules"] == pytest.approx(sum(p["joules"] for p in want["probes"].values()))
    assert got["energy"]["coverage"] < 1  # lyon.gappy (node-2) has no sample in the middle half hour
    assert got["job"]["id"] == "4242" and not got["running"] and got["unmatched_nodes"] == []


def test_unmatched_job_nodes_are_reported_not_failed(client):
    client.post("/api/v1/jobs", json={**JOB, "nodes": ["node-1", "gpu-9"]})
    got = client.get("/api/v1/jobs/4242/energy").json()
    assert got["unmatched_nodes"] == ["gpu-9"] and "gpu-9" in got["warnings"][0]
    assert set(got["nodes"]) == {"lyon.node-1"}
    client.post("/api/v1/jobs", json={**JOB, "id": "ghost", "nodes": ["gpu-9"]})
    ghost = client.get("/api/v1/jobs/ghost/energy").json()
    assert ghost["probes"] == {} and ghost["energy"]["joules"] == 0 and ghost["energy"]["coverage"] == 0


def test_a_running_job_is_reported_up_to_now(store, tmp_path):
    c = make_client(store, tmp_path / "r.sqlite", clock=Clock(int((S0 + 1000) * 1000)))
    c.post("/api/v1/jobs", json={**JOB, "nodes": ["node-1"], "end": None})
    got = c.get("/api/v1/jobs/4242/energy").json()
    assert got["running"] and got["to"] == S0 + 1000 and "no end yet" in got["warnings"][0]


def test_a_job_is_an_environment_for_recordings(client):
    client.post("/api/v1/jobs", json={**JOB, "nodes": ["node-1"]})
    rec = client.post("/api/v1/recordings", json={"scenario": "in-job", "environment": {"job": "4242"},
                                                  "start": S0 + 400}).json()
    client.post(f"/api/v1/recordings/{rec['id']}/stop", json={"time": S0 + 800})
    report = client.get(f"/api/v1/recordings/{rec['id']}/report").json()
    assert set(report["total"]["nodes"]) == {"lyon.node-1"}


def test_job_errors(client, auth_client):
    assert "no job 'nope'" in detail(client.get("/api/v1/jobs/nope"), 404)
    detail(client.get("/api/v1/jobs/nope/energy"), 404)
    assert "ends" in detail(client.post("/api/v1/jobs", json={**JOB, "end": S0}), 422)
    assert "nodes" in detail(client.post("/api/v1/jobs", json={**JOB, "nodes": []}), 422)
    assert "nodes is empty" in detail(client.post("/api/v1/jobs", json={**JOB, "nodes": [" "]}), 422)
    assert "start" in detail(client.post("/api/v1/jobs", json={"id": "1", "nodes": ["n"]}), 422)
    detail(auth_client.post("/api/v1/jobs", json=JOB), 401)
    assert auth_client.post("/api/v1/jobs", json=JOB, headers=bearer()).status_code == 201


def test_jobs_list_by_user(client):
    client.post("/api/v1/jobs", json=JOB)
    client.post("/api/v1/jobs", json={**JOB, "id": "4243", "user": "bob", "start": S0 + 400})
    assert [j["id"] for j in client.get("/api/v1/jobs").json()["jobs"]] == ["4243", "4242"]
    assert [j["id"] for j in client.get("/api/v1/jobs", params={"user": "alice"}).json()["jobs"]] == ["4242"]


def test_nodes_of_a_job_for_the_web_selection(client):
    from wattsight.consumers.api.catalog import Catalog, UnknownName
    from wattsight.recordings import jobs

    client.post("/api/v1/jobs", json={**JOB, "nodes": ["node-1", "lyon.node-2", "gpu-9"]})
    ctx = client.app.state.ctx
    catalog = Catalog(ctx.store, ctx.topology)
    assert jobs.nodes_of("4242", ctx.recorder, catalog) == ["lyon.node-1", "lyon.node-2"]
    assert jobs.nodes_of("4242") == ["node-1", "lyon.node-2", "gpu-9"]  # the latest recorder, names as sent
    client.post("/api/v1/jobs", json={**JOB, "id": "ghost", "nodes": ["gpu-9"]})
    with pytest.raises(UnknownName, match="no probe feeds the nodes of job 'ghost'"):
        jobs.nodes_of("ghost", ctx.recorder, catalog)
    with pytest.raises(UnknownName, match="no job 'nope'"):
        jobs.nodes_of("nope", ctx.recorder, catalog)
