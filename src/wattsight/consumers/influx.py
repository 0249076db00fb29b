"""Consumer ``influxdb``: samples written to InfluxDB in line protocol (1.x ``/write``, 2.x ``/api/v2/write``).

One line per sample, one **measurement per metric**, the value in a field named ``value``,
always a float (InfluxDB refuses a batch that mixes integers and floats in one field), the
time in milliseconds (``precision=ms``)::

    power,probe=lyon.taurus-7,provenance=measured,site=lyon value=183.0 1700000000000
    energy,probe=lyon.taurus-7,provenance=measured,site=lyon value=1072800000.0 1700000000000

A measurement per metric, because metrics differ in unit and kind (a power gauge, an energy
counter): a query reads one measurement, and ``value`` is the field Grafana's InfluxQL editor
picks by default.  Tags ``probe``, ``provenance``, ``site`` and the section's static ``tags``,
sorted by key; escaping as the line protocol wants it.  Non-finite values (NaN, inf), which
InfluxDB cannot store, are left out and counted (``nonfinite_samples``).

InfluxDB 1.x: ``POST <url>/write?db=<database>[&rp=<retention_policy>]&precision=ms`` with basic
auth when ``username`` is set.  2.x (and 1.8+ in its compatibility API):
``POST <url>/api/v2/write?org=<org>&bucket=<bucket>&precision=ms`` with ``Authorization:
Token <token>``.  A 1.x "partial write" (400 naming ``dropped=N``) counts N samples as rejected
and the rest as sent.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from typing import Literal

import httpx
import numpy as np
from pydantic import Field, SecretStr, model_validator

from .. import __version__
from ..drivers.base import FilePath
from ..sample import Batch, Series, now_ms
from .base import SenderConfig, SendingConsumer, secret
from .sender import HttpPost, SendFailed

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_NEWLINES = str.maketrans({"\n": " ", "\r": " "})
OWN_TAGS = ("probe", "provenance", "site")

SAMPLE = """\
[consumers.influx]
type = "influxdb"
url = "http://influxdb.example.org:8086"
database = "wattsight"                    # InfluxDB 1.x; create it first: CREATE DATABASE wattsight
# username = "wattsight"                  # with password or password_file, if auth is enabled
# password_file = "/etc/wattsight/influxdb.password"
# api = "v2"                              # InfluxDB 2.x: give org, bucket and token (or token_file) instead
# org = "lab"
# bucket = "wattsight"
# token_file = "/etc/wattsight/influxdb.token"
# tags = { cluster = "lyon" }             # added to every line (besides probe, provenance, site)
# metrics = ["power", "energy"]           # only these metrics; default: all
# batch_max = 5000                        # lines per request
# max_backlog = 1000000                   # samples kept while InfluxDB is down; past it the oldest are dropped
"""


def escape_measurement(name: str) -> str:
    """A measurement name in line protocol: ``,`` and space escaped (and ``\\``); no leading ``#``."""
    text = name.translate(_NEWLINES).translate(_MEASUREMENT)
    return "\\" + text if text.startswith("#") else text


def escape_key(text: str) -> str:
    """A tag key, tag value or field key in line protocol: ``,``, ``=`` and space escaped."""
    return text.translate(_NEWLINES).translate(_KEY)


def line_prefix(series: Series, tags: dict[str, str], prefix: str = "") -> str:
    """Everything of a series' lines before the value: ``<measurement>,<tags> value=``."""
    all_tags = {"probe": series.probe, "provenance": series.provenance, "site": series.site, **tags}
    tag_text = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(all_tags.items()) if v)
    return f"{escape_measurement(prefix + series.metric)}{tag_text} value="


def lines(prefixes: list[str], batch: Batch) -> tuple[bytes, int]:
    """The line protocol text of ``batch`` (``prefixes`` by series), and how many rows it holds."""
    keep = np.isfinite(batch.v)
    pre = np.asarray(prefixes, dtype=object)[batch.sidx[keep]].tolist()
    v, t = batch.v[keep].tolist(), batch.t[keep].tolist()
    return "".join([f"{p}{x!r} {s}\n" for p, x, s in zip(pre, v, t)]).encode(), len(v)


