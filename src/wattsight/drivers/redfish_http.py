"""The redfish driver's HTTP side: one keep-alive connection to a BMC, its login, its errors.

:class:`RedfishClient` GETs Redfish resources as dicts, inside a per-read time budget, and turns
everything that can go wrong on the wire into the exceptions of :mod:`wattsight.errors`: no answer
or a time-out is :class:`MeterUnreachable`, refused credentials :class:`MeterAuthError`, a missing
resource :class:`NotFound` (a :class:`MeterReplyError` carrying the path). Session authentication
logs in on first use, logs in again when the BMC forgets the session (401) and logs out on
:meth:`RedfishClient.close`: BMCs cap their sessions, an abandoned one holds a slot until it expires.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from ..errors import DriverError, MeterAuthError, MeterPermissionError, MeterReplyError, MeterUnreachable
from .httpclient import ssl_error

log = logging.getLogger("wattsight.drivers.redfish")

SESSIONS = "/redfish/v1/SessionService/Sessions"


class NotFound(MeterReplyError):
    """A resource the BMC answers 404 for; ``path`` says which."""

    def __init__(self, message: str, *, probe: str | None, path: str) -> None:
        self.path = path
        super().__init__(message, probe=probe)


class RedfishClient:
    """GET Redfish resources from one service, authenticated, within a time budget."""

    def __init__(self, *, origin: str, username: str, password_text, auth: str, verify_tls: bool,
                 ca_file: Path | None, transport: httpx.BaseTransport | None = None) -> None:
        self.origin = origin
        self.username = username
        self._password_text = password_text     # a callable: the secret is read when needed
        self.auth = auth
        self.verify_tls, self.ca_file = verify_tls, ca_file
        self._transport = transport
        self._http: httpx.Client | None = None
        self._token: str | None = None
        self._session_path: str | None = None
        self._deadline = float("inf")
        self._budget = 0.0

    # -- time --------------------------------------------------------------------------------
    def begin(self, budget: float) -> None:
        """Start a read: every request from now on must end within ``budget`` seconds."""
        self._budget = budget
        self._deadline = time.monotonic() + budget

    def _timeout(self) -> httpx.Timeout:
        left = self._deadline - time.monotonic()
        if left <= 0.01:
            raise self._err(MeterUnreachable, f"no complete answer within {self._budget:.3g} s (a slow BMC: "
                            "raise `timeout`; what was read so far is kept for the next read)")
        return httpx.Timeout(left)

    def _err(self, cls: type[DriverError], message: str) -> DriverError:
        """An error of class ``cls`` naming this service."""
        return cls(message, probe=self.origin)

    # -- the connection ----------------------------------------------------------------------
    def _client(self) -> httpx.Client:
        if self._http is None:
            transport = self._transport or httpx.HTTPTransport(
                verify=self._verify(), socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            auth = httpx.BasicAuth(self.username, self._password_text()) if self.auth == "basic" else None
            self._http = httpx.Client(base_url=self.origin, transport=transport, auth=auth,
                                      headers={"Accept": "application/json", "OData-Version": "4.0"})
        return self._http

    def _verify(self) -> bool | ssl.SSLContext:
        if not self.verify_tls:
            return False
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise self._err(MeterPermissionError, f"cannot load ca_file {self.ca_file} ({exc}): give a "
                            "readable PEM file") from None

    def _send(self, method: str, path: str, **kw) -> httpx.Response:
        """One request, following redirects within the service (iLO 4 answers 308 to a path without
        its trailing slash), but not to another host: the session token would go with it."""
        for _ in range(3):
            r = self._send_once(method, path, **kw)
            if not r.is_redirect:
                return r
            target = urlsplit(urljoin(self.origin + path, r.headers["Location"]))
            if f"{target.scheme}://{target.netloc}" != self.origin:
                raise self._err(MeterReplyError, f"{method} {path} is redirected to {target.scheme}://"
                                f"{target.netloc}: set `url` to that address")
            path = target.path + (f"?{target.query}" if target.query else "")
        raise self._err(MeterReplyError, f"{method} {path}: too many redirects")

    def _send_once(self, method: str, path: str, **kw) -> httpx.Response:
        """One request; every failure to get an answer becomes MeterUnreachable."""
        for attempt in (1, 2):
            try:
                return self._client().request(method, path, timeout=self._timeout(), **kw)
            except httpx.RemoteProtocolError:
                if attempt == 2 or method != "GET":
                    raise self._err(MeterUnreachable, f"{method} {path}: the connection closed before an "
                                    "answer; is the BMC restarting?") from None
                # A keep-alive connection the BMC had just closed: try once on a fresh one.
            except httpx.TimeoutException:
                raise self._err(MeterUnreachable, f"{method} {path}: no answer within the time-out "
                                f"({self._budget:.3g} s per read); is the BMC up, or slow (raise `timeout`)?"
                                ) from None
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: httpx.TransportError) -> DriverError:
        tls = ssl_error(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            return self._err(MeterUnreachable, f"its TLS certificate is not trusted ({tls.verify_message}). "
                             "BMCs often have a self-signed certificate: give its CA with `ca_file`, or set "
                             "verify_tls = false to accept any certificate")
        if tls is not None:
            scheme = urlsplit(self.origin).scheme
            return self._err(MeterUnreachable, f"TLS handshake failed ({tls.reason or tls}): does the BMC "
                             f"speak {scheme}? check the scheme of `url` and `verify_tls`")
        return self._err(MeterUnreachable, f"no answer ({exc or type(exc).__name__}); is the BMC up and "
                         "`url` right?")

    # -- sessions ----------------------------------------------------------------------------
    def login(self) -> None:
        """Open a session (POST to the session collection); keep its token and location."""
        self._token = None
        self._client().headers.pop("X-Auth-Token", None)
        r = self._send("POST", SESSIONS, json={"UserName": self.username, "Password": self._password_text()})
        if r.status_code in (401, 403):
            raise self._err(MeterAuthError, f"session login refused for user {self.username!r} "
                            f"(HTTP {r.status_code}): check `username` and `password`")
        if r.status_code in (404, 405, 501):
            raise self._err(MeterReplyError, f"no session service at {SESSIONS} (HTTP {r.status_code}): "
                            "set auth = \"basic\"")
        if not r.is_success:
            raise self._err(MeterReplyError, f"session login: HTTP {r.status_code}{_detail(r)}")
        token = r.headers.get("X-Auth-Token")
        if not token:
            raise self._err(MeterReplyError, "session login answered without an X-Auth-Token header: set "
                            "auth = \"basic\"")
        location = r.headers.get("Location") or _json_or_empty(r).get("@odata.id")
        self._token, self._session_path = token, urlsplit(location).path if location else None
        self._client().headers["X-Auth-Token"] = token

    def close(self) -> None:
        """Log out (a BMC keeps a forgotten session until it times out) and close the connection."""
        if self._http is None:
            return
        try:
            if self._token and self._session_path:
                self._http.delete(self._session_path, timeout=min(max(self._budget, 1.0), 5.0))
        except httpx.HTTPError as exc:
            log.warning("%s: logging out of the Redfish session failed (%s); it ends when it times out",
                        self.origin, type(exc).__name__)
        finally:
            self._token = self._session_path = None
            self._http.close()
            self._http = None

    # -- reading ---------------------------------------------------------------------------
    def get(self, path: str) -> dict:
        """The resource at ``path`` (with any query) as a dict."""
        if self.auth == "session" and self._token is None:
            self.login()
        r = self._send("GET", path)
        if r.status_code == 401 and self.auth == "session":
            self.login()                 # the BMC forgot the session (timed out, BMC restarted)
            r = self._send("GET", path)
        if r.status_code == 401:
            raise self._err(MeterAuthError, f"GET {path}: HTTP 401, the BMC refused user {self.username!r}: "
                            "check `username` and `password`")
        if r.status_code == 403:
            raise self._err(MeterAuthError, f"GET {path}: HTTP 403, user {self.username!r} may not read it: "
                            "give the account read (ReadOnly/Operator) rights")
        if r.status_code == 404:
            raise NotFound(f"GET {path}: HTTP 404, no such resource", probe=self.origin, path=path)
        if not r.is_success:
            raise self._err(MeterReplyError, f"GET {path}: HTTP {r.status_code}{_detail(r)}")
        try:
            doc = r.json()
        except ValueError:
            raise self._err(MeterReplyError, f"GET {path}: the reply is not JSON ({r.text[:60]!r}...)"
                            ) from None
        if not isinstance(doc, dict):
            raise self._err(MeterReplyError, f"GET {path}: expected a JSON object, got {type(doc).__name__}")
        return doc


def _json_or_empty(r: httpx.Response) -> dict:
    try:
        doc = r.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _detail(r: httpx.Response) -> str:
    """The Redfish error message of a reply, if it carries one."""
    err = _json_or_empty(r).get("error")
    msg = err.get("message") if isinstance(err, dict) else None
    return f" ({msg})" if isinstance(msg, str) and msg else ""
