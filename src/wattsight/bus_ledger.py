"""The highest message number stored from each bus source, kept on disk across restarts.

A subscriber learns what it lost from the gaps in each source's numbering -- but only while
it runs.  Messages a publisher sends while the store is down (a crash, an upgrade, a host
restart with the drivers elsewhere) would otherwise vanish without a trace: the restarted
subscriber takes the first number it sees as its start.  The ledger remembers, per source,
the last number whose batch the consumers acknowledged, so the first message after a
restart shows the gap, and the gap is counted as lost (``bus.lost`` in /api/v1/health and
``wattsight_bus_lost_messages_total``) and logged with the source.

Format: an append-only text file, one ``<seq> <key>`` line per acknowledged message (a
``write()`` without ``fsync``: it survives ``kill -9`` like the store's log; after a power
loss the gap may be counted one message too large, never too small).  It is rewritten with
one line per live source when it passes :attr:`Ledger.MAX_BYTES`, dropping sources silent
for longer than ``forget_after``.

Written by hand: it is 80 lines of append and rename, which no library would make shorter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


class Ledger:
    """Per-source highest acknowledged message numbers, appended to ``path``."""

    MAX_BYTES = 4 << 20

    def __init__(self, path: Path, *, forget_after: float = 7 * 86400.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path, self.forget_after, self.clock = Path(path), forget_after, clock
        self.highest: dict[str, int] = {}
        self.seen: dict[str, float] = {}
        self.torn = 0
        self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _load(self) -> None:
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return
        now = self.clock()
        for line in text.split("\n"):
            seq, _, key = line.partition(" ")
            if not key or not seq.isdigit():
                self.torn += bool(line)  # a line cut by a crash: its message is counted as lost
                continue
            self.highest[key] = max(int(seq), self.highest.get(key, 0))
            self.seen[key] = now

    def record(self, key: str, seq: int) -> None:
        """Note that the message ``seq`` of source ``key`` is acknowledged by every consumer."""
        if seq <= self.highest.get(key, 0):
            return  # a re-ordered message below the mark: the mark already covers it
        self.highest[key] = seq
        self.seen[key] = self.clock()
        line = f"{seq} {key}\n".encode()
        self._size += os.write(self._fd, line)
        if self._size > self.MAX_BYTES:
            self._rewrite()

    def _rewrite(self) -> None:
        floor = self.clock() - self.forget_after
        for key in [k for k, t in self.seen.items() if t < floor]:
            del self.highest[key], self.seen[key]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"{s} {k}\n" for k, s in self.highest.items()))
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
