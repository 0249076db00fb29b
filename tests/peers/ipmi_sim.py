"""A real IPMI BMC for the tests and benches: OpenIPMI's ``ipmi_sim`` on 127.0.0.1.

``IpmiSim`` writes a ``lan.conf`` (a LAN channel on a free UDP port, a user at admin
privilege and ``reader`` at user privilege with the same password, a TCP console) and an ``.emu`` file (one BMC, its power sensors and an inlet
temperature sensor), compiles the sensors' SDRs with ``sdrcomp`` and starts
``ipmi_sim -n -c lan.conf -f bmc.emu -s <fresh state dir>``.  The templates are in ``ipmi/``.

Power sensors are threshold sensors of type Current (0x03) whose unit is Watts, with M = 4:
the raw byte 0..255 reads 0..1020 W in 4 W steps.  :meth:`IpmiSim.set_power` changes them at
run time through the console (``sensor_set_value 0x20 0 <num> <raw> 0``).

DCMI: stock ipmi_sim has no DCMI handler.  With ``dcmi=True`` the simulator loads a small C
plugin (``ipmi/dcmi_power.c``, built here with gcc against the libopenipmi-dev headers into a
cache folder, never committed as a binary) that answers DCMI Get Power Reading with the power
written in a file; :meth:`IpmiSim.set_power` rewrites it.

Usable from pytest fixtures and bench scripts alike::

    with IpmiSim(tmp_path) as bmc:
        bmc.set_power(300)
        ... host 127.0.0.1, port bmc.port, username bmc.username, password bmc.password ...
        bmc.stop(); bmc.start()          # the same port again

``start_many(root, 10)`` starts ten of them (a rack): each has its own ports and product id.

Two traps met on the way: ipmi_sim dies of SIGPIPE when a console client closes under it (see
:meth:`IpmiSim.command`), and pyghmi shares SDRs between the BMCs of one process that report
the same ids, firmware and SDR time stamp (so every simulated BMC reports its port as product id).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from . import _common
from ._common import stop_process, wait_until

HERE = Path(__file__).parent / "ipmi"
PLUGIN_SOURCE = HERE / "dcmi_power.c"
#: Watts per raw step of the power sensors (their SDR's M).
M = 4
BMC = 0x20
FIRST_POWER_SENSOR = 2
TEMP_SENSOR = 1
#: A second user, with the same password, whose privilege is only "user".
READER = "reader"


def missing() -> str | None:
    """Why no simulated BMC can run here (a missing program), or None."""
    for prog, package in (("ipmi_sim", "openipmi"), ("sdrcomp", "openipmi"), ("ipmitool", "ipmitool")):
        if shutil.which(prog) is None:
            return f"{prog} is not installed (Debian package {package})"
    return None


def dcmi_missing() -> str | None:
    """Why the DCMI plugin cannot be built here, or None."""
    try:
        dcmi_plugin()
    except PeerError as exc:
        return str(exc)
    return None


#: Simulators running in this process: stopped at exit if a test or bench forgot one.
RUNNING: set = set()
atexit.register(lambda: [sim.stop() for sim in list(RUNNING)])


class PeerError(RuntimeError):
    """The simulated BMC could not be set up or driven."""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A free port of 127.0.0.1, UDP unless ``kind`` says otherwise (the BMC's LAN channel is UDP)."""
    return _common.free_port(kind)


def dcmi_plugin(cache: Path | None = None) -> Path:
    """The DCMI plugin, compiled once per source version into a cache folder."""
    source = PLUGIN_SOURCE.read_bytes()
    cache = cache or Path(tempfile.gettempdir()) / f"wattsight-ipmi-sim-{os.getuid()}"
    lib = cache / f"dcmi_power-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if lib.exists():
        return lib
    if shutil.which("gcc") is None:
        raise PeerError("gcc is not installed: cannot build the DCMI plugin for ipmi_sim")
    if not Path("/usr/include/OpenIPMI/mcserv.h").exists():
        raise PeerError("/usr/include/OpenIPMI/mcserv.h is missing (Debian package libopenipmi-dev): "
                        "cannot build the DCMI plugin for ipmi_sim")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(PLUGIN_SOURCE)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise PeerError(f"gcc could not build the DCMI plugin: {done.stderr.strip()}")
    tmp.replace(lib)  # atomic: parallel builders race harmlessly
    return lib


# -- the configuration files ----------------------------------------------------------------
def lan_conf(port: int, console: int, username: str, password: str, plugin: str | None) -> str:
    """ipmi_sim's configuration: the LAN channel, the users, the console, the DCMI plugin."""
    return (HERE / "lan.conf.in").read_text().format(port=port, console=console, username=username,
                                                      reader=READER, password=password, plugin=plugin or "")