class InfluxConfig(SenderConfig):
    """Settings of ``[consumers.<name>]`` with ``type = "influxdb"``."""

    type: Literal["influxdb"] = Field("influxdb", description="the consumer's name: \"influxdb\"")
    url: str = Field(description="InfluxDB's address, http(s)://host:8086 (the API path is added)")
    api: Literal["v1", "v2"] = Field("v1", description='"v1": /write with database; "v2": /api/v2/write with '
                                                       "org, bucket and token")
    database: str | None = Field(None, description="v1: the database to write to (it must exist)")
    retention_policy: str | None = Field(None, description="v1: the retention policy (default: the database's)")
    username: str | None = Field(None, description="v1: user, when InfluxDB has auth enabled")
    password: SecretStr | None = Field(None, description="v1: the user's password")
    password_file: FilePath | None = Field(None, description="v1: a file whose first line is the password")
    org: str | None = Field(None, description="v2: the organization")
    bucket: str | None = Field(None, description="v2: the bucket")
    token: SecretStr | None = Field(None, description="v2: an API token allowed to write the bucket")
    token_file: FilePath | None = Field(None, description="v2: a file whose first line is the token")
    tags: dict[str, str] = Field({}, description="tags added to every line, e.g. { cluster = \"x\" }")
    measurement_prefix: str = Field("", description='put before each metric name, e.g. "wattsight_" gives '
                                                    '"wattsight_power"')
    gzip: bool = Field(False, description="compress requests (Content-Encoding: gzip)")
    batch_max: int = Field(5_000, ge=1, le=1_000_000, description="the most lines in one request")

    @model_validator(mode="after")
    def _check(self) -> InfluxConfig:
        self.check_url()
        v1 = {"database": self.database, "retention_policy": self.retention_policy, "username": self.username,
              "password": self.password, "password_file": self.password_file}
        v2 = {"org": self.org, "bucket": self.bucket, "token": self.token, "token_file": self.token_file}
        other = v2 if self.api == "v1" else v1
        wrong = [k for k, v in other.items() if v is not None]
        if wrong:
            raise ValueError(f"{', '.join(f'`{k}`' for k in wrong)}: not used with api = {self.api!r}")
        if self.api == "v1":
            if not self.database:
                raise ValueError('api = "v1" needs `database`')
            if self.password is not None and self.password_file is not None:
                raise ValueError("give `password` or `password_file`, not both")
            if (self.username is None) != (self.password is None and self.password_file is None):
                raise ValueError("auth needs `username` and one of `password`, `password_file`")
        else:
            if not self.org or not self.bucket:
                raise ValueError('api = "v2" needs `org` and `bucket`')
            if (self.token is None) == (self.token_file is None):
                raise ValueError('api = "v2" needs `token` or `token_file` (one of them)')
        for k, v in self.tags.items():
            if k in OWN_TAGS or not k or not v:
                raise ValueError(f"tag {k!r}: {'set by wattsight on every line' if k in OWN_TAGS else 'empty'}")
        return self


class InfluxConsumer(SendingConsumer):
    """Writes samples to InfluxDB 1.x or 2.x in line protocol, with retries and a backlog."""

    Config = InfluxConfig
    SAMPLE = SAMPLE

    def __init__(self, config: InfluxConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 name: str = "") -> None:
        where = f"consumers.{name or config.type}"
        base = config.url.rstrip("/")
        headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": f"wattsight/{__version__}"}
        if config.gzip:
            headers["Content-Encoding"] = "gzip"
        auth = None
        if config.api == "v1":
            url, params = f"{base}/write", {"db": config.database, "precision": "ms"}
            if config.retention_policy:
                params["rp"] = config.retention_policy
            if config.username is not None:  # basic auth: never in the query string, which is logged
                auth = httpx.BasicAuth(config.username, secret(config, "password", where) or "")
        else:
            url, params = f"{base}/api/v2/write", {"org": config.org, "bucket": config.bucket, "precision": "ms"}
            headers["Authorization"] = f"Token {secret(config, 'token', where)}"
        self._post = HttpPost(url, timeout=config.timeout, verify_tls=config.verify_tls, ca_file=config.ca_file,
                              auth=auth, headers=headers, params=params)
        self._prefixes: dict[Series, str] = {}
        super().__init__(config, site=site, clock=clock, name=name)
        self.n.update(nonfinite_samples=0)

    def _prefix(self, s: Series) -> str:
        got = self._prefixes.get(s)
        if got is None:
            got = self._prefixes[s] = line_prefix(s, self.config.tags, self.config.measurement_prefix)
        return got

    def send(self, batch: Batch) -> int:
        body, rows = lines([self._prefix(s) for s in batch.series], batch)
        nonfinite = len(batch) - rows
        if rows:
            try:
                self._post(gzip.compress(body, 1) if self.config.gzip else body)
            except SendFailed as exc:
                exc.rejected = rows
                if exc.status == 400 and (m := re.search(r"dropped=(\d+)", str(exc))):
                    exc.rejected = min(rows, int(m.group(1)))  # a partial write: the rest is stored
                    exc.written = rows - exc.rejected
                if not exc.retryable:
                    self.n["nonfinite_samples"] += nonfinite
                raise
        self.n["nonfinite_samples"] += nonfinite
        return rows

    def close(self, timeout: float = 10.0) -> int:
        left = super().close(timeout)
        self._post.close()
        return left
