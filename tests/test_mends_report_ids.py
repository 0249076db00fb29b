"""``wattsight report`` with ids that a URL path cannot hold as they are, against a real HTTP server.

uvicorn serves the real app (recordings database, store of one known hour) in a thread of this
process; ``report`` talks to it through the SDK's urllib client, as the verb does.  Each odd id
has a decoy whose id is the part before the odd character (``a`` for ``a?b``): an id sent
unescaped would fetch the decoy, or make an invalid URL, instead of the job asked for.
"""

from __future__ import annotations

import argparse
import json

import pytest
from test_api_helpers import CONFIG, T_END, open_store, served_app, topology
from test_recordings_helpers import S0, Clock, ramp_joules

from wattsight.config.models import RecorderConfig
from wattsight.consumers.api import ApiContext, create_app
from wattsight.recorder import report
from wattsight.recorder.api import ApiRefused, Client
from wattsight.recordings.db import RecordingsDB
from wattsight.recordings.service import Recorder

#: Job ids with a character a URL path cannot hold as it is, and their decoys (None: no shorter id).
ODD = {"a?b": "a", "a#b": "a", "a b": "a", "50%": "50", "%41": "A", "jöb-é": "j", "4242_7+0 x": "4242_7+0"}
JOB = {"nodes": ["node-1"], "start": S0 + 300, "end": S0 + 2100}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The SDK's client of a real server: uvicorn over the app, its store and recordings database."""
    tmp = tmp_path_factory.mktemp("report-ids")
    store = open_store(tmp / "store")
    cfg = RecorderConfig.model_validate({})
    rec = Recorder(RecordingsDB(tmp / "recordings.sqlite"), cfg, cfg.read_token())
    ctx = ApiContext(store=store, topology=topology(), config=CONFIG, clock=Clock(T_END), recorder=rec)
    with served_app(create_app(ctx)) as url:
        c = Client(url, timeout=30)
        for jid, decoy in ODD.items():
            c.call("POST", "/api/v1/jobs", {**JOB, "id": jid, "name": f"the job {jid}"})
            c.call("POST", "/api/v1/jobs", {**JOB, "id": decoy, "name": "a decoy", "start": S0 + 60})
        yield c
    store.close()


@pytest.mark.parametrize("jid", list(ODD))
def test_report_of_a_job_whose_id_needs_escaping(client, jid):
    data = report.fetch(client, None, jid)
    assert data["raw"]["job"]["id"] == jid and data["title"] == f"job {jid} (the job {jid})"
    assert data["start"] == S0 + 300  # not the decoy's
    # node-1's probe is the known ramp: its energy over the job's span, to float rounding
    assert data["total"]["probes"]["lyon.ramp"]["joules"] == pytest.approx(ramp_joules(S0 + 300, S0 + 2100))


def test_the_report_verb_prints_the_json_of_the_job_asked_for(client, capsys):
    args = argparse.Namespace(api=client.url, token=None, recording=None, job="a?b", json=True, png=None)
    assert report.main(args) == 0
    assert json.loads(capsys.readouterr().out)["job"]["id"] == "a?b"


def test_a_recording_id_with_a_query_character_is_not_cut_short(client):
    rid = client.call("POST", "/api/v1/recordings", {"scenario": "ids", "start": S0 + 300})["id"]
    client.call("POST", f"/api/v1/recordings/{rid}/stop", {"time": S0 + 900})
    data = report.fetch(client, rid, None)
    assert data["raw"]["recording"]["id"] == rid and data["title"] == f"recording {rid} (ids)"
    for wrong in (f"{rid}?x", f"{rid}#x", f"{rid} x"):  # unescaped, each would name ``rid`` (or no URL)
        with pytest.raises(ApiRefused) as caught:
            report.fetch(client, wrong, None)
        assert caught.value.status == 404 and repr(wrong) in caught.value.detail


def test_a_job_id_with_a_slash_is_refused_at_registration(client):
    """A '/' cannot be told from the path's own (proxies and the server decode %2F): refused, saying so."""
    with pytest.raises(ApiRefused) as caught:
        client.call("POST", "/api/v1/jobs", {**JOB, "id": "team/4242"})
    assert caught.value.status == 422, caught.value
    assert "cannot hold '/'" in caught.value.detail and "team/4242" in caught.value.detail, caught.value.detail
