"""The curl examples of docs/web-graphs.md run as written against a real ``wattsight run --demo``."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from procs import Wattsight, free_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "web-graphs.md"


def doc_commands() -> list[str]:
    """The lines of the ```sh block after ``<!-- tested -->``."""
    text = DOC.read_text()
    block = re.search(r"<!-- tested -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert block, "docs/web-graphs.md has no tested sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_doc_names_every_route():
    text = DOC.read_text()
    for route in ("/graph/<period>/", "/graph/<period>/<probe>/", "/api/v1/summary", "/api/v1/live",
                  "/api/v1/export.zip"):
        assert f"`GET {route}`" in text, route
    assert all(cmd.startswith("curl ") for cmd in doc_commands())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples_run_against_the_demo(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    ws = Wattsight(["--demo", "--data-dir", str(tmp_path / "data")], tmp_path, listen=listen)
    try:
        ws.wait_ready()
        def all_probes() -> bool:
            return sum("network_in" in p["metrics"] for p in ws.get("/api/v1/probes")["probes"]) == 8

        ws.wait_for(all_probes, 30, "the demo's 8 probes")
        for cmd in doc_commands():
            args = shlex.split(cmd.replace("127.0.0.1:8080", listen))
            live = "-N" in args
            if live:
                args[1:1] = ["--max-time", "4"]
            done = subprocess.run(args + ["-sS", "--fail"], cwd=tmp_path, capture_output=True, timeout=60,
                                  check=False)
            assert done.returncode == (28 if live else 0), (cmd, done.stderr)  # 28: --max-time reached
            if live:
                lines = done.stdout.decode().splitlines()
                events = [json.loads(x[6:]) for x in lines if x.startswith("data: ")]
                assert events and set(events[-1]["probes"]) == {"demo.node-1", "demo.node-2"}
                continue
            check(tmp_path / args[args.index("-o") + 1])
    finally:
        ws.stop()


def check(path: Path) -> None:
    """The file a curl example wrote is what its name says, and not empty of data."""
    data = path.read_bytes()
    if path.suffix == ".png":
        assert Image.open(io.BytesIO(data)).format == "PNG"
    elif path.suffix == ".json":
        body = json.loads(data)
        assert body["probes"] and all(p.startswith("demo.") for p in body["probes"])
    else:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        want = {"data.csv", "data.parquet", "summary.png", "README.txt", "probe-demo.node-1.png"}
        assert want <= set(names)
