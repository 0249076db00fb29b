"""The only place with threads and an event loop for drivers: schedule, time out, retry, restart.

Each polled driver gets its own single-thread executor and its own timer on a fixed grid
aligned on wall-clock multiples of its period (late ticks are skipped and counted, never
bunched), so a slow, hung or dead meter can only delay itself.  The rules:

- a read that raises :class:`~wattsight.errors.DriverError` (meter unreachable, bad
  reply...) is retried with exponential back-off (period x 2^n, capped);
- any other exception is a crash: the driver instance is closed and a new one is made,
  with the same back-off;
- a read that outlives its time-out is *hung*: its thread is abandoned (Python cannot
  kill it), a fresh executor and instance take over, with back-off.

State per driver (last success, last error, counts, restarts) is what ``state()`` returns
and the API shows.  Batches go to ``sink`` (the publisher) from the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import DriverError
from .sample import Batch, Probe, now_ms

log = logging.getLogger(__name__)


@dataclass
class DriverState:
    """What the runner knows of one driver; ``as_dict()`` is the API's shape."""

    driver: str
    type: str
    period: float
    status: str = "starting"
    last_success: int | None = None
    last_error: str | None = None
    last_error_at: int | None = None
    errors: int = 0
    timeouts: int = 0
    restarts: int = 0
    reads: int = 0
    samples: int = 0
    skipped_ticks: int = 0
    next_retry: int | None = None
    failures_in_row: int = field(default=0, repr=False)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("failures_in_row")
        return d


class Supervised:
    """One driver under the runner's care: its class, config, instance and state."""

    def __init__(self, name: str, cls, config, *, site: str, clock: Callable[[], int],
                 max_backoff: float) -> None:
        self.name, self.cls, self.config, self.site, self.clock = name, cls, config, site, clock
        self.max_backoff = max_backoff
        self.state = DriverState(name, config.type, config.period)
        self.instance = None
        self.executor = self._new_executor()
        self._reported: set[str] = set()

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(1, thread_name_prefix=f"driver-{self.name}")

    def make(self):
        if self.instance is None:
            self.instance = self.cls(self.config, site=self.site, clock=self.clock)
        return self.instance

    def discard(self, *, abandon_thread: bool = False) -> None:
        """Close the instance (in the background: close may hang too) and count a restart."""
        inst, self.instance = self.instance, None
        if abandon_thread:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._new_executor()
        if inst is not None:
            self.state.restarts += 1
            ThreadPoolExecutor(1).submit(_close_quietly, inst, self.name)

    def backoff(self) -> float:
        """Seconds to wait after the current run of failures (exponential, jittered, capped)."""
        n = self.state.failures_in_row
        base = max(self.config.period, 0.05) * (2 ** min(n - 1, 16))
        return min(self.max_backoff, base) * random.uniform(0.8, 1.0)

    def failed(self, status: str, message: str) -> float:
        s = self.state
        s.status, s.last_error, s.last_error_at = status, message, self.clock()
        s.errors += 1
        s.failures_in_row += 1
        if message not in self._reported:  # log each distinct error once, count the rest
            self._reported.add(message)
            log.warning("driver %s: %s (retrying with back-off)", self.name, message)
        delay = self.backoff()
        s.next_retry = self.clock() + int(delay * 1000)
        return delay

    def succeeded(self, batch: Batch, *, healthy: bool = True) -> None:
        """Count a good read; ``healthy`` ends a run of failures (and so the back-off)."""
        s = self.state
        s.status, s.last_success, s.next_retry = "ok", self.clock(), None
        s.reads += 1
        s.samples += len(batch)
        if healthy and s.failures_in_row:
            log.info("driver %s: reading again after %d failures", self.name, s.failures_in_row)
            s.failures_in_row = 0


def _close_quietly(inst, name: str) -> None:
    try:
        inst.close()
    except Exception as exc:  # runner boundary: a failing close must not stop a restart
        log.warning("driver %s: close failed: %s", name, exc)


