"""The consumer contract: one verb, ``handle(batch, raw)``, called in the bus thread.

A consumer takes every batch the bus delivers.  ``handle`` runs in the bus thread for every
batch, so it must never wait on a network or a disk it does not own: consumers that feed
another system (:class:`SendingConsumer`: Prometheus remote_write, InfluxDB) only append the
batch to a bounded, counted backlog, and one thread of their own sends it
(:mod:`wattsight.consumers.sender`).

Each consumer class carries a typed ``Config`` (a pydantic model deriving from
:class:`ConsumerConfig`, validated once at start: a ``[consumers.<name>]`` section) and a
``SAMPLE`` (a commented TOML section that a test loads).  :func:`build_consumers` turns the
sections of a configuration into running consumers, through the ``wattsight.consumers``
entry points.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from ..config.explain import Issue, as_error, validate
from ..drivers.base import FilePath, from_config_folder
from ..errors import ConfigError, PluginError
from ..sample import Batch, now_ms
from .sender import Sender


class ConsumerConfig(BaseModel):
    """Settings every ``[consumers.<name>]`` section has; a consumer's own Config derives from this.

    Strict, like the drivers' configs: TOML has real numbers and booleans, a quoted one is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: str = Field(description="the consumer's name, as listed by `wattsight plugins`")
    enabled: bool = Field(True, description="false: the section is kept but the consumer is not started")

    @field_validator("*")
    @classmethod
    def _relative_paths(cls, value, info: ValidationInfo):
        """A relative path (``password_file``, ``ca_file``) is taken from the configuration file's folder."""
        return from_config_folder(value, info) if isinstance(value, Path) else value


