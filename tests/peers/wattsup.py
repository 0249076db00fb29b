"""A Watts Up? Pro meter on a pseudo-terminal pair: socat makes the pair, a thread plays the meter.

``socat pty,raw,echo=0,link=<device> pty,raw,echo=0,link=<meter end>`` joins two ptys; the driver
opens ``device``, the simulator the other end.  Like the real meter, the simulator answers the
header request (``#H,R,0;``) and, after the start-logging command (``#L,W,3,E,,<s>;``), writes a
``#d,...;`` record every ``s`` seconds (or every ``record_every`` s, to keep tests short), with
the power in ``self.power`` (W, settable at any time) and the energy it integrates.

``stop()`` kills socat (the meter unplugged: both links vanish and the driver's reads fail) and
``start()`` makes the same paths again.  Use it as a context manager or call start()/stop()::

    with WattsUpMeter(tmp_path, power=120.0, record_every=0.05) as meter:
        ... open meter.device ...
        meter.power = 250.0
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

from ._common import PeerMissing, stop_process, wait_until

HEADER = "#h,-,18,W,V,A,WH,Cost,WH/Mo,Cost/Mo,Wmax,Vmax,Amax,Wmin,Vmin,Amin,PF,DC,PC,Hz,VA;"


class WattsUpMeter:
    """A simulated Watts Up? Pro behind a socat pty pair; ``device`` is the path the driver opens."""

    def __init__(self, folder: Path, *, power: float = 100.0, volts: float = 230.0, pf: float = 0.95,
                 record_every: float | None = None, respond: bool = True, name: str = "wattsup") -> None:
        self.folder = Path(folder)
        self.device = self.folder / name
        self.meter_end = self.folder / f"{name}-meter"
        self.power, self.volts, self.pf = power, volts, pf
        self.record_every = record_every   # s between records; None: the interval asked for
        self.respond = respond             # False: a meter that ignores every command
        self.energy_wh = 0.0
        self.records = 0                   # records written since the last start()
        self.commands: list[str] = []      # commands received since the last start()
        self.requested_interval: int | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._fd: int | None = None

    # -- life -------------------------------------------------------------------------------
    def start(self) -> WattsUpMeter:
        socat = shutil.which("socat")
        if socat is None:
            raise PeerMissing("socat is not installed (Debian package socat)")
        self.folder.mkdir(parents=True, exist_ok=True)
        for link in (self.device, self.meter_end):
            if link.is_symlink():
                link.unlink()
        self._proc = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.meter_end}", f"pty,raw,echo=0,link={self.device}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        proc = self._proc
        wait_until(lambda: self.device.exists() and self.meter_end.exists(), 10,
                   f"socat's pty pair in {self.folder}", proc, every=0.01,
                   output=lambda: proc.stderr.read().decode(errors="replace") if proc.poll() is not None else "", cleanup=self.stop)
        self._fd = os.open(self.meter_end, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.records, self.commands, self.requested_interval = 0, [], None
        self._halt.clear()
        self._thread = threading.Thread(target=self._play, name="wattsup-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unplug the meter: socat ends, both links vanish, the driver's port fails."""
        self._halt.set()
        if self._proc is not None:
            stop_process(self._proc, 10)
            self._proc.stderr.close()
            self._proc = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- what the meter says ----------------------------------------------------------------
    def record(self, seconds: float) -> bytes:
        """The next ``#d`` record, after ``seconds`` at ``self.power`` (energy grows by it)."""
        watts = self.power
        self.energy_wh += watts * seconds / 3600.0
        va = watts / self.pf
        amps = va / self.volts
        w, v, a = round(watts * 10), round(self.volts * 10), round(amps * 1000)
        fields = [w, v, a, round(self.energy_wh * 10), "_", "_", "_", w, v, a, w, v, a,
                  round(self.pf * 100), 100, 1, 500, round(va * 10)]
        return ("#d,-,18," + ",".join(map(str, fields)) + ";").encode("ascii")

    def inject(self, data: bytes) -> None:
        """Write raw bytes on the line (malformed records, noise)."""
        self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except BlockingIOError:
            pass  # nobody reads the other end: the bytes are lost, as on the real line

    def _play(self) -> None:
        """Answer commands and write a record whenever one is due, until stop()."""
        buffer, due, every = "", None, None
        fd = self._fd
        while not self._halt.is_set():
            wait = 0.2 if due is None else min(max(due - time.monotonic(), 0.0), 0.2)
            try:
                readable, _, _ = select.select([fd], [], [], wait)
                data = os.read(fd, 1024) if readable else b""
            except (OSError, ValueError):  # socat gone: the line is dead
                return
            buffer += data.decode("ascii", "replace")
            while ";" in buffer:
                command, buffer = buffer.split(";", 1)
                command = command[command.rfind("#"):] + ";" if "#" in command else ""
                if not command:
                    continue
                self.commands.append(command)
                if not self.respond:
                    continue
                if command == "#H,R,0;":
                    self._write(HEADER.encode("ascii"))
                elif command.startswith("#L,W,3,E,"):
                    self.requested_interval = int(command.strip("#;").split(",")[-1])
                    every = self.record_every or float(self.requested_interval)
                    due = time.monotonic() + every
                elif command.startswith("#L,W,0"):
                    due = None
            if due is not None and time.monotonic() >= due:
                self._write(self.record(every))
                self.records += 1
                due += every
