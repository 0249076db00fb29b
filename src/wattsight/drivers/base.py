"""The driver contract: one verb.

A *polled* driver implements ``read() -> Batch``; a meter that *pushes* (a serial line, an
MQTT topic) implements ``async stream()`` yielding batches.  Drivers never sleep, loop,
retry or start threads: scheduling, time-outs, retries with back-off and restarts belong
to :mod:`wattsight.runner`.

Each driver class carries a typed ``Config`` (a pydantic model deriving from
:class:`DriverConfig`), validated once at start, and a ``SAMPLE`` string: a commented TOML
section that ``wattsight config sample`` prints and a test loads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationInfo

from ..sample import Batch, Probe, check_probe_id, now_ms

#: A file path in a driver's config: a TOML string is accepted (the config is otherwise strict,
#: so that a quoted number such as ``period = "1"`` is an error rather than a guess).
FilePath = Annotated[Path, Strict(False)]


def site_probe(name: str, site: str) -> str:
    """A probe name from a config as a probe id: ``<site>.`` put before a name that has no site;
    checked (ValueError if it is not a valid id)."""
    return check_probe_id(name if "." in name else f"{site}.{name}")


def iso_ms(text: str) -> int:
    """ms since the epoch of an ISO 8601 time, rounded; one without a zone is taken as UTC.
    ValueError if ``text`` is not one (TypeError if it is not a string)."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return round(when.timestamp() * 1000)


def from_config_folder(path: Path | None, info: ValidationInfo) -> Path | None:
    """For a path field's validator: a relative path in a file is taken from the file's folder (the
    loader passes it as the ``base`` of the validation context), ``~`` is expanded; None stays None."""
    if path is None:
        return None
    base = (info.context or {}).get("base")
    path = path.expanduser()
    return Path(base) / path if base is not None and not path.is_absolute() else path


class DriverConfig(BaseModel):
    """Settings every driver section has; a driver's own Config derives from this.

    Strict: TOML has real numbers and booleans, so a quoted one is refused.  Use
    :data:`FilePath` for paths.  ``wattsight probe`` validates with ``strict=False`` as its
    options arrive as strings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: str = Field(description="the driver's name, as listed by `wattsight plugins`")
    period: float = Field(1.0, ge=0.02, le=86400, description="seconds between reads (0.02 = 50 Hz)")
    timeout: float | None = Field(None, gt=0, description="seconds a read may take; default: the period, at least 1 s")
    enabled: bool = True

    @property
    def read_timeout(self) -> float:
        return self.timeout if self.timeout is not None else max(self.period, 1.0)


class Driver:
    """Base class of drivers (subclassing it is a convenience, not a requirement)."""

    Config: ClassVar[type[DriverConfig]] = DriverConfig
    SAMPLE: ClassVar[str] = ""
    #: True for meters that push: the driver implements ``stream()`` instead of ``read()``.
    push: ClassVar[bool] = False

    def __init__(self, config: DriverConfig, *, site: str, clock: Callable[[], int] = now_ms) -> None:
        self.config = config
        self.site = site
        self.clock = clock

    def probes(self) -> list[Probe]:
        """The probes this driver feeds (metadata; values come from ``read``)."""
        return []

    def read(self) -> Batch:  # pragma: no cover - contract
        raise NotImplementedError

    async def stream(self) -> AsyncIterator[Batch]:  # pragma: no cover - contract
        raise NotImplementedError
        yield

    def close(self) -> None:
        """Release connections; called by the runner before a restart or at shutdown."""
