"""The recorder's client of a wattsight server's recordings API, on ``urllib`` only.

Writes (create, step, end, stop) carry the caller's timestamps, so they need not arrive at once:
when the server does not answer they wait in order in :class:`Outbox` and are sent with the next
call that gets through (an identical retry is harmless: the server answers 200 with what it has).
The code under test never sees an error: the first failure logs one warning, further ones only
at debug level, until the server answers again (then an info line says so).  A server that
refuses a request (4xx: a bad token, an unknown probe) is not retried; that is logged once too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("wattsight.recorder")

#: Seconds to wait after a failure before the next attempt (doubling up to the last).
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class ApiDown(Exception):
    """The server could not be reached or answered 5xx: worth trying again later.

    ``status`` is the 5xx status when the server answered, None when it could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ApiRefused(Exception):
    """The server answered 4xx: the request itself is wrong; ``status`` and the server's ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(f"HTTP {status}: {detail}")


class Client:
    """JSON over HTTP to one wattsight server, with the bearer token when one is given."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 2.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        """The decoded JSON answer; ApiDown or ApiRefused otherwise."""
        return self.request(method, path, body, params)[1]

    def request(self, method: str, path: str, body: dict | None = None,
                params: dict | None = None) -> tuple[int, dict]:
        """(HTTP status, decoded JSON answer); ApiDown or ApiRefused otherwise."""
        import urllib.error  # here, not at import: urllib.request pulls in ssl, email and http.client
        import urllib.request
        from urllib.parse import urlencode

        url = self.url + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code >= 500:
                raise ApiDown(f"{method} {url}: HTTP {exc.code}: {detail}", exc.code) from None
            raise ApiRefused(exc.code, f"{method} {path}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiDown(f"{method} {url}: {reason}") from None


def quote(part: str) -> str:
    """A path segment (a step name, a job id) escaped for a URL."""
    from urllib.parse import quote as _quote

    return _quote(part, safe="")


def _detail(exc) -> str:
    """The server's ``detail`` from an HTTPError's JSON body, else its reason."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)


@dataclass
class Outbox:
    """The writes of one recording not yet acknowledged, sent in order; the recording's id once known."""

    client: Client
    clock: Callable[[], float] = time.time  # the caller's clock: client_time says what it reads now
    create: dict | None = None  # the POST /recordings body, until the server gives an id
    recording: str | None = None
    pending: list[tuple[str, dict]] = field(default_factory=list)  # (path under the recording, body)
    warnings: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def refused_recording(self) -> bool:
        """True when the server refused to create the recording: its writes have nowhere to go."""
        return self.create is None and self.recording is None

    @property
    def waiting(self) -> bool:
        """True while writes (or the recording itself) wait to be sent."""
        return not self.refused_recording and (self.recording is None or bool(self.pending))

    def send(self, path: str, body: dict) -> None:
        if not self.refused_recording:
            self.pending.append((path, body))

    def flush(self) -> None:
        """Send what waits, in order (ApiDown leaves the rest waiting; ApiRefused drops that request)."""
        if self.recording is None and self.create is not None:
            body = {**self.create, "client_time": self.clock()}
            try:
                answer = self.client.call("POST", "/api/v1/recordings", body)
            except ApiRefused as exc:
                self.create = None
                self.pending.clear()
                self.refused.append(f"the recording was refused: {exc.detail}")
                raise
            self.recording = str(answer["id"])
            self.warnings += [str(w) for w in answer.get("warnings") or []]
        while self.pending and self.recording is not None:
            path, body = self.pending[0]
            try:
                self.client.call("POST", f"/api/v1/recordings/{self.recording}{path}",
                                 {**body, "client_time": self.clock()})
            except ApiRefused as exc:
                self.refused.append(exc.detail)
                self.pending.pop(0)
                raise
            self.pending.pop(0)


class Link:
    """Warn-once bookkeeping and back-off around a :class:`Client` (one per recorder)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.down_since: float | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.warned: set[str] = set()
        self.lock = threading.RLock()

    def attempt(self, fn, *, force: bool = False):
        """``fn()``'s result, or None when the server is down (or backing off) or refused it."""
        with self.lock:
            if not force and self.down_since is not None and time.monotonic() < self.retry_at:
                return None
            try:
                result = fn()
            except ApiDown as exc:
                self._down(exc)
                return None
            except ApiRefused as exc:
                self._up()
                self.warn_once(f"refused:{exc.status}", "the wattsight server at %s refused a "
                               "request (%s); the code under test goes on, this recording's figures may be "
                               "incomplete", self.client.url, exc)
                return None
            self._up()
            return result

    def warn_once(self, key: str, msg: str, *args) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(msg, *args)

    def _down(self, exc: ApiDown) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            if "down" not in self.warned:
                self.warned.add("down")
                log.warning("the wattsight API is unreachable (%s); the code under test "
                            "goes on, steps are kept and sent when it answers again, measurements say "
                            "'unavailable' meanwhile. Check that `wattsight run` serves %s (or unset "
                            "WATTSIGHT_URL for local mode)", exc, self.client.url)
            else:
                log.debug("API unreachable again: %s", exc)
        else:
            log.debug("API still unreachable: %s", exc)
        self.failures += 1
        self.retry_at = time.monotonic() + BACKOFF[min(self.failures, len(BACKOFF)) - 1]

    def _up(self) -> None:
        if self.down_since is not None:
            log.info("the API at %s answers again after %.1f s", self.client.url,
                     time.monotonic() - self.down_since)
        self.down_since, self.failures = None, 0
