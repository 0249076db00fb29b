"""The [recorder] section: defaults, paths from the config's folder, token rules and secrecy."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from wattsight.config import StoreConfig, default
from wattsight.config.models import RecorderConfig
from wattsight.errors import ConfigError
from wattsight.recordings.service import open_recorder


def test_defaults():
    rc = RecorderConfig()
    assert rc.token is None and rc.token_file is None and rc.read_token() is None
    assert rc.read_token_required is False and rc.max_clock_skew == 2.0
    store = StoreConfig(path="/var/lib/wattsight/store")
    assert str(rc.database_path(store)) == "/var/lib/wattsight/recordings.sqlite"


def test_paths_are_taken_from_the_config_folder(tmp_path):
    (tmp_path / "rec.token").write_text("  abc123 \n")
    rc = RecorderConfig.model_validate({"token_file": "rec.token", "database": "db/rec.sqlite"},
                                       context={"base": tmp_path})
    assert rc.token_file == tmp_path / "rec.token" and rc.database == tmp_path / "db/rec.sqlite"
    assert rc.read_token().get_secret_value() == "abc123"


def test_a_world_readable_token_file_is_warned_about(tmp_path, caplog):
    path = tmp_path / "rec.token"
    path.write_text("abc123")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        RecorderConfig(token_file=path).read_token()
    assert "chmod 600" in caplog.text and "abc123" not in caplog.text


@pytest.mark.parametrize("section, message", [
    ({"token": "a", "token_file": "x"}, "token file"),  # x does not exist
    ({"read_token_required": True}, "needs a token"),
    ({"token": " "}, "token is empty"),
    ({"max_clock_skew": -1.0}, "greater than or equal to 0"),
    ({"max_clock_skew": "2"}, "valid number"),
    ({"tokn": "a"}, "Extra inputs"),
])
def test_bad_sections_are_refused(section, message):
    with pytest.raises(ValidationError) as info:
        RecorderConfig.model_validate(section)
    assert message in str(info.value)


def test_both_token_and_token_file_are_refused(tmp_path):
    (tmp_path / "t").write_text("x")
    with pytest.raises(ValidationError, match="either token or token_file"):
        RecorderConfig.model_validate({"token": "a", "token_file": str(tmp_path / "t")})


def test_the_token_never_shows(tmp_path):
    rc = RecorderConfig(token="hunter2-secret")
    assert "hunter2" not in repr(rc) and "hunter2" not in str(rc.model_dump())
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        RecorderConfig(token_file=empty).read_token()


def test_the_embedded_default_keeps_recordings_beside_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    cfg = default(data_dir=tmp_path / "data")
    rec = open_recorder(cfg)
    try:
        assert rec.db.path == tmp_path / "data" / "recordings.sqlite" and rec.db.path.exists()
        assert rec.token is None
    finally:
        rec.db.close()


SITE = """\
site = "lab"
[bus]
endpoint = "ipc://{run}/bus"
secret = "a-bus-key-for-the-test"
[store]
path = "data/store"
[api]
listen = "{listen}"
[recorder]
token_file = "recorder.token"
read_token_required = true
max_clock_skew = 0.5
[drivers.rack]
type = "dummy"
probes = ["node-1"]
"""


def test_a_config_file_holds_the_recorder_section(tmp_path):
    from wattsight.config import load

    (tmp_path / "recorder.token").write_text("from-a-file\n")
    (tmp_path / "site.toml").write_text(SITE.format(run=tmp_path, listen="127.0.0.1:8080"))
    cfg = load(tmp_path / "site.toml")
    assert cfg.recorder.token_file == tmp_path / "recorder.token" and cfg.recorder.max_clock_skew == 0.5
    assert cfg.recorder.database_path(cfg.store) == tmp_path / "data" / "recordings.sqlite"
    (tmp_path / "bad.toml").write_text(SITE.format(run=tmp_path, listen="127.0.0.1:8080")
                                       .replace('token_file = "recorder.token"', 'token = "leaky-secret-1"\n'
                                                'token_file = "recorder.token"'))
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "bad.toml")
    assert "either token or token_file" in str(info.value) and "leaky-secret-1" not in str(info.value)


@pytest.mark.slow
def test_a_real_process_asks_for_the_configured_token(tmp_path, caplog):
    """A real `wattsight run -c` whose [recorder] token_file holds the token: raw HTTP, the SDK and the
    `record` / `report` verbs are refused (401) without it and accepted with it."""
    import httpx
    from procs import Wattsight, free_port

    from wattsight.recorder import Recorder

    listen = f"127.0.0.1:{free_port()}"
    (tmp_path / "recorder.token").write_text("from-a-file\n")
    (tmp_path / "recorder.token").chmod(0o600)
    (tmp_path / "site.toml").write_text(SITE.format(run=tmp_path, listen=listen))
    ws = Wattsight(["-c", str(tmp_path / "site.toml")], tmp_path, listen=listen)
    caplog.set_level(logging.WARNING, logger="wattsight.recorder")
    try:
        ws.wait_ready()
        url = f"http://{listen}/api/v1/recordings"
        assert httpx.get(url).status_code == 401  # read_token_required
        refused = httpx.post(url, json={"scenario": "s"})
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["detail"]
        good = {"Authorization": "Bearer from-a-file"}
        assert httpx.post(url, json={"scenario": "s"}, headers=good).status_code == 201
        assert httpx.get(url, headers=good).json()["count"] == 1

        without = Recorder(ws.url, token="", environment={"probes": ["lab.node-1"]})
        without.start("sdk-no-token")
        without.set_step("a")
        m = without.stop()
        assert m.recording is None and m.provenance == "unavailable" and "Bearer" in m.not_available[0][1]
        assert [r for r in caplog.records if "refused" in r.getMessage() and "401" in r.getMessage()]
        with_token = Recorder(ws.url, token="from-a-file", environment={"probes": ["lab.node-1"]})
        with_token.start("sdk-token")
        with_token.set_step("a")
        m = with_token.stop()
        stored = httpx.get(f"{url}/{m.recording}", headers=good).json()
        assert stored["scenario"] == "sdk-token" and [s["name"] for s in stored["steps"]] == ["a"]

        ws_cli = [sys.executable, "-m", "wattsight"]
        env = {k: v for k, v in os.environ.items() if k != "WATTSIGHT_TOKEN"}
        no = subprocess.run([*ws_cli, "report", m.recording, "--api", ws.url, "--json"], capture_output=True,
                            text=True, check=False, timeout=120, env=env)
        assert no.returncode != 0 and "401" in no.stderr and "from-a-file" not in no.stderr
        yes = subprocess.run([*ws_cli, "report", m.recording, "--api", ws.url, "--json"], capture_output=True,
                             text=True, check=False, timeout=120, env={**env, "WATTSIGHT_TOKEN": "from-a-file"})
        assert yes.returncode == 0, yes.stderr
        assert [s["name"] for s in json.loads(yes.stdout)["steps"]] == ["a"]
    finally:
        ws.stop()
    assert "from-a-file" not in ws.output()
    assert (tmp_path / "data" / "recordings.sqlite").exists()


def test_every_recorder_setting_is_in_the_sample_and_the_docs():
    import re
    from pathlib import Path

    from wattsight import config

    doc = (Path(__file__).parents[1] / "docs" / "recordings.md").read_text()
    for name in RecorderConfig.model_fields:
        line = re.compile(rf"^#? *{name} = ", re.MULTILINE)
        assert line.search(config.SAMPLE), f"[recorder] {name}: not in the sample"
        assert line.search(doc), f"[recorder] {name}: not in docs/recordings.md"
