"""Gathering MQTT messages into one batch per flush: the waiting (:class:`Inbox`) and the columns.

The mqtt driver wakes on a message, then takes every message that arrives within ``linger``
seconds of it (those already queued first, without waiting) and yields their samples as one
:class:`~wattsight.sample.Batch`.  Samples are appended to three columns (series index, time,
value) as messages are parsed; the batch is built once per flush, not once per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sized

import numpy as np

from ..sample import Batch, Series


class Inbox:
    """The next message of an aiomqtt message iterator, waited for at most a given time.

    A wait that times out is not cancelled: the pending read carries over to the next call, so a
    message that arrives as the time runs out is kept for the next batch, never lost.
    """

    def __init__(self, messages: AsyncIterator) -> None:
        self.messages = messages
        self.pending: asyncio.Future | None = None

    def _queued(self) -> int:
        return len(self.messages) if isinstance(self.messages, Sized) else 0

    async def next(self, timeout: float | None = None):
        """The next message, or None when none came within ``timeout`` s (None: wait as long as it takes)."""
        if self.pending is None and self._queued():
            return await anext(self.messages)  # already queued: no wait
        if self.pending is None:
            if timeout is not None and timeout <= 0:
                return None
            self.pending = asyncio.ensure_future(anext(self.messages))
        done, _ = await asyncio.wait({self.pending}, timeout=timeout)
        if not done:
            return None
        read, self.pending = self.pending, None
        return read.result()  # the iterator's error (a lost connection) is raised here

    def close(self) -> None:
        """Give up the pending read (the connection is closing)."""
        if self.pending is not None:
            if self.pending.done() and not self.pending.cancelled():
                self.pending.exception()  # retrieved: the stream's own error is what is reported
            self.pending.cancel()
            self.pending = None


class Columns:
    """Samples of several messages as columns over a fixed series table, packed by :meth:`batch`."""

    def __init__(self, table: tuple[Series, ...]) -> None:
        self.table = table
        self.sidx: list[int] = []
        self.t: list[int] = []
        self.v: list[float] = []

    def add(self, sidx: int, t_ms: int, value: float) -> None:
        self.sidx.append(sidx)
        self.t.append(t_ms)
        self.v.append(float(value))

    def __len__(self) -> int:
        return len(self.t)

    def batch(self) -> Batch:
        """One batch of every sample added, in arrival order, naming only the series it holds."""
        if not self.t:
            return Batch.empty()
        whole = Batch(self.table, np.array(self.sidx, np.uint32), np.array(self.t, np.int64),
                      np.array(self.v, np.float64))
        return whole.select(np.ones(len(self.t), bool))
