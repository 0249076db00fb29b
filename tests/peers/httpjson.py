"""A small real HTTP server answering a JSON document that the test sets at run time.

Usable from pytest fixtures and from bench scripts::

    with JsonServer({"outlets": [{"watts": 112.5}]}, path="/api/outlets", auth=("monitor", "pw")) as srv:
        srv.url                      # http://127.0.0.1:<port>/api/outlets
        srv.document = {...}         # what the next GET answers
        srv.stop(); srv.start()      # down, then up again on the same port

HTTP/1.1 with keep-alive, TCP_NODELAY, each response written in one piece (no 40 ms Nagle wait).
``stop()`` also closes the connections kept alive, so a stopped server is really unreachable.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from typing import Any, Self

from ._common import QuickHandler, QuickHTTPServer


class _Handler(QuickHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.peer.opened(self.connection)

    def do_GET(self) -> None:
        peer = self.server.peer
        peer.requests += 1
        peer.last_headers = dict(self.headers)
        if peer.delay:
            time.sleep(peer.delay)
        if self.path.split("?", 1)[0] != peer.path:
            return self._send(404, b'{"error": "not found"}')
        if peer.auth is not None:
            expected = "Basic " + base64.b64encode(f"{peer.auth[0]}:{peer.auth[1]}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._send(401, b'{"error": "unauthorized"}', [("WWW-Authenticate", 'Basic realm="meter"')])
        if peer.status != 200:
            return self._send(peer.status, b'{"error": "set by the test"}')
        return self._send(200, peer.body())

    def _send(self, status: int, body: bytes, extra: list[tuple[str, str]] = ()) -> None:
        self.send_whole(status, [("Content-Type", self.server.peer.content_type), *extra], body)


class _Server(QuickHTTPServer):
    def __init__(self, address, peer: JsonServer) -> None:
        self.peer = peer
        super().__init__(address, _Handler)


class JsonServer:
    """A JSON document served over HTTP on 127.0.0.1; ``document`` may be changed at any time."""

    def __init__(self, document: Any = None, *, path: str = "/", auth: tuple[str, str] | None = None,
                 port: int = 0, content_type: str = "application/json") -> None:
        self.document = document if document is not None else {}
        self.path, self.auth, self.port, self.content_type = path, auth, port, content_type
        #: Answer this status instead of the document (e.g. 500), or this raw body (not JSON).
        self.status: int = 200
        self.raw: bytes | None = None
        #: Seconds to wait before answering (a slow or hung meter).
        self.delay: float = 0.0
        self.requests = 0
        #: TCP connections accepted so far (keep-alive: one per client, not one per request).
        self.connections = 0
        self.last_headers: dict[str, str] = {}
        self._server: _Server | None = None
        self._lock = threading.Lock()

    # -- state seen by the handler --------------------------------------------------------------
    def body(self) -> bytes:
        return self.raw if self.raw is not None else json.dumps(self.document).encode()

    def opened(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1

    # -- life cycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is None:
            self._server = _Server(("127.0.0.1", self.port), self)
            self.port = self._server.port
            self._server.serve_in_thread(f"jsonserver-{self.port}")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # with the kept-alive connections, which would otherwise go on answering

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
