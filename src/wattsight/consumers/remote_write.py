"""Consumer ``remote_write``: samples pushed to Prometheus (or Mimir, Thanos, VictoriaMetrics...).

Prometheus remote_write 1.0: a ``prometheus.WriteRequest`` protobuf, compressed with snappy's
*block* format, POSTed with ``Content-Encoding: snappy``, ``Content-Type:
application/x-protobuf`` and ``X-Prometheus-Remote-Write-Version: 0.1.0``.  The four messages
are small and fixed, so they are written by hand (no generated code, no protobuf runtime): the
samples of a request as one numpy array of bytes, the label part of each series once and
cached.  Snappy comes from ``cramjam`` (``snappy.compress_raw`` is the block format).

Series: ``wattsight_<metric>_<unit>`` with ``_total`` on counters (``wattsight_power_watts``,
``wattsight_energy_joules_total``, ``wattsight_network_receive_bytes_total``), labels
``probe``, ``site``, ``provenance`` and the section's static ``labels``.

Prometheus refuses a whole request (400, rolled back) if one sample is older than or equal to
the last one it has for its series, so each request is sorted by series and time, equal times
keep the last written, and a sample not newer than the last one *sent* for its series is left
out and counted (``late_samples``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Literal

import httpx
import numpy as np
from pydantic import Field, SecretStr, field_validator, model_validator

from .. import __version__
from ..drivers.base import FilePath
from ..errors import MissingDependency
from ..sample import Batch, Series, is_counter, now_ms
from .base import SenderConfig, SendingConsumer, secret
from .sender import HttpPost, SendFailed

log = logging.getLogger("wattsight.consumers")

#: Units as Prometheus names them (base units, plural); others are used as written, cleaned.
UNITS = {"W": "watts", "J": "joules", "B": "bytes", "V": "volts", "A": "amperes", "VA": "voltamperes",
         "Hz": "hertz", "s": "seconds", "Wh": "watthours", "kWh": "kilowatthours", "%": "percent",
         "C": "celsius", "°C": "celsius", "1": "", "": ""}
#: wattsight metric -> the name part used by node_exporter's conventions.
RENAMES = {"network_in": "network_receive", "network_out": "network_transmit"}
OWN_LABELS = ("__name__", "probe", "provenance", "site")
_BAD_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)  # the 10 groups of 7 bits of a uint64 varint
_NEVER = np.iinfo(np.int64).min

SAMPLE = """\
[consumers.prometheus]
type = "remote_write"
url = "http://prometheus.example.org:9090/api/v1/write"   # Prometheus started with --web.enable-remote-write-receiver
# labels = { cluster = "lyon" }           # added to every series (besides probe, site, provenance)
# metrics = ["power", "energy"]           # only these metrics; default: all
# username = "wattsight"                  # basic auth, with password or password_file
# password_file = "/etc/wattsight/prometheus.password"
# bearer_token_file = "/etc/wattsight/prometheus.token"   # or a bearer token
# batch_max = 10000                       # samples per request
# flush_interval = 1.0                    # seconds samples may wait to fill a request
# max_backlog = 1000000                   # samples kept while Prometheus is down; past it the oldest are dropped
"""


def metric_name(series: Series, prefix: str = "wattsight") -> str:
    """The Prometheus name of a series: ``<prefix>_<metric>_<unit>[_total]``, cleaned."""
    unit = UNITS.get(series.unit, series.unit.lower())
    name = "_".join(p for p in (prefix, RENAMES.get(series.metric, series.metric)) if p)
    unit = _BAD_NAME.sub("_", unit)
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    if is_counter(series.kind) and not name.endswith("_total"):
        name += "_total"
    name = _BAD_NAME.sub("_", name)
    return "_" + name if name[0].isdigit() else name


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + uvarint(len(data)) + data


def encode_labels(labels: list[tuple[str, str]]) -> bytes:
    """The ``labels`` fields of a TimeSeries (the caller sorts them by name)."""
    return b"".join(_field(0x0A, _field(0x0A, k.encode()) + _field(0x12, v.encode())) for k, v in labels)


def encode_samples(t: np.ndarray, v: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The ``samples`` fields (``Sample{double value = 1; int64 timestamp = 2}``) of all rows, and
    each row's byte offset (``n + 1`` of them), vectorised: one 22-byte record per row, cut to length."""
    n = len(t)
    groups = t.astype(np.int64).view(np.uint64)[:, None] >> _SHIFTS  # int64 varints: two's complement
    length = np.maximum(1, np.count_nonzero(groups, axis=1))  # bytes of each varint
    varint = (groups & 0x7F).astype(np.uint8)
    varint |= (np.arange(10) < (length - 1)[:, None]).astype(np.uint8) << 7
    rec = np.empty((n, 22), np.uint8)
    rec[:, 0], rec[:, 1], rec[:, 2] = 0x12, 10 + length, 0x09  # field 2 (len), length; value: field 1 (I64)
    rec[:, 3:11] = np.ascontiguousarray(v, dtype="<f8").view(np.uint8).reshape(n, 8)
    rec[:, 11] = 0x10  # timestamp: field 2 (varint)
    rec[:, 12:] = varint
    size = 12 + length
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(size, out=offsets[1:])
    return rec[np.arange(22) < size[:, None]].tobytes(), offsets