class SenderConfig(ConsumerConfig):
    """Settings of consumers that send batches to a server over HTTP: batching, retries, backlog."""

    url: str = Field(description="the receiver's address, http(s)://host[:port]/path")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds one request may take")
    verify_tls: bool = Field(True, description="check the https certificate (false: accept any)")
    ca_file: FilePath | None = Field(None, description="PEM file of the CA or certificate to trust for https")
    metrics: list[str] = Field([], description='metrics to send, e.g. ["power", "energy"]; empty: all')
    batch_max: int = Field(10_000, ge=1, le=1_000_000, description="the most samples in one request")
    flush_interval: float = Field(1.0, gt=0, le=3600, description="seconds samples may wait to fill a "
                                                                  "request before it is sent")
    max_backlog: int = Field(1_000_000, ge=1, le=1_000_000_000,
                             description="the most samples kept while the receiver is down or slow; past "
                                         "it the oldest are dropped (and counted)")
    backoff_min: float = Field(0.5, gt=0, le=3600, description="seconds before the first retry; doubled "
                                                               "at each failure, with jitter")
    backoff_max: float = Field(30.0, gt=0, le=3600, description="seconds between retries, at most")

    def check_url(self) -> None:
        """Raise ValueError unless ``url`` is http(s)://host... without credentials in it."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"`url` {self.url!r} is not an http:// or https:// address")
        if parts.username is not None or parts.password is not None:
            raise ValueError("put the credentials in their own keys, not in `url` (it is logged)")
        if self.backoff_max < self.backoff_min:
            raise ValueError("`backoff_max` is below `backoff_min`")


def secret(config: BaseModel, key: str, where: str) -> str | None:
    """The value of secret ``key`` of ``config``, given inline (SecretStr) or in ``<key>_file``.

    The file's first line is the secret.  ``where`` names the section (``consumers.prom``) in
    the ConfigError raised when the file cannot be read; the secret itself is never in a message.
    """
    value: SecretStr | None = getattr(config, key)
    if value is not None:
        return value.get_secret_value()
    path: Path | None = getattr(config, f"{key}_file", None)
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {path}: {reason}", key=f"{where}.{key}_file",
                          hint="the file must be readable by wattsight (chmod 600, owned by its user)") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"{path} is empty", key=f"{where}.{key}_file", hint=f"put the {key} on its first line")
    return lines[0].strip()


class Consumer:
    """Base class of consumers: ``handle(batch, raw)``, ``stats()``, ``close(timeout)``."""

    Config: ClassVar[type[ConsumerConfig]] = ConsumerConfig
    SAMPLE: ClassVar[str] = ""

    def __init__(self, config: ConsumerConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 name: str = "") -> None:
        self.config, self.site, self.clock = config, site, clock
        self.name = name or config.type
        #: how this consumer is named in logs and errors: the config section it comes from
        self.where = f"consumers.{self.name}"

    def handle(self, batch: Batch, raw: bytes | None = None) -> None:  # pragma: no cover - contract
        """Take ``batch`` (in the bus thread: never wait on I/O here)."""
        raise NotImplementedError

    def stats(self) -> dict:
        return {}

    def close(self, timeout: float = 10.0) -> int:
        """Finish within ``timeout`` s; returns how many samples could not be delivered."""
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SendingConsumer(Consumer):
    """A consumer that sends batches elsewhere: ``handle`` queues, a :class:`Sender` thread sends.

    Subclasses implement ``send(batch) -> samples written`` (raising
    :class:`~wattsight.consumers.sender.SendFailed`) and may add counters to ``self.n``.
    """

    Config: ClassVar[type[ConsumerConfig]] = SenderConfig

    def __init__(self, config: SenderConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 name: str = "") -> None:
        super().__init__(config, site=site, clock=clock, name=name)
        self._wanted: dict = {}  # series -> sent (the metrics filter), filled lazily
        self.n: dict[str, int] = {"filtered_samples": 0}
        self.sender = Sender(f"{self.where} ({config.url.split('?')[0]})", self.send,
                             batch_max=config.batch_max, linger=config.flush_interval,
                             max_backlog=config.max_backlog, backoff_min=config.backoff_min,
                             backoff_max=config.backoff_max, request_timeout=config.timeout, clock=clock)

    def handle(self, batch: Batch, raw: bytes | None = None) -> None:
        """Queue ``batch`` for sending (the ``metrics`` filter applied); returns at once."""
        if self.config.metrics:
            keep = np.fromiter((self._keeps(s) for s in batch.series), bool, len(batch.series))
            if not keep.all():
                mask = keep[batch.sidx]
                self.n["filtered_samples"] += int(len(batch) - np.count_nonzero(mask))
                batch = batch.select(mask)
        self.sender.put(batch)

    def _keeps(self, series) -> bool:
        got = self._wanted.get(series)
        if got is None:
            got = self._wanted[series] = series.metric in self.config.metrics
        return got

    def send(self, batch: Batch) -> int | None:  # pragma: no cover - contract
        raise NotImplementedError

    def stats(self) -> dict:
        return {**self.sender.stats(), **self.n}

    def close(self, timeout: float = 10.0) -> int:
        """Send what waits for at most ``timeout`` s, then stop; returns (and logs) what was not sent."""
        return self.sender.close(timeout)


# -- from a configuration to running consumers ---------------------------------------------------
def consumer_class(type_: str, classes: dict | None = None):
    """The class registered as consumer ``type_`` (``classes`` first, then the entry points)."""
    from .. import plugins

    if classes and type_ in classes:
        return classes[type_]
    return plugins.load(type_, plugins.CONSUMERS)


def validate_section(name: str, section, issues: list, context: dict | None = None, *,
                     classes: dict | None = None) -> ConsumerConfig | None:
    """A ``[consumers.<name>]`` section validated with its plugin's Config, or None (``issues`` told).

    What ``config.load`` calls for each section, like drivers' sections.
    """
    from .. import plugins

    base = ("consumers", name)
    if isinstance(section, ConsumerConfig):
        return section
    if not isinstance(section, dict):
        issues.append(Issue(base, "is not a table", f"[consumers.{name}] with a type key"))
        return None
    known = sorted(set(plugins.names(plugins.CONSUMERS)) | set(classes or {}))
    if not isinstance(section.get("type"), str):
        problem = "missing" if "type" not in section else f"{section['type']!r} is not a string"
        issues.append(Issue(base + ("type",), problem, "the consumer's name, one of " + ", ".join(known)))
        return None
    try:
        cls = consumer_class(section["type"], classes)
    except PluginError as exc:
        close = difflib.get_close_matches(section["type"], known, n=1)
        issues.append(Issue(base + ("type",), str(exc) if section["type"] in known
                            else f"unknown consumer {section['type']!r}", "one of " + ", ".join(known),
                            f"did you mean {close[0]!r}?" if close else "`wattsight plugins` lists them"))
        return None
    model = getattr(cls, "Config", None)
    if not (isinstance(model, type) and issubclass(model, ConsumerConfig)):
        issues.append(Issue(base + ("type",), f"consumer {section['type']!r} is not configured here",
                            hint="the store is set in [store]" if section["type"] == "store" else None))
        return None
    return validate(model, section, base, issues, context or {})


def build_consumers(sections: dict, site: str, *, classes: dict | None = None,
                    clock: Callable[[], int] = now_ms) -> list[Consumer]:
    """Running consumers for the ``[consumers.<name>]`` sections (raw dicts or validated Configs).

    Every problem is gathered in one ConfigError naming ``consumers.<name>.<key>``.  Sections
    with ``enabled = false`` are skipped.  If one consumer cannot start, those started are closed.
    """
    issues: list[Issue] = []
    configs = {name: validate_section(name, section, issues, classes=classes) for name, section in sections.items()}
    if issues:
        raise as_error(issues, "", "")
    built: list[Consumer] = []
    try:
        for name, cfg in configs.items():
            if cfg.enabled:
                built.append(consumer_class(cfg.type, classes)(cfg, site=site, clock=clock, name=name))
    except BaseException:
        for c in built:
            c.close(timeout=0)
        raise
    return built
