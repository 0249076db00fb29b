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

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, Strict

from ..sample import Batch, Probe, now_ms


#: A file path in a driver's config: a TOML string is accepted (the config is otherwise strict,
#: so that a quoted number such as ``period = "1"`` is an error rather than a guess).
FilePath = Annotated[Path, Strict(False)]


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