def _compressor():
    try:
        import cramjam
    except ImportError as exc:
        raise MissingDependency("cramjam", "remote-write", "the remote_write consumer (snappy)") from exc
    return cramjam.snappy.compress_raw


class RemoteWriteConfig(SenderConfig):
    """Settings of ``[consumers.<name>]`` with ``type = "remote_write"``."""

    type: Literal["remote_write"] = Field("remote_write", description="the consumer's name: \"remote_write\"")
    url: str = Field(description="the receiver's endpoint, e.g. http://host:9090/api/v1/write")
    labels: dict[str, str] = Field({}, description="labels added to every series, e.g. { cluster = \"x\" }")
    prefix: str = Field("wattsight", description="the first part of every metric name")
    username: str | None = Field(None, description="basic auth user (with password or password_file)")
    password: SecretStr | None = Field(None, description="basic auth password")
    password_file: FilePath | None = Field(None, description="a file whose first line is the password")
    bearer_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer <token>")
    bearer_token_file: FilePath | None = Field(None, description="a file whose first line is the token")

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for k, v in labels.items():
            if not _LABEL.fullmatch(k) or k.startswith("__"):
                raise ValueError(f"label name {k!r}: letters, digits and '_', not starting with a digit or '__'")
            if k in OWN_LABELS:
                raise ValueError(f"label {k!r} is set by wattsight on every series")
            if not v:
                raise ValueError(f"label {k!r} has an empty value (Prometheus drops such labels)")
        return labels

    @model_validator(mode="after")
    def _check(self) -> RemoteWriteConfig:
        self.check_url()
        if self.prefix and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", self.prefix):
            raise ValueError(f"`prefix` {self.prefix!r} is not a metric name part ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        basic = self.password is not None or self.password_file is not None
        if self.password is not None and self.password_file is not None:
            raise ValueError("give `password` or `password_file`, not both")
        if basic != (self.username is not None):
            raise ValueError("basic auth needs `username` and one of `password`, `password_file`")
        bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if bearer and (basic or (self.bearer_token is not None and self.bearer_token_file is not None)):
            raise ValueError("give one credential: basic auth or `bearer_token` or `bearer_token_file`")
        return self


class RemoteWriteConsumer(SendingConsumer):
    """Pushes samples to Prometheus remote_write 1.0 (protobuf + snappy), with retries and a backlog."""

    Config = RemoteWriteConfig
    SAMPLE = SAMPLE

    def __init__(self, config: RemoteWriteConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 name: str = "") -> None:
        self._compress = _compressor()
        auth = None
        token = secret(config, "bearer_token", f"consumers.{name or config.type}")
        password = secret(config, "password", f"consumers.{name or config.type}")
        if config.username is not None:
            auth = httpx.BasicAuth(config.username, password or "")
        self._post = HttpPost(config.url, timeout=config.timeout, verify_tls=config.verify_tls,
                              ca_file=config.ca_file, auth=auth,
                              headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                                       "User-Agent": f"wattsight/{__version__}",
                                       "X-Prometheus-Remote-Write-Version": "0.1.0",
                                       **({"Authorization": f"Bearer {token}"} if token else {})})
        del token, password
        self._ids: dict[Series, int] = {}  # wattsight series -> Prometheus series number
        self._numbers: dict[tuple, int] = {}  # label set -> number
        self._label_bytes: list[bytes] = []
        self._last = np.full(0, _NEVER, np.int64)  # last time sent, per Prometheus series
        self._late_logged = False
        super().__init__(config, site=site, clock=clock, name=name)
        self.n.update(late_samples=0, duplicate_samples=0)

    def _number(self, s: Series) -> int:
        got = self._ids.get(s)
        if got is None:
            labels = {"__name__": metric_name(s, self.config.prefix), "probe": s.probe, "site": s.site,
                      "provenance": s.provenance, **self.config.labels}
            key = tuple(sorted(labels.items()))
            got = self._numbers.get(key)
            if got is None:
                got = self._numbers[key] = len(self._label_bytes)
                self._label_bytes.append(encode_labels(list(key)))
                if got >= len(self._last):
                    self._last = np.concatenate([self._last, np.full(max(64, got), _NEVER, np.int64)])
            self._ids[s] = got
        return got

    def encode(self, batch: Batch) -> tuple[bytes, np.ndarray, np.ndarray, dict]:
        """(WriteRequest bytes, series numbers, times) of the samples to send, and what was left out."""
        ids = np.fromiter((self._number(s) for s in batch.series), np.int64, len(batch.series))
        code = ids[batch.sidx]
        order = np.lexsort((batch.t, code))  # by series, then time; equal keys in arrival order
        code, t, v = code[order], batch.t[order], batch.v[order]
        last_of_equal = np.ones(len(t), bool)
        last_of_equal[:-1] = (code[1:] != code[:-1]) | (t[1:] != t[:-1])
        fresh = t > self._last[code]
        keep = last_of_equal & fresh
        skipped = {"duplicate_samples": int(len(t) - np.count_nonzero(last_of_equal)),
                   "late_samples": int(np.count_nonzero(last_of_equal & ~fresh))}
        code, t, v = code[keep], t[keep], v[keep]
        samples, offsets = encode_samples(t, v)
        starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(code)].astype(np.int64)
        view, parts = memoryview(samples), []
        for s, e, g in zip(starts.tolist(), ends.tolist(), code[starts].tolist()):
            labels, a, b = self._label_bytes[g], int(offsets[s]), int(offsets[e])
            parts += [b"\x0a", uvarint(len(labels) + b - a), labels, view[a:b]]
        return b"".join(parts), code, t, skipped

    def send(self, batch: Batch) -> int:
        body, code, t, skipped = self.encode(batch)
        try:
            if len(t):
                self._post(bytes(self._compress(body)))
        except SendFailed as exc:
            exc.rejected = len(t)  # Prometheus rolls the whole request back
            if not exc.retryable:
                self._count(skipped)
            raise
        self._count(skipped)
        if len(t):  # sorted by series then time: the last row of a series is its newest
            ends = np.r_[code[1:] != code[:-1], True]
            self._last[code[ends]] = t[ends]
        return len(t)

    def _count(self, skipped: dict) -> None:
        for k, v in skipped.items():
            self.n[k] += v
        if skipped["late_samples"] and not self._late_logged:
            self._late_logged = True
            log.warning("%s: %d samples not newer than the last one sent for their series were left out "
                        "(Prometheus would refuse the whole request); counted in late_samples, logged once",
                        self.where, skipped["late_samples"])

    def close(self, timeout: float = 10.0) -> int:
        left = super().close(timeout)
        self._post.close()
        return left
