"""Runs a push driver's ``stream()`` in a test and keeps what it yields (the mqtt and serial tests)."""

from __future__ import annotations

import asyncio
import time

from wattsight.errors import DriverError


class Collector:
    """Runs a driver's stream on the current event loop and keeps its samples (or its error)."""

    def __init__(self, driver) -> None:
        self.driver, self.samples, self.error = driver, [], None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for batch in self.driver.stream():
                self.samples.extend(batch.samples())
        except DriverError as exc:
            self.error = exc

    async def until(self, predicate, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.task.done():
                raise AssertionError(f"{what}: the stream ended ({self.error!r}); got {self.samples[-8:]}")
            await asyncio.sleep(0.01)
        raise AssertionError(f"{what}: not after {timeout} s; got {self.samples[-8:]}")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
