"""Scheduler adapters on recorded replies: Slurm hostlists, sacct, OAR's REST API and oarstat -J."""

from __future__ import annotations

import argparse
import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import pytest
from peers._common import QuickHandler, QuickHTTPServer

from wattsight.recordings.schedulers import (
    SchedulerError,
    expand_hostlist,
    oarstat_command,
    parse_oar,
    parse_sacct,
    run_command,
    sacct_command,
)

DATA = Path(__file__).parent / "data" / "jobs"



def epoch(text: str, tz=UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize("text, hosts", [
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("gpu-[1-2],login", ["gpu-1", "gpu-2", "login"]),
    ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("node05", ["node05"]),
    ("a[1-2].lyon,a2.lyon", ["a1.lyon", "a2.lyon"]),
    ("None assigned", []),
    ("", []),
])
def test_hostlists_expand(text, hosts):
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("text, message", [
    ("node[1-3", "not closed"),
    ("node[3-1]", "goes down"),
    ("node[a-b]", "not a number"),
    ("node[[1]]", "nested"),
])
def test_bad_hostlists_say_why(text, message):
    with pytest.raises(SchedulerError, match=message):
        expand_hostlist(text)


def test_sacct_output_gives_the_started_jobs():
    jobs = parse_sacct((DATA / "sacct.txt").read_text(), UTC)
    assert [j["id"] for j in jobs] == ["4242", "4243", "4244", "4245", "4246_3"]  # 4247 is pending
    first = jobs[0]
    assert first == {"id": "4242", "name": "train-resnet", "user": "alice",
                     "nodes": ["node01", "node02", "node03", "node07"],
                     "start": epoch("2024-05-01T10:00:00"), "end": epoch("2024-05-01T11:30:12"),
                     "state": "COMPLETED", "source": "slurm"}
    assert jobs[1]["end"] is None and jobs[1]["state"] == "RUNNING"
    assert jobs[3]["state"] == "CANCELLED"
    assert jobs[3]["nodes"] == ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]


def test_sacct_times_are_the_clusters_local_time():
    paris = timezone(timedelta(hours=2))
    jobs = parse_sacct((DATA / "sacct.txt").read_text(), paris)
    assert jobs[0]["start"] == epoch("2024-05-01T08:00:00")


def test_malformed_sacct_lines_name_the_line():
    with pytest.raises(SchedulerError, match="line 2: 3 fields, expected 7"):
        parse_sacct("1|a|b|n1|2024-05-01T10:00:00|Unknown|RUNNING\n2|x|y\n", UTC)
    with pytest.raises(SchedulerError, match="SLURM_TIME_FORMAT"):
        parse_sacct("1|a|b|n1|05/01 10:00|Unknown|RUNNING\n", UTC)


def test_the_sacct_command_asks_for_the_parsed_columns():
    cmd = sacct_command(datetime(2024, 5, 1, 9), datetime(2024, 5, 1, 12), all_users=True)
    assert cmd == ["sacct", "--parsable2", "--noheader", "-X",
                   "--format=JobID,JobName,User,NodeList,Start,End,State",
                   "-S", "2024-05-01T09:00:00", "-E", "2024-05-01T12:00:00", "--allusers"]


def test_oar_rest_details():
    jobs = parse_oar(json.loads((DATA / "oar_details.json").read_text()))
    assert [j["id"] for j in jobs] == ["1881573", "1881575"]  # 1881580 waits
    assert jobs[0] == {"id": "1881573", "name": "energy-bench", "user": "alice",
                       "nodes": ["taurus-7.lyon.grid5000.fr", "taurus-8.lyon.grid5000.fr"],
                       "start": 1714554000.0, "end": 1714557000.0, "state": "Terminated", "source": "oar"}
    assert jobs[1]["end"] is None and jobs[1]["name"] is None


def test_oarstat_json():
    jobs = parse_oar(json.loads((DATA / "oarstat.json").read_text()))
    assert {j["id"]: j["nodes"] for j in jobs} == {
        "1881575": ["nova-1.lyon.grid5000.fr"],
        "1881590": ["grisou-3.nancy.grid5000.fr", "grisou-4.nancy.grid5000.fr"]}
    done = next(j for j in jobs if j["id"] == "1881590")
    assert (done["start"], done["end"], done["user"]) == (1714550100.0, 1714553700.0, "alice")


def test_oar_answers_that_are_not_jobs_are_refused():
    with pytest.raises(SchedulerError, match="expected a JSON object or list"):
        parse_oar("Job not found")
    with pytest.raises(SchedulerError, match="not epoch"):
        parse_oar({"items": [{"id": 1, "start_time": "noon", "assigned_network_address": ["n"]}]})


def test_oarstat_command_with_and_without_a_window():
    assert oarstat_command() == ["oarstat", "-J"]
    assert oarstat_command(datetime(2024, 5, 1, 9), datetime(2024, 5, 1, 12)) == [
        "oarstat", "-J", "--gantt", "2024-05-01 09:00:00, 2024-05-01 12:00:00"]


def test_the_real_runner_reports_missing_and_failing_commands(tmp_path):
    with pytest.raises(SchedulerError, match="not installed here.*--input FILE"):
        run_command([str(tmp_path / "sacct")])
    script = tmp_path / "failing"
    script.write_text("#!/bin/sh\necho 'sacct: error: Problem talking to the database' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(SchedulerError, match="exit code 1: sacct: error: Problem talking"):
        run_command([str(script)])
    assert run_command(["echo", "4242|a|b|n1"]) == "4242|a|b|n1\n"


class _OarApi(QuickHandler):
    """OAR's REST API as far as the importer uses it: the recorded details, behind basic auth."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        expected = "Basic " + base64.b64encode(b"alice:pa55").decode()
        if self.headers.get("Authorization") != expected:
            self.send_whole(401, [("WWW-Authenticate", 'Basic realm="oar"')], b"")
        elif self.path.startswith("/oarapi/jobs/details.json?"):
            # pages of two jobs (a server may cap the limit asked): the client must follow offset/total
            query = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&"))
            whole = json.loads((DATA / "oar_details.json").read_text())
            offset = int(query.get("offset", 0))
            page = {**whole, "offset": offset, "items": whole["items"][offset:offset + 2]}
            self.send_whole(200, [("Content-Type", "application/json")], json.dumps(page).encode())
        else:
            self.send_whole(404, [], b"not found")


def test_oar_rest_import_through_a_real_http_server(monkeypatch, capsys):
    from wattsight.recordings import cli

    server = QuickHTTPServer(("127.0.0.1", 0), _OarApi)
    server.serve_in_thread("oar-api")
    try:
        url = f"http://127.0.0.1:{server.port}/oarapi"
        monkeypatch.setenv("OAR_PASSWORD", "pa55")
        args = argparse.Namespace(slurm=False, oar=True, since="1d", until="now", all_users=False, input=None,
                                  oar_url=url, oar_user="alice", tz="UTC", dry_run=True)
        assert cli.import_jobs(args) == 0
        out = capsys.readouterr().out
        assert "1881573" in out and "1881575" in out and "1881580" not in out
        first, second = (dict(q.split("=") for q in p.split("?", 1)[1].split("&")) for p in _OarApi.seen)
        assert abs(int(first["to"]) - int(first["from"]) - 86_400) <= 1  # --since 1d, in whole seconds
        assert (first["offset"], second["offset"]) == ("0", "2")
        monkeypatch.setenv("OAR_PASSWORD", "wrong")
        with pytest.raises(SchedulerError, match="answered 401"):
            cli.import_jobs(args)
    finally:
        server.close()