def sdrs(power_sensors: tuple[str, ...]) -> str:
    """The SDR source (sdrcomp's language): the BMC, the inlet temperature, the power sensors."""
    sensor = (HERE / "sensor.sdrs.in").read_text()
    parts = [(HERE / "bmc.sdrs.in").read_text(),
             sensor.format(number=TEMP_SENSOR, entity="system_board", instance=1, type="Temperature",
                           unit="degrees_C", m=1, name="Inlet Temp")]
    for i, name in enumerate(power_sensors):
        parts.append(sensor.format(number=FIRST_POWER_SENSOR + i, entity="power_supply", instance=i + 1,
                                   type="Current", unit="Watts", m=M, name=name))
    return "\n".join(parts)


def compile_sdrs(source: str, workdir: Path) -> list[bytes]:
    """Compile SDR source with ``sdrcomp -r`` and split the raw output into records."""
    path = workdir / "bmc.sdrs"
    path.write_text(source)
    done = subprocess.run(["sdrcomp", "-r", str(path)], capture_output=True, check=False)
    if done.returncode:
        raise PeerError(f"sdrcomp failed on {path}: {done.stderr.decode(errors='replace').strip()}")
    raw, records, i = done.stdout, [], 0
    while i < len(raw):
        n = 5 + raw[i + 4]  # 5-byte header, then the record's length
        records.append(raw[i:i + n])
        i += n
    return records


def emu(records: list[bytes], raws: list[int], product: int = 0xF02, temp: int = 24) -> str:
    """The emulator commands: the BMC, its SDRs, its sensors with their first raw values.

    ``product`` is the BMC's product id: pyghmi shares SDRs between the BMCs of one process
    that have the same ids, firmware and SDR time, so every simulated BMC gets its own.
    """
    lines = ["mc_setbmc 0x20",
             f"mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 {product:#x}",
             "sel_enable 0x20 1000 0x0a"]
    lines += ["main_sdr_add 0x20 " + " ".join(f"0x{b:02x}" for b in r) for r in records]
    lines += [f"sensor_add 0x20 0 {TEMP_SENSOR} 0x01 0x01", f"sensor_set_value 0x20 0 {TEMP_SENSOR} {temp} 0"]
    for num, raw in enumerate(raws, FIRST_POWER_SENSOR):
        lines += [f"sensor_add 0x20 0 {num} 0x03 0x01", f"sensor_set_value 0x20 0 {num} {raw} 0"]
    lines.append("mc_enable 0x20")
    return "\n".join(lines) + "\n"


def raw_of(watts: float) -> int:
    """The raw byte of a power sensor reading ``watts`` (rounded to M-watt steps)."""
    raw = round(watts / M)
    if not 0 <= raw <= 255:
        raise PeerError(f"{watts} W is outside what a sensor can read (0..{255 * M} W)")
    return raw


def auth_capabilities_request() -> bytes:
    """RMCP + IPMI 1.5 session-less Get Channel Authentication Capabilities (admin)."""
    body = bytes([0x81, 0x00, 0x38, 0x0E, 0x04])  # rqSA, rqSeq, cmd, channel=current, priv=admin
    head = bytes([0x20, 0x06 << 2])
    msg = head + bytes([-sum(head) & 0xFF]) + body + bytes([-sum(body) & 0xFF])
    return bytes([0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, len(msg)]) + msg


