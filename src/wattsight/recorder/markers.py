"""Step markers from a command that ``wattsight record --steps`` runs: its output lines and a step file.

Two ways for a command to say "step X starts now":

* a line ``::wattsight-step X`` on its standard output or error (the recorder removes the line
  from what it passes on; the step starts when the line arrives, so flush after writing it);
* a line ``X`` appended to the file named by ``$WATTSIGHT_STEP_FILE``, which the command
  inherits (``echo X >> "$WATTSIGHT_STEP_FILE"``): nothing to flush, read within ~20 ms.

A step ends when the next starts, or when the command exits.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import BinaryIO

MARKER = re.compile(rb"^::wattsight-step[ \t]+(.+?)[ \t]*\r?\n?$")
#: Seconds between two looks at the step file.
FILE_POLL_S = 0.02


def marker(line: bytes) -> str | None:
    """The step name of a marker line, or None for any other line."""
    m = MARKER.match(line)
    return m.group(1).decode("utf-8", "replace") if m else None


def pump(source: BinaryIO, sink: BinaryIO, on_step: Callable[[str], None]) -> threading.Thread:
    """Copy ``source`` to ``sink`` line by line in a thread, calling ``on_step`` for marker lines."""

    def run() -> None:
        for line in iter(source.readline, b""):
            name = marker(line)
            if name is not None:
                on_step(name)
                continue
            sink.write(line)
            sink.flush()
        source.close()

    t = threading.Thread(target=run, name="wattsight-record-pump", daemon=True)
    t.start()
    return t


class StepFile:
    """Follows the step file: each new complete line is a step name, given to ``on_step`` in order."""

    def __init__(self, path: str, on_step: Callable[[str], None]) -> None:
        self.path, self.on_step = path, on_step
        self._offset, self._rest = 0, b""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wattsight-record-stepfile", daemon=True)

    def start(self) -> StepFile:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.wait(FILE_POLL_S):
            self.poll()

    def poll(self) -> None:
        """Read what was appended since the last look."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        for line in lines:
            name = line.decode("utf-8", "replace").strip()
            if name:
                self.on_step(name)

    def close(self) -> None:
        """Stop following; the lines written until now are read first."""
        self._done.set()
        self._thread.join()
        self.poll()
        if self._rest.strip():
            self.on_step(self._rest.decode("utf-8", "replace").strip())
            self._rest = b""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
