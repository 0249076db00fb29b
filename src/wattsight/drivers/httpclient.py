"""What the drivers that speak HTTP share: the keys of a URL source, and httpx's failures as wattsight errors.

:func:`check_url` validates a ``url`` key (every HTTP driver's). :class:`HttpClientConfig` (url,
credentials, TLS) and :class:`HttpFetcher` (one GET with keep-alive, every failure a
:class:`~wattsight.errors.DriverError` naming the URL) serve the ``http`` and ``prometheus`` drivers.
:func:`ssl_error` finds the TLS failure behind an httpx error (the ``redfish`` driver's
:mod:`.redfish_http` names it: an untrusted certificate, or no TLS at all).
"""

from __future__ import annotations

import ssl
from urllib.parse import SplitResult, urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from ..errors import MeterAuthError, MeterReplyError, MeterUnreachable
from .base import DriverConfig


def check_url(url: str) -> SplitResult:
    """``url`` split, if it is an http:// or https:// URL with a host and no credentials; ValueError else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL holds credentials: set `username` and `password` instead")
    return parts


class HttpClientConfig(DriverConfig):
    """The keys of a driver that reads one URL (shared by ``http`` and ``prometheus``)."""

    url: str = Field(description="the URL to GET, http:// or https:// (no credentials in it)")
    username: str | None = Field(None, description="user name for HTTP basic authentication")
    password: SecretStr | None = Field(None, description="password for HTTP basic authentication (never logged)")
    token: SecretStr | None = Field(None, description="a bearer token, sent as 'Authorization: Bearer <token>'")
    headers: dict[str, str] = Field({}, description="extra request headers, e.g. {Accept = \"application/json\"}")
    verify_tls: bool = Field(True, description="check the server's TLS certificate (https); false for self-signed")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        check_url(url)
        return url

    @model_validator(mode="after")
    def _check_auth(self) -> HttpClientConfig:
        if self.password is not None and self.username is None:
            raise ValueError("`password` is set but `username` is not")
        if self.token is not None and self.username is not None:
            raise ValueError("set either `token` or `username`/`password`, not both")
        if any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("put credentials in `token` or `username`/`password`, not in `headers` "
                             "(headers are not kept secret)")
        return self


def safe_url(url: str) -> str:
    """``url`` without its query (which may carry a key): how errors and descriptions name it."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


class HttpFetcher:
    """GETs one URL with keep-alive and turns every failure into a DriverError naming it."""

    def __init__(self, cfg: HttpClientConfig, *, accept: str, transport: httpx.BaseTransport | None = None) -> None:
        self.cfg, self.accept, self.transport = cfg, accept, transport
        self.where = safe_url(cfg.url)
        self._client: httpx.Client | None = None

    def _make_client(self) -> httpx.Client:
        cfg = self.cfg
        headers = {"Accept": self.accept, **cfg.headers}
        auth = None
        if cfg.username is not None:
            auth = httpx.BasicAuth(cfg.username, cfg.password.get_secret_value() if cfg.password else "")
        elif cfg.token is not None:
            headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        # Below the runner's time-out, so that a dead meter is this client's error, not an abandoned read.
        limit = httpx.Timeout(0.9 * cfg.read_timeout, connect=0.45 * cfg.read_timeout)
        return httpx.Client(headers=headers, auth=auth, timeout=limit, verify=cfg.verify_tls,
                            follow_redirects=True, transport=self.transport)

    def get(self) -> httpx.Response:
        """The reply to one GET, status 2xx; MeterUnreachable, MeterAuthError or MeterReplyError else."""
        if self._client is None:
            self._client = self._make_client()
        cfg, where = self.cfg, self.where
        try:
            reply = self._client.get(cfg.url)
        except httpx.TimeoutException:
            raise MeterUnreachable(f"no answer within {cfg.read_timeout:g} s; is the meter up and the url "
                                   "right? (raise `timeout` if it is just slow)", probe=where) from None
        except (httpx.RemoteProtocolError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise MeterReplyError(f"the server's reply is not valid HTTP ({type(exc).__name__}: {exc})",
                                  probe=where) from None
        except httpx.TransportError as exc:
            raise MeterUnreachable(f"cannot connect ({type(exc).__name__}: {exc or 'no detail'}); is the "
                                   "meter up and the url right?", probe=where) from None
        if reply.status_code in (401, 403):
            sent = "the credentials were refused: check `username` and `password` (or `token`)" \
                if (cfg.username or cfg.token) else "it needs credentials: set `username` and `password` (or `token`)"
            raise MeterAuthError(f"HTTP {reply.status_code} {reply.reason_phrase}: {sent}", probe=where)
        if reply.status_code == 404:
            raise MeterReplyError(f"HTTP 404 Not Found: no such resource on the meter; check the url's path "
                                  f"({urlsplit(cfg.url).path or '/'})", probe=where)
        if not reply.is_success:
            raise MeterReplyError(f"HTTP {reply.status_code} {reply.reason_phrase} (expected 200)", probe=where)
        return reply

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The ssl error behind an httpx connection error, if that is what it was."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