class IpmiSim:
    """``ipmi_sim`` on 127.0.0.1:<port> (UDP), with a console on 127.0.0.1:<console_port> (TCP)."""

    def __init__(self, root: Path, *, port: int | None = None, watts: float = 200.0,
                 power_sensors: tuple[str, ...] = ("Pwr Consumption",), dcmi: bool = True,
                 username: str = "admin", password: str = "wattsight-Pw-0451") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.console_port = free_port(socket.SOCK_STREAM)
        self.username, self.password = username, password
        self.power_sensors = tuple(power_sensors)
        self.dcmi = dcmi
        self.reading = self.root / "dcmi-reading"
        self.log = self.root / "ipmi_sim.log"
        self.proc: subprocess.Popen | None = None
        self._starts = 0
        self._sensor_watts = {name: 0.0 for name in self.power_sensors}
        self.watts = watts
        self._records = compile_sdrs(sdrs(self.power_sensors), self.root) if missing() is None else []
        self._write_reading(watts)
        for name in self.power_sensors:
            self._sensor_watts[name] = raw_of(watts / len(self.power_sensors)) * M

    # -- life cycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Self:
        """Start ipmi_sim (on the same ports as before, if it ran already) and wait until it answers."""
        why = missing()
        if why:
            raise PeerError(why)
        if self.proc is not None:
            return self
        self._starts += 1
        state = self.root / f"state-{self._starts}"  # a fresh state dir every start
        state.mkdir()
        plugin = f'loadlib "{dcmi_plugin()}" "{self.reading}"' if self.dcmi else None
        (self.root / "lan.conf").write_text(
            lan_conf(self.port, self.console_port, self.username, self.password, plugin))
        raws = [raw_of(w) for w in self._sensor_watts.values()]
        (self.root / "bmc.emu").write_text(emu(self._records, raws, product=self.port))
        cmd = ["ipmi_sim", "-n", "-c", "lan.conf", "-f", "bmc.emu", "-s", str(state)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        RUNNING.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.1)

            def answers() -> bool:
                try:
                    s.sendto(auth_capabilities_request(), (self.host, self.port))
                    return bool(s.recv(512))
                except (TimeoutError, ConnectionRefusedError):
                    return False

            wait_until(answers, timeout, f"ipmi_sim on UDP {self.port}", self.proc, output=self.output,
                       error=PeerError, every=0.02)

        def console() -> bool:  # the console listens a moment later, maybe
            try:
                self.command()
                return True
            except ConnectionRefusedError:
                return False

        wait_until(console, max(deadline - time.monotonic(), 0.0), f"ipmi_sim's console on TCP {self.console_port}",
                   self.proc, output=self.output, error=PeerError, every=0.02)

    def stop(self) -> None:
        """Stop ipmi_sim (its ports stay reserved for :meth:`start`)."""
        stop_process(self.proc, 5)
        self.proc = None
        RUNNING.discard(self)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- values -----------------------------------------------------------------------------
    def set_power(self, watts: float) -> None:
        """The BMC now reads ``watts``: DCMI gives it, the power sensors share it equally."""
        self.watts = watts
        self._write_reading(watts)
        each = watts / len(self.power_sensors) if self.power_sensors else 0
        for name in self.power_sensors:
            self.set_sensor(name, each)

    def set_sensor(self, name: str, watts: float) -> None:
        """Power sensor ``name`` now reads ``watts`` (rounded to 4 W steps)."""
        num = FIRST_POWER_SENSOR + self.power_sensors.index(name)
        raw = raw_of(watts)
        self._sensor_watts[name] = raw * M
        if self.proc is not None:
            self.command(f"sensor_set_value 0x20 0 {num} {raw} 0")

    def sensor_watts(self, name: str) -> float:
        """What sensor ``name`` reads now (a multiple of 4 W)."""
        return self._sensor_watts[name]

    def set_dcmi(self, watts: float, *, active: bool = True) -> None:
        """DCMI alone now reads ``watts`` (the sensors keep theirs); ``active``: reading state bit 6."""
        self._write_reading(watts, active=active)

    def _write_reading(self, watts: float, *, active: bool = True) -> None:
        tmp = self.reading.with_suffix(".tmp")
        tmp.write_text(f"{round(watts)}{'' if active else ' inactive'}\n")
        tmp.replace(self.reading)  # the plugin never sees a half-written file

    # -- the console ------------------------------------------------------------------------
    def command(self, line: str = "") -> str:
        """Run one emulator command on the console; its output, or PeerError if it failed.

        One connection per command: ipmi_sim copies its log (every session opened and closed)
        to open consoles, and a console nobody reads would fill up.  The connection is closed
        gently (we stop writing, read until ipmi_sim hangs up): ipmi_sim dies of SIGPIPE if it
        writes to a console that was closed under it.
        """
        if self.proc is None:
            raise PeerError("ipmi_sim is not running")
        with socket.create_connection((self.host, self.console_port), timeout=5) as con:
            _read_until(con, b"> ")
            out = ""
            if line:
                con.sendall(line.encode() + b"\n")
                out = _read_until(con, b"\n\r> ", after=line.encode())
            con.shutdown(socket.SHUT_WR)
            while con.recv(4096):  # until ipmi_sim has closed its side
                pass
        if "\n\r**" in out or out.lstrip().startswith("**"):
            raise PeerError(f"ipmi_sim refused {line!r}: {out.strip()}")
        return out


def _read_until(con: socket.socket, end: bytes, after: bytes = b"") -> str:
    """What the console sent up to ``end`` (found after ``after``, our echoed command)."""
    buf = b""
    while True:
        start = buf.find(after) + len(after) if after else 0
        if (not after or after in buf) and buf.endswith(end) and len(buf) - len(end) >= start:
            return buf[start:].decode(errors="replace")
        chunk = con.recv(4096)
        if not chunk:
            raise PeerError("ipmi_sim closed its console")
        buf += chunk


def start_many(root: Path, n: int, **kw) -> list[IpmiSim]:
    """``n`` simulated BMCs, each in ``root/bmc-<i>`` on its own port, all started."""
    sims: list[IpmiSim] = []
    try:
        for i in range(n):
            sims.append(IpmiSim(Path(root) / f"bmc-{i}", **kw).start())
    except BaseException:
        for s in sims:
            s.stop()
        raise
    return sims
