"""The examples of docs/recorder.md run as written (the server ones against a real `wattsight run --demo`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "recorder.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
LOCAL = [b for b in BLOCKS if "http://" not in b]
SERVER = [b for b in BLOCKS if "http://" in b]


def run(code: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=tmp_path, env=env, timeout=120)


def test_the_page_has_local_and_server_examples():
    assert len(LOCAL) >= 3 and len(SERVER) >= 1


@pytest.mark.parametrize("code", LOCAL, ids=[f"block{i}" for i in range(len(LOCAL))])
def test_a_local_example_runs(code, tmp_path):
    r = run(code, tmp_path, {"WATTSIGHT_URL": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