class Runner:
    """Runs drivers: ``drivers`` maps a name to (driver class, validated config)."""

    def __init__(self, drivers: dict[str, tuple[type, object]], *, site: str,
                 sink: Callable[[Batch], None], clock: Callable[[], int] = now_ms,
                 max_backoff: float = 60.0) -> None:
        self.sink = sink
        self.drivers = {name: Supervised(name, cls, cfg, site=site, clock=clock, max_backoff=max_backoff)
                        for name, (cls, cfg) in drivers.items() if getattr(cfg, "enabled", True)}

    def state(self) -> list[dict]:
        return [d.state.as_dict() for d in self.drivers.values()]

    def probes(self) -> list[Probe]:
        """Probe metadata of every driver (drivers that cannot start give none)."""
        out: list[Probe] = []
        for d in self.drivers.values():
            try:
                out.extend(d.make().probes())
            except Exception as exc:  # runner boundary: reported in the driver's state
                d.state.last_error = f"{type(exc).__name__}: {exc}"
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Run every driver until ``stop`` is set, then close them."""
        tasks = [asyncio.create_task(self._stream(d, stop) if d.cls.push else self._poll(d, stop),
                                     name=f"driver-{d.name}") for d in self.drivers.values()]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for d in self.drivers.values():
                d.state.status = "stopped"
                if d.instance is not None:
                    _close_quietly(d.instance, d.name)
                d.executor.shutdown(wait=False, cancel_futures=True)

    async def _poll(self, d: Supervised, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        period = d.config.period
        # Ticks fall on wall-clock multiples of the period (as telegraf's round_interval), so
        # meters with the same period are read at the same instants, and tick k is start + k*period.
        start = loop.time() + (-d.clock() / 1000.0) % period
        if await _wait(stop, start - loop.time()):
            return
        tick = 0
        while not stop.is_set():
            delay = await self._read_once(d, loop)
            if delay:  # failure: wait out the back-off, then re-align on the grid
                if await _wait(stop, delay):
                    return
                tick = int((loop.time() - start) / period) + 1
            else:
                tick += 1
                late = int((loop.time() - start) / period) - tick + 1
                if late > 0:  # reads slower than the period: skip the ticks we missed
                    d.state.skipped_ticks += late
                    tick += late
            if await _wait(stop, start + tick * period - loop.time()):
                return

    async def _read_once(self, d: Supervised, loop) -> float:
        """One read; returns 0 on success or the back-off delay in seconds."""
        try:
            fut = loop.run_in_executor(d.executor, lambda: d.make().read())
            batch = await asyncio.wait_for(asyncio.shield(fut), d.config.read_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            d.state.timeouts += 1
            d.discard(abandon_thread=True)
            return d.failed("hung", f"read took longer than {d.config.read_timeout:g} s (time-out)")
        except DriverError as exc:
            return d.failed("error", str(exc))
        except Exception as exc:  # runner boundary: a crash restarts the driver
            d.discard()
            return d.failed("crashed", f"{type(exc).__name__}: {exc}")
        d.succeeded(batch)
        if len(batch):
            self.sink(batch)
        return 0.0

    async def _stream(self, d: Supervised, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                since = loop.time()
                async for batch in d.make().stream():
                    # A stream that breaks soon after each reconnect keeps backing off: it counts
                    # as healthy only once it has lasted as long as the longest back-off.
                    d.succeeded(batch, healthy=loop.time() - since >= d.max_backoff)
                    if len(batch):
                        self.sink(batch)
                    if stop.is_set():
                        return
                delay = d.failed("error", "the stream ended; reconnecting")
                d.discard()
            except asyncio.CancelledError:
                raise
            except DriverError as exc:
                delay = d.failed("error", str(exc))
                d.discard()
            except Exception as exc:  # runner boundary: a crash restarts the driver
                d.discard()
                delay = d.failed("crashed", f"{type(exc).__name__}: {exc}")
            if await _wait(stop, delay):
                return


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set meanwhile."""
    if seconds <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except (TimeoutError, asyncio.TimeoutError):
        return False

