"""A real InfluxDB 1.x on 127.0.0.1 (Debian package ``influxdb``, binary ``influxd``), and a capture server.

Usable from pytest fixtures and from bench scripts::

    with InfluxDB(tmp_path, users={"admin": "pw"}) as influx:   # users: auth enabled, the first is admin
        influx.create_database("wattsight")
        influx.url                            # http://127.0.0.1:<port>
        influx.select('SELECT * FROM "power"', db="wattsight")  # [{"time": ms, "probe": ..., "value": ...}]
        influx.stop(); influx.start()         # down, then up again on the SAME ports and data

Every folder (meta, data, wal) is under ``folder``; HTTP and the RPC port bind 127.0.0.1 on free
ports; reporting, the internal monitor store and continuous queries are off.

:class:`Capture` is a small HTTP server that records every request and answers what the test
says: the stand-in for InfluxDB 2.x (which does not run here) and for receivers with auth,
to check the shape of what a consumer sends.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

import httpx

from ._common import (
    PeerMissing,
    QuickHandler,
    QuickHTTPServer,
    free_port,
    http_answers,
    stop_process,
    wait_until,
)


class InfluxDB:
    """An InfluxDB 1.x of our own; with ``users``, auth is on and the first user is the admin."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None) -> None:
        self.folder = Path(folder)
        self.users = dict(users or {})
        self.port, self.rpc_port = free_port(), free_port()
        self.log = self.folder / "influxd.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items()), None)

    def _configure(self) -> Path:
        d = self.folder
        conf = d / "influxdb.conf"
        conf.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d / "meta"}"\n'
            f'[data]\n  dir = "{d / "data"}"\n  wal-dir = "{d / "wal"}"\n  query-log-enabled = false\n'
            '  trace-logging-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  auth-enabled = {str(bool(self.users)).lower()}\n'
            '  log-enabled = false\n'
            '[monitor]\n  store-enabled = false\n'
            '[continuous_queries]\n  enabled = false\n'
            '[logging]\n  level = "warn"\n')
        return conf

    def start(self, timeout: float = 60.0) -> InfluxDB:
        exe = shutil.which("influxd", path="/usr/bin:/usr/sbin:/usr/local/bin")
        if exe is None:
            raise PeerMissing("influxd is not installed (Debian package influxdb)")
        self.folder.mkdir(parents=True, exist_ok=True)
        fresh = not (self.folder / "meta").exists()
        self._proc = subprocess.Popen([exe, "-config", str(self._configure())], stdin=subprocess.DEVNULL,
                                      stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_until(http_answers(f"{self.url}/ping", 204), timeout, f"influxd on {self.port}", self._proc,
                   output=self.output, cleanup=self.stop)
        if fresh and self.users:  # with auth on and no user yet, InfluxDB lets anyone create the admin
            admin, *others = self.users.items()
            self.query(f"CREATE USER \"{admin[0]}\" WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES", auth=False)
            for user, password in others:
                self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}'")
        return self

    def stop(self) -> None:
        stop_process(self._proc, 30)
        self._proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    # -- queries -------------------------------------------------------------------------
    def query(self, q: str, db: str | None = None, *, auth: bool = True) -> list:
        """POST ``/query`` (InfluxQL); the ``results`` list; times in ms."""
        params = {"q": q, "epoch": "ms", **({"db": db} if db else {})}
        r = httpx.post(f"{self.url}/query", params=params, auth=self.auth if auth else None, timeout=30)
        body = r.json()
        if r.status_code != 200 or any("error" in x for x in body.get("results", [])) or "error" in body:
            raise AssertionError(f"{q!r}: HTTP {r.status_code} {body}")
        return body["results"]

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def select(self, q: str, db: str) -> list[dict]:
        """Rows of a SELECT as dicts (column -> value), every series of the result in turn."""
        out = []
        for result in self.query(q, db):
            for s in result.get("series", []):
                out += [dict(zip(s["columns"], row), **s.get("tags", {})) for row in s["values"]]
        return out

    def wait_rows(self, q: str, db: str, count: int, timeout: float = 30.0) -> list[dict]:
        """:meth:`select` once it gives at least ``count`` rows (polled)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.select(q, db)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    def write(self, text: str, db: str) -> httpx.Response:
        """Write line protocol as a plain client would (``precision=ms``)."""
        return httpx.post(f"{self.url}/write", params={"db": db, "precision": "ms"}, content=text.encode(),
                          auth=self.auth, timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes


class Capture:
    """An HTTP server that records requests and answers ``status`` with ``reply`` (set by the test)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.status, self.reply, self.reply_headers = 204, b"", {}
        capture = self

        class Handler(QuickHandler):
            protocol_version = "HTTP/1.0"  # one request per connection

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                parts = urlsplit(self.path)
                capture.requests.append(Request("POST", parts.path, parse_qs(parts.query),
                                                {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_whole(capture.status, list(capture.reply_headers.items()), capture.reply)

        self.server = QuickHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.port
        self.thread = self.server.serve_in_thread(f"capture-{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, count: int = 1, timeout: float = 15.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
