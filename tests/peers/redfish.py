"""A Redfish service for tests and benches: a mockup tree served over HTTP(S) on 127.0.0.1.

``RedfishPeer("public-rackmount1")`` serves the DMTF mockup kept in ``redfish_mockups/`` (or any
folder with the mockup layout: the resource at ``/redfish/v1/<path>`` is ``<folder>/<path>/index.json``)
with what a BMC adds to static files:

- authentication: only the service root is open; the rest wants HTTP Basic (unless
  ``basic=False``) or a session token (``POST /redfish/v1/SessionService/Sessions`` answers 201 with
  ``X-Auth-Token`` and ``Location``; ``DELETE`` of that location logs out). :attr:`sessions` counts the
  open sessions, :meth:`expire_sessions` forgets them (as a BMC does after ``SessionTimeout``);
- ``$expand`` of collections (``expand=False`` ignores it, as some BMCs do);
- changes at run time: :meth:`set` a value by JSON pointer, :meth:`delete` a property or a resource,
  :meth:`put` a new resource; a path in :attr:`cut` has its GETs answered by a closed connection;
- :meth:`stop` and :meth:`start` again on the same port (resources and sessions kept, open
  connections cut); several peers run side by side, each on its own port;
- ``slash_redirect=True`` answers 308 to a GET without the trailing slash of a resource whose
  ``@odata.id`` has one, as iLO 4 does; ``chunked=True`` sends chunked replies, as iLO 5 may;
- ``tls=True`` serves HTTPS with a self-signed certificate for 127.0.0.1 (:attr:`ca_file`).

Each response is written in one piece on a TCP_NODELAY socket: otherwise every GET of a
keep-alive client waits for the 40 ms delayed ACK.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import weakref
from collections import Counter
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

from ._common import QuickHandler, QuickHTTPServer

MOCKUPS = Path(__file__).resolve().parent / "redfish_mockups"
SESSIONS = "/redfish/v1/SessionService/Sessions"
OPEN_PATHS = {"/redfish", "/redfish/v1", "/redfish/v1/odata", "/redfish/v1/$metadata"}


def norm(path: str) -> str:
    """A resource path without query, fragment and trailing slash (BMCs differ on slashes)."""
    path = urlsplit(path).path
    return path.rstrip("/") or "/"


def load_tree(root: Path) -> dict[str, dict]:
    """Every ``index.json`` under ``root``, keyed by its resource path."""
    out = {}
    for f in sorted(root.rglob("index.json")):
        rel = f.parent.relative_to(root).as_posix()
        out[norm("/redfish/v1/" + ("" if rel == "." else rel))] = json.loads(f.read_text())
    if "/redfish/v1" not in out:
        raise FileNotFoundError(f"{root} is not a Redfish mockup: no index.json at its top")
    return out


def pointer_parts(pointer: str) -> list[str]:
    """The tokens of an RFC 6901 JSON pointer (``/PowerControl/0/PowerConsumedWatts``)."""
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def _step(node, token: str):
    return node[int(token)] if isinstance(node, list) else node[token]


class _Server(QuickHTTPServer):
    def __init__(self, peer: RedfishPeer, port: int) -> None:
        self.peer = peer
        super().__init__(("127.0.0.1", port), _Handler)

    def wrap(self, sock: socket.socket) -> socket.socket:
        if self.peer._tls is None:
            return sock
        return self.peer._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up, or a TLS handshake refused by the client: not our failure


class _Handler(QuickHandler):
    server: _Server

    # -- answering -----------------------------------------------------------------------------
    def reply(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        """Write status line, headers and body with one ``write`` (see the module docstring)."""
        data = b"" if body is None else json.dumps(body).encode()
        head = [("Content-Type", "application/json; charset=utf-8"), ("OData-Version", "4.0"),
                *(headers or {}).items()]
        if self.server.peer.chunked and data:
            half = len(data) // 2
            data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:half], data[half:])) + b"0\r\n\r\n"
            head.append(("Transfer-Encoding", "chunked"))
        self.send_whole(status, head, data)

    def error(self, status: int, message: str) -> None:
        extra = {"WWW-Authenticate": 'Basic realm="redfish"'} if status == 401 else None
        self.reply(status, {"error": {"code": f"Base.1.8.{self.responses[status][0].replace(' ', '')}",
                                      "message": message}}, extra)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # -- verbs ---------------------------------------------------------------------------------
    def do_GET(self) -> None:
        peer, path = self.server.peer, norm(self.path)
        peer._count("GET", path)
        if path in peer.cut:
            self.close_connection = True      # hang up without a word, as a BMC that resets
            return
        if path not in OPEN_PATHS and not peer._authorized(self.headers):
            return self.error(401, "authentication required")
        doc = peer._render(path, expand="$expand" in parse_qs(urlsplit(self.path).query))
        if doc is None:
            return self.error(404, f"no resource at {path}")
        slashed = str(doc.get("@odata.id", "")).endswith("/")
        if peer.slash_redirect and slashed and not self.path.endswith("/"):
            return self.reply(308, None, {"Location": path + "/"})     # as iLO 4 does
        self.reply(200, doc)

    def do_POST(self) -> None:
        peer, path = self.server.peer, norm(self.path)
        peer._count("POST", path)
        data = self.body()
        if path != SESSIONS:
            return self.error(405, f"POST is not allowed on {path}")
        try:
            cred = json.loads(data)
            user, password = cred["UserName"], cred["Password"]
        except (ValueError, KeyError, TypeError):
            return self.error(400, "expected {\"UserName\": ..., \"Password\": ...}")
        if (user, password) != (peer.username, peer.password):
            return self.error(401, "invalid credentials")
        sid, token = peer._open_session(user)
        location = f"{SESSIONS}/{sid}"
        self.reply(201, peer._render(location), {"X-Auth-Token": token, "Location": location})

    def do_DELETE(self) -> None:
        peer, path = self.server.peer, norm(self.path)
        peer._count("DELETE", path)
        if not peer._authorized(self.headers):
            return self.error(401, "authentication required")
        if not peer._close_session(path):
            return self.error(404, f"no session at {path}")
        self.reply(204)


class RedfishPeer:
    """A Redfish service on 127.0.0.1 serving a mockup folder; a context manager."""

    def __init__(self, mockup: str | Path = "public-rackmount1", *, port: int = 0, username: str = "admin",
                 password: str = "wattsight-test", basic: bool = True, tls: bool = False, expand: bool = True,
                 chunked: bool = False, slash_redirect: bool = False) -> None:
        root = Path(mockup) if Path(mockup).is_absolute() else MOCKUPS / mockup
        self.resources = load_tree(root)
        self.username, self.password = username, password
        self.basic, self.expand, self.chunked, self.slash_redirect = basic, expand, chunked, slash_redirect
        self.port = port
        self.requests: Counter = Counter()   # (method, path) -> count
        self.cut: set[str] = set()           # paths whose GET gets the connection closed, no answer
        self.logins = 0
        self._sessions: dict[str, tuple[str, str]] = {}   # token -> (session id, user)
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp = tempfile.mkdtemp(prefix="redfish-peer-") if tls else None
        self._tls = self._make_tls() if tls else None
        if self._tmp:
            weakref.finalize(self, shutil.rmtree, self._tmp, True)

    # -- life --------------------------------------------------------------------------------
    def start(self) -> RedfishPeer:
        """Listen (again) on :attr:`port`; the first start picks a free port when it is 0."""
        if self._server is not None:
            return self
        self._server = _Server(self, self.port)
        self.port = self._server.port
        self._thread = self._server.serve_in_thread(f"redfish-peer-{self.port}")
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a BMC that goes away."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str | None:
        """The self-signed certificate (PEM) of a ``tls=True`` peer, to trust it."""
        return str(Path(self._tmp) / "cert.pem") if self._tmp else None

    # -- what tests change and look at -----------------------------------------------------
    def resource(self, path: str) -> dict:
        """A copy of the resource at ``path``."""
        with self._lock:
            return copy.deepcopy(self.resources[norm(path)])

    def put(self, path: str, doc: dict) -> None:
        """Add (or replace) the resource at ``path``."""
        with self._lock:
            self.resources[norm(path)] = copy.deepcopy(doc)

    def set(self, path: str, pointer: str, value) -> None:
        """Set the value at JSON ``pointer`` of the resource at ``path`` (the parent must exist; ``-``
        as the last token of a list's pointer appends)."""
        *parents, last = pointer_parts(pointer)
        with self._lock:
            node = self.resources[norm(path)]
            for token in parents:
                node = _step(node, token)
            if isinstance(node, list) and last == "-":
                node.append(value)
            elif isinstance(node, list):
                node[int(last)] = value
            else:
                node[last] = value

    def delete(self, path: str, pointer: str | None = None) -> None:
        """Remove a property (by JSON pointer) or, without one, the whole resource (then 404)."""
        with self._lock:
            if pointer is None:
                del self.resources[norm(path)]
                return
            *parents, last = pointer_parts(pointer)
            node = self.resources[norm(path)]
            for token in parents:
                node = _step(node, token)
            del node[int(last) if isinstance(node, list) else last]

    @property
    def sessions(self) -> int:
        """Sessions open now."""
        with self._lock:
            return len(self._sessions)

    def expire_sessions(self) -> None:
        """Forget every session: their tokens now get 401."""
        with self._lock:
            self._sessions.clear()

    # -- inside ------------------------------------------------------------------------------
    def _count(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[(method, path)] += 1

    def _authorized(self, headers) -> bool:
        with self._lock:
            if headers.get("X-Auth-Token") in self._sessions:
                return True
        auth = headers.get("Authorization", "")
        if not (self.basic and auth.startswith("Basic ")):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, password) == (self.username, self.password)

    def _open_session(self, user: str) -> tuple[str, str]:
        sid, token = secrets.token_hex(8), secrets.token_hex(16)
        with self._lock:
            self._sessions[token] = (sid, user)
            self.logins += 1
        return sid, token

    def _close_session(self, path: str) -> bool:
        with self._lock:
            for token, (sid, _) in list(self._sessions.items()):
                if path == f"{SESSIONS}/{sid}":
                    del self._sessions[token]
                    return True
        return False

    def _render(self, path: str, *, expand: bool = False) -> dict | None:
        with self._lock:
            if path == SESSIONS:
                return self._session_collection()
            if path.startswith(SESSIONS + "/"):
                return next(({"@odata.id": path, "@odata.type": "#Session.v1_8_0.Session", "Id": sid,
                              "Name": "User Session", "UserName": user}
                             for sid, user in self._sessions.values() if path == f"{SESSIONS}/{sid}"), None)
            doc = self.resources.get(path)
            if doc is None:
                return None
            doc = copy.deepcopy(doc)
            if expand and self.expand and isinstance(doc.get("Members"), list):
                doc["Members"] = [copy.deepcopy(self.resources.get(norm(m.get("@odata.id", "")), m))
                                  for m in doc["Members"]]
            return doc

    def _session_collection(self) -> dict:
        members = [{"@odata.id": f"{SESSIONS}/{sid}"} for sid, _ in self._sessions.values()]
        return {"@odata.id": SESSIONS, "@odata.type": "#SessionCollection.SessionCollection",
                "Name": "Session Collection", "Members": members, "Members@odata.count": len(members)}

    def _make_tls(self) -> ssl.SSLContext:
        """A server context with a fresh self-signed certificate for 127.0.0.1 and localhost."""
        import datetime as dt
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redfish-peer")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        cert_pem, key_pem = Path(self._tmp) / "cert.pem", Path(self._tmp) / "key.pem"
        cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_pem, key_pem)
        return ctx
