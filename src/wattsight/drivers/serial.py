"""wattsight driver for Watts Up? Pro meters on a serial line: the records the meter pushes.

On open the driver flushes what the line holds, asks for the field header (``#H,R,0;``) and
starts external logging (``#L,W,3,E,,<interval>;``); the meter then writes one ``#d,...;``
record every ``interval`` seconds.  Each record becomes power (W), energy (J, a counter), and
voltage, current, power factor, frequency and apparent power where the meter reports them.
A record is stamped when it arrives: the meter has no clock worth reading.

The line is read without a thread: the port's file descriptor is watched by the runner's
event loop.  A vanished port (the USB cable pulled) ends the stream with MeterUnreachable, and
the runner's restart opens it again once it is back.  Malformed records are counted; the
first is logged, and ``max_bad_records`` in a row end the stream with MeterReplyError.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ..errors import MeterPermissionError, MeterReplyError, MeterUnreachable, MissingDependency
from ..sample import Batch, Probe, Series, now_ms
from .base import Driver, DriverConfig, site_probe

try:  # POSIX only; imported up front, as a process that has dropped privileges may not load them later
    import grp
    import pwd
except ImportError:  # pragma: no cover - not POSIX
    grp = pwd = None

log = logging.getLogger(__name__)

SAMPLE = """\
# A Watts Up? Pro (or .net) meter on a USB serial line: it pushes one record per interval.
[drivers.wattsup]
type = "serial"
device = "/dev/ttyUSB0"       # the meter's serial port (a /dev/serial/by-id/... path survives re-plugging)
baud = 115200                 # bit/s; the Watts Up? Pro speaks 115200 8N1
probe = "desk-1"              # probe id; a name without a dot gets "<site>." in front
interval = 1                  # s between the meter's records (whole seconds, 1 to 3600)
max_bad_records = 5           # this many malformed records in a row end the stream (MeterReplyError)
# timeout = 5.0               # s without any record before the meter counts as unreachable;
#                             # default: 3 x interval + 2
"""

#: The fields of a ``#d`` record, in the order of the meter's header (``#h``).
HEADER = ("W", "V", "A", "WH", "Cost", "WH/Mo", "Cost/Mo", "Wmax", "Vmax", "Amax", "Wmin", "Vmin", "Amin",
          "PF", "DC", "PC", "Hz", "VA")
#: Field -> (metric, SI unit, kind, multiplier, divisor): SI value = raw * multiplier / divisor
#: (a division, so that 1234 tenths of W read 123.4 W exactly, not 123.40000000000001).
FIELDS: dict[str, tuple[str, str, str, int, int]] = {
    "W": ("power", "W", "gauge", 1, 10),               # tenths of W
    "WH": ("energy", "J", "counter", 360, 1),          # tenths of Wh (x 3600 J/Wh), since the meter's reset
    "V": ("voltage", "V", "gauge", 1, 10),             # tenths of V
    "A": ("current", "A", "gauge", 1, 1000),           # mA
    "PF": ("power_factor", "1", "gauge", 1, 100),      # %
    "Hz": ("frequency", "Hz", "gauge", 1, 10),         # tenths of Hz
    "VA": ("apparent_power", "VA", "gauge", 1, 10),    # tenths of VA
}
MAX_PACKET = 512  # characters between '#' and ';'; longer is noise


class WattsUpConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "serial"``."""

    type: Literal["serial"] = "serial"
    device: str = Field(description="the meter's serial port, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baud: int = Field(115200, gt=0, description="bit/s of the line (the Watts Up? Pro: 115200)")
    probe: str = Field(description="the probe id; a name without a dot gets '<site>.' in front")
    interval: int = Field(1, ge=1, le=3600, description="s between the meter's records (whole seconds)")
    max_bad_records: int = Field(5, ge=1, description="malformed records in a row that end the stream "
                                                      "with MeterReplyError")

    @field_validator("probe")
    @classmethod
    def _probe(cls, name: str) -> str:
        site_probe(name, "site")
        return name


def open_serial(device: str, baud: int):
    """Open ``device`` as a raw, non-blocking serial port (pyserial); the driver's only I/O seam."""
    try:
        import serial
    except ImportError:
        raise MissingDependency("pyserial", "serial", "the serial (Watts Up?) driver") from None
    return serial.Serial(device, baud, timeout=0, write_timeout=1, exclusive=True)


def split_packets(buffer: str) -> tuple[list[tuple[str, bool]], str]:
    """The ``#...;`` packets in ``buffer`` as (text, complete), and the unfinished rest.

    Characters outside ``#...;`` are ignored (the protocol's rule).  A packet cut by a new
    ``#`` (the meter resynchronising) or longer than MAX_PACKET is returned as incomplete.
    """
    out: list[tuple[str, bool]] = []
    start = buffer.find("#")
    while start >= 0:
        end = buffer.find(";", start)
        cut = buffer.find("#", start + 1)
        if end < 0 and cut < 0:
            rest = buffer[start:]
            if len(rest) > MAX_PACKET:
                out.append((rest[:80], False))
                return out, ""
            return out, rest
        if cut >= 0 and (end < 0 or cut < end):
            out.append((buffer[start:cut], False))
            start = cut
            continue
        out.append((buffer[start:end + 1], True))
        start = buffer.find("#", end + 1)
    return out, ""


def parse_record(packet: str, header: tuple[str, ...] = HEADER) -> dict[str, float]:
    """The fields of one ``#d,<flag>,<n>,<v1>,...,<vn>;`` record in SI units; ValueError if malformed."""
    parts = packet.strip("#;").split(",")
    if len(parts) < 3 or parts[0] != "d":
        raise ValueError("not a data record")
    try:
        n = int(parts[2])
    except ValueError:
        raise ValueError(f"field count {parts[2]!r} is not a number") from None
    values = parts[3:]
    if n != len(values) or n < 1:
        raise ValueError(f"announces {n} fields but has {len(values)}")
    out: dict[str, float] = {}
    for name, text in zip(header, values):
        if name not in FIELDS or text in ("_", "-", ""):
            continue  # a field the meter does not report
        try:
            raw = int(text)
        except ValueError:
            raise ValueError(f"field {name} = {text!r} is not an integer") from None
        if raw < 0:
            raise ValueError(f"field {name} = {raw} is negative")
        _, _, _, mul, div = FIELDS[name]
        out[name] = raw * mul / div
    if "W" not in out:
        raise ValueError("no power field (W)")
    return out


class WattsUpDriver(Driver):
    """Watts Up? Pro meters on a serial line: power and energy pushed at each interval."""

    Config = WattsUpConfig
    SAMPLE = SAMPLE
    push = True

    def __init__(self, config: WattsUpConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 open_port: Callable[[str, int], object] = open_serial) -> None:
        super().__init__(config, site=site, clock=clock)
        self.open_port = open_port
        self.probe_id = site_probe(config.probe, site)
        self.series = {f: Series(self.probe_id, m, u, k) for f, (m, u, k, _, _) in FIELDS.items()}
        self.header = HEADER
        self.bad_records = 0      # malformed records since this instance opened the port
        self.bad_in_row = 0
        self._port = None

    @property
    def where(self) -> str:
        """The device and probe, for error messages."""
        return f"{self.config.device} ({self.probe_id})"

    @property
    def silence(self) -> float:
        """s without a record before the meter counts as unreachable."""
        cfg = self.config
        return cfg.timeout if cfg.timeout is not None else 3.0 * cfg.interval + 2.0

    def probes(self) -> list[Probe]:
        cfg = self.config
        return [Probe(self.probe_id, driver=cfg.type, period=float(cfg.interval),
                      description=f"Watts Up? meter on {cfg.device}")]

    # -- the stream -------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[Batch]:
        port = self._open()
        loop = asyncio.get_running_loop()
        buffer = ""
        try:
            self._start_logging(port)
            deadline = loop.time() + self.silence
            while True:
                chunk = await self._read_some(port, loop, deadline)
                t = int(self.clock())
                packets, buffer = split_packets(buffer + chunk.decode("ascii", "replace"))
                if packets:
                    deadline = loop.time() + self.silence
                parts, failure = [], None
                for text, complete in packets:
                    try:
                        parts.append(self._packet(text, complete, t))
                    except MeterReplyError as exc:  # too many bad ones: still publish the good ones before
                        failure = exc
                        break
                batch = Batch.concat(parts)
                if len(batch):
                    yield batch
                if failure is not None:
                    raise failure
        finally:
            self.close()

    def _open(self):
        cfg = self.config
        try:
            port = self.open_port(cfg.device, cfg.baud)
        except OSError as exc:  # pyserial's SerialException is an OSError
            raise self._open_error(exc) from None
        self._port = port
        return port

    def _open_error(self, exc: OSError) -> Exception:
        code = exc.errno
        if code in (errno.EACCES, errno.EPERM):
            return MeterPermissionError(
                f"permission denied opening the port{_owner(self.config.device)}: add this user to the "
                "group that owns it (usually dialout: sudo usermod -aG dialout $USER, then log in again) "
                "or add a udev rule giving it access", probe=self.where)
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            return MeterUnreachable("no such device: is the meter plugged in and switched on, and is "
                                    "`device` right? (ls /dev/serial/by-id/)", probe=self.where)
        if code in (errno.EBUSY, errno.EAGAIN):
            return MeterUnreachable("the port is in use by another program (another wattsight, "
                                    "ModemManager, screen...): close it", probe=self.where)
        return MeterUnreachable(f"cannot open the port ({exc}); is it the meter's serial port?",
                                probe=self.where)

    def _start_logging(self, port) -> None:
        """Drop stale bytes, then ask for the header and for a record every ``interval`` s."""
        try:
            port.reset_input_buffer()
            port.write(f"#H,R,0;#L,W,3,E,,{self.config.interval};".encode("ascii"))
        except OSError as exc:
            raise MeterUnreachable(f"cannot write the start command ({exc}); was the meter unplugged?",
                                   probe=self.where) from None

    async def _read_some(self, port, loop: asyncio.AbstractEventLoop, deadline: float) -> bytes:
        """The bytes waiting on the line, once there are some; MeterUnreachable after a silence."""
        ready = loop.create_future()
        fd = port.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, max(deadline - loop.time(), 0.0))
        except TimeoutError:
            raise MeterUnreachable(
                f"no record for {self.silence:g} s: is the meter switched on and plugged into this port? "
                "(a meter busy with its own memory logging ignores the start command: reset it)",
                probe=self.where) from None
        finally:
            loop.remove_reader(fd)
        try:
            return port.read(4096)
        except OSError as exc:
            raise MeterUnreachable(f"the port vanished ({exc}): was the meter unplugged? It is opened "
                                   "again when it is back", probe=self.where) from None

    def _packet(self, text: str, complete: bool, t_ms: int) -> Batch:
        """The samples of one packet; a malformed record is counted and may end the stream."""
        if complete and text.startswith("#h,"):
            self.header = tuple(text.strip("#;").split(",")[3:]) or HEADER
            return Batch.empty()
        if complete and not text.startswith("#d,"):
            return Batch.empty()  # the meter's answer to another command
        try:
            if not complete:
                raise ValueError("cut short (no ';' before the next '#')")
            fields = parse_record(text, self.header)
        except ValueError as exc:
            self._bad(text, str(exc))
            return Batch.empty()
        self.bad_in_row = 0
        series = [self.series[f] for f in fields]
        n = len(series)
        return Batch(tuple(series), np.arange(n, dtype=np.uint32), np.full(n, t_ms, dtype=np.int64),
                     np.fromiter(fields.values(), np.float64, n))

    def _bad(self, text: str, reason: str) -> None:
        self.bad_records += 1
        self.bad_in_row += 1
        shown = text[:80] + ("..." if len(text) > 80 else "")
        if self.bad_in_row >= self.config.max_bad_records:
            raise MeterReplyError(
                f"{self.bad_in_row} malformed records in a row (the last: {shown!r}: {reason}); expected "
                "'#d,-,18,<W>,<V>,<A>,<WH>,...;'. Is `baud` right (the Watts Up? Pro: 115200), and is it "
                "a Watts Up? meter?", probe=self.where)
        if self.bad_records == 1:
            log.warning("%s: malformed record %r (%s): skipped; more are counted, and %d in a row end the "
                        "stream", self.where, shown, reason, self.config.max_bad_records)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()
            if self.bad_records > 1:
                log.warning("%s: %d malformed records skipped since the port was opened", self.where,
                            self.bad_records)


def _owner(device: str) -> str:
    """' (owned by user:group, mode 0660)' for the device, or '' if it cannot be seen."""
    if grp is None or pwd is None:
        return ""
    try:
        st = os.stat(device)
        user = pwd.getpwuid(st.st_uid).pw_name
        group = grp.getgrgid(st.st_gid).gr_name
    except (OSError, KeyError):
        return ""
    return f" (owned by {user}:{group}, mode {stat.S_IMODE(st.st_mode):04o})"

