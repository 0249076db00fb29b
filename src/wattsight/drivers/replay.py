"""Play a recorded trace (CSV or Parquet) back as if a meter were read now.

The trace has one sample per row, in columns ``probe, metric, measured_at, value, unit``
and optionally ``kind`` and ``provenance``.  The first read fixes the start: the trace's
first row is due then, and a row ``d`` ms later in the trace is due ``d / speed`` ms later.
Each read returns every row that has come due since the last read, time-stamped with its
due time (or, with ``keep_time``, its original time).  With ``loop`` the trace starts over
one typical sample interval after its last row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from ..sample import Batch, Probe, now_ms
from .base import Driver, DriverConfig, FilePath, from_config_folder
from .replay_trace import Opener, Trace, load_trace, open_trace, rename_probe

__all__ = ["SAMPLE", "Opener", "ReplayConfig", "ReplayDriver", "Trace", "load_trace", "open_trace",
           "rename_probe"]


class ReplayConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "replay"``."""

    type: Literal["replay"] = "replay"
    path: FilePath = Field(description="the trace: a .csv (or .csv.gz) or .parquet file; "
                                   "relative to the configuration file's folder")
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="auto: from the file's suffix")
    speed: float = Field(1.0, gt=0, le=1e6, description="1: real time; 10: ten times faster")
    keep_time: bool = Field(False, description="keep the recorded timestamps instead of shifting them to now")
    loop: bool = Field(False, description="start over after the last row")
    time_unit: Literal["auto", "s", "ms"] = Field(
        "auto", description="unit of a numeric measured_at; auto: integers are ms, decimals are s")
    rewrite_site: str | None = Field(None, description="replace the site of every probe id with this one")
    prefix: str = Field("", description="put this before every probe's name (after the site)")

    @field_validator("path")
    @classmethod
    def _from_config_folder(cls, path: Path, info: ValidationInfo) -> Path:
        return from_config_folder(path, info)


SAMPLE = """\
# Play a recorded trace back: a .csv or .parquet file with columns
# probe, metric, measured_at, value, unit[, kind, provenance].
[drivers.replay]
type = "replay"
period = 1.0                  # s between reads; each read returns the rows come due since the last
path = "traces/rack-2024-05-01.csv"   # relative to this file's folder
speed = 10.0                  # 1 = real time, 10 = ten times faster
keep_time = false             # true: keep the recorded timestamps
loop = true                   # start over after the last row
time_unit = "auto"            # numeric measured_at: "auto" (integers ms, decimals s), "s" or "ms"
# rewrite_site = "lab"        # replace the site of every probe id
# prefix = "replay-"          # lyon.taurus-7 -> lyon.replay-taurus-7
"""


class ReplayDriver(Driver):
    """Plays a recorded CSV or Parquet trace back, sped up or looped (no hardware)."""

    Config = ReplayConfig
    SAMPLE = SAMPLE

    def __init__(self, config: ReplayConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 opener: Opener = open_trace) -> None:
        super().__init__(config, site=site, clock=clock)
        self.opener = opener
        self._trace: Trace | None = None
        self._start: int | None = None  # clock time of the first read
        self._lap = 0
        self._next = 0  # first row of the current lap not yet returned

    def trace(self) -> Trace:
        """The trace, read from the file the first time it is needed."""
        if self._trace is None:
            cfg = self.config
            fallback = max(1, round(cfg.period * 1000 * cfg.speed))
            self._trace = load_trace(cfg.path, cfg.format, time_unit=cfg.time_unit, site=self.site,
                                     new_site=cfg.rewrite_site, prefix=cfg.prefix, fallback_step_ms=fallback,
                                     opener=self.opener)
        return self._trace

    @property
    def done(self) -> bool:
        """True once every row was returned and the trace does not loop."""
        return (self._trace is not None and not self.config.loop and self._next >= len(self._trace))

    def probes(self) -> list[Probe]:
        cfg, series = self.config, self.trace().series
        text = f"replayed from {cfg.path.name} (x{cfg.speed:g}{', looped' if cfg.loop else ''})"
        ids = dict.fromkeys(s.probe for s in series)
        return [Probe(pid, driver=cfg.type, period=cfg.period, description=text) for pid in ids]

    def read(self) -> Batch:
        trace, cfg = self.trace(), self.config
        now = int(self.clock())
        if self._start is None:
            self._start = now
        parts = self._advance((now - self._start) * cfg.speed)
        if not parts:
            return Batch.empty()
        rows = np.concatenate([np.arange(a, b) for _, a, b in parts])
        shift = np.concatenate([np.full(b - a, lap * trace.lap_ms, np.int64) for lap, a, b in parts])
        if cfg.keep_time:
            t = trace.t[rows] + shift
        else:
            t = self._start + np.floor((trace.rel[rows] + shift) / cfg.speed).astype(np.int64)
        batch = Batch(trace.series, trace.sidx[rows], t, trace.v[rows])
        return batch if len(trace.series) == 1 else batch.select(np.ones(len(rows), bool))

    def _advance(self, played: float) -> list[tuple[int, int, int]]:
        """(lap, first row, end row) of the rows come due once ``played`` trace ms have been played."""
        trace, parts = self._trace, []
        while True:
            end = int(np.searchsorted(trace.rel, played - self._lap * trace.lap_ms, side="right"))
            if end > self._next:
                parts.append((self._lap, self._next, end))
                self._next = end
            if end < len(trace) or not self.config.loop:
                return parts
            self._lap, self._next = self._lap + 1, 0
