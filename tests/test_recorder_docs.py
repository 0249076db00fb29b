"""The examples of docs/recorder.md run as written (the server ones against a real `wattsight run --demo`),
and every runnable block of the recorder's pages (recorder.md, record.md, recordings.md) is run by a test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from recorder_helpers import demo_server

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "recorder.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
LOCAL = [b for b in BLOCKS if "http://" not in b]
SERVER = [b for b in BLOCKS if "http://" in b]
DOC_URL = "http://127.0.0.1:8080"

#: Per page and language, how many runnable blocks the page holds and the test that runs them (None: shown,
#: not run).  A block added to these pages fails the inventory below until a test runs it.
RUN_BY = {
    ("recorder.md", "python"): (len(BLOCKS), "tests/test_recorder_docs.py"),  # LOCAL and SERVER, above
    ("record.md", "bash"): (1, "tests/test_cli_record_api.py"),  # the curl recipe
    ("recordings.md", "sh"): (1, "tests/test_recordings_docs.py"),  # the <!-- tested --> curl example
    ("record.md", "sh"): (1, None),  # `wattsight record --steps` around a project's `make` targets
}
RUNNABLE = ("python", "bash", "sh")


def run(code: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=tmp_path, env=env, timeout=120)


def test_the_page_has_local_and_server_examples():
    assert len(LOCAL) >= 3 and len(SERVER) >= 1
    assert all(DOC_URL in b for b in SERVER)  # the address the server tests put theirs in place of


@pytest.mark.parametrize("code", LOCAL, ids=[f"block{i}" for i in range(len(LOCAL))])
def test_a_local_example_runs(code, tmp_path):
    r = run(code, tmp_path, {"WATTSIGHT_URL": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from demo_server(tmp_path_factory, "recorder-docs")


@pytest.mark.slow
@pytest.mark.parametrize("code", SERVER, ids=[f"server{i}" for i in range(len(SERVER))])
def test_a_server_example_records_its_scenario_and_steps_on_the_server(code, server, tmp_path):
    """What the block starts and the steps it sets, as the block itself names them, are on the server
    and in its output, in order."""
    scenario = re.search(r'\.start\("([^"]+)"\)', code)[1]
    steps = re.findall(r'set_step\("([^"]+)"\)', code)
    assert steps, "a server example without steps checks nothing of them"
    r = run(code.replace(DOC_URL, server.url), tmp_path, {"WATTSIGHT_URL": None, "WATTSIGHT_TOKEN": None})
    assert r.returncode == 0, r.stderr
    first, *rest = r.stdout.splitlines()
    rid = first.split()[0]
    stored = server.get(f"/api/v1/recordings/{rid}")
    assert stored["scenario"] == scenario and not stored["running"]
    assert [s["name"] for s in stored["steps"]] == steps
    assert [line.split()[0] for line in rest] == steps  # one printed line per step, as the loop says


def fenced(page: str) -> list[str]:
    """The language of each fenced block of a docs page written in a runnable one."""
    found = re.findall(r"^```(\w+)\n", (DOCS / page).read_text(), re.MULTILINE)
    return [lang for lang in found if lang in RUNNABLE]


def test_every_runnable_block_of_the_recorder_pages_is_run_by_a_test():
    from collections import Counter

    counts = Counter((page, lang) for page in ("recorder.md", "record.md", "recordings.md") for lang in fenced(page))
    assert counts == {k: n for k, (n, _) in RUN_BY.items()}, "run the new block in a test and count it in RUN_BY"
    for (page, _), (_, test) in RUN_BY.items():
        assert test is None or page in (DOCS.parent / test).read_text(), f"{test} does not read docs/{page}"
