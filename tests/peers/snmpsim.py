"""A real SNMP agent for the tests and benches: snmpsim serving ``.snmprec`` files we write.

``SnmpSim`` runs ``snmpsim-command-responder`` (PyPI snmpsim) on 127.0.0.1 on a free UDP port,
with a data folder of ``<community>.snmprec`` files: the community (SNMPv1/v2c) selects the
file, so a wrong community gets *no answer at all*.  SNMPv3 requests with an empty context
name are served ``self.snmprec`` (:meth:`SnmpSim.write` with ``v3=True`` writes that copy);
one v3 user (SHA + AES by default) is configured.

Values can be changed while it runs, for the communities it found when it started:
:meth:`SnmpSim.write` rewrites the file and gives it a new, strictly later modification time;
snmpsim checks the time on every request and re-indexes a file that changed (its check has a
one-second resolution, hence the explicit times).

Records are ``OID|type|value`` lines; the types used here are the ASN.1 tags snmpsim expects:
Integer 2, OctetString 4, Counter32 65, Gauge32 66, Counter64 70.

``UdpRelay`` sits between a client and the agent and counts datagrams, so a test can show how
many SNMP requests a read costs.  ``pdu_records`` and ``switch_records`` write a 24-outlet PDU of
each vendor preset and a switch, with values chosen so that a wrong scale shows.

Usable from pytest fixtures and bench scripts alike::

    with SnmpSim(tmp_path) as sim:
        sim.write("pdu-1", pdu_records("apc", 24))
        ... host 127.0.0.1, port sim.port, community "pdu-1" ...
        sim.stop(); sim.start()          # the same port again
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

from ._common import free_port, stop_process, wait_until

INTEGER, OCTETS, COUNTER32, GAUGE32, COUNTER64 = 2, 4, 65, 66, 70

#: The v3 user every SnmpSim knows (auth SHA, privacy AES-128).
V3_USER = {"user": "wattsight", "auth_key": "auth-secret-1", "priv_key": "priv-secret-1",
           "auth_protocol": "sha", "priv_protocol": "aes"}


def responder() -> str | None:
    """The path of ``snmpsim-command-responder`` (next to this Python first), or None."""
    here = Path(sys.executable).parent / "snmpsim-command-responder"
    return str(here) if here.exists() else shutil.which("snmpsim-command-responder")


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def _oid_key(line: str) -> tuple[int, ...]:
    return tuple(int(x) for x in line.split("|", 1)[0].strip(".").split("."))


class SnmpSim:
    """snmpsim on 127.0.0.1:<port> serving the ``.snmprec`` files of ``root/data``."""

    def __init__(self, root: Path, *, port: int | None = None, max_varbinds: int = 1000,
                 v3: dict | None = None) -> None:
        self.root = Path(root)
        self.data = self.root / "data"
        self.cache = self.root / "cache"
        self.data.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.log = self.root / "snmpsim.log"
        self.port = port or free_udp_port()
        self.max_varbinds = max_varbinds
        self.v3 = {**V3_USER, **(v3 or {})}
        self.proc: subprocess.Popen | None = None
        self._mtime = 0

    # -- data -------------------------------------------------------------------------------
    def write(self, community: str, records: dict[str, tuple[int, object]], *, v3: bool = False) -> None:
        """Serve ``records`` (OID -> (type, value)) under ``community`` (and to SNMPv3 if ``v3``).

        Safe while the agent runs for a community it already serves: the file is replaced whole
        and stamped with a later time.  snmpsim looks for files only when it starts, so a new
        community must be written before :meth:`start` (or the agent stopped and started).
        """
        lines = sorted((f"{oid.strip('.')}|{typ}|{value}" for oid, (typ, value) in records.items()),
                       key=_oid_key)
        for name in [community] + (["self"] if v3 else []):
            path = self.data / f"{name}.snmprec"
            if self.running and not path.exists():
                raise RuntimeError(f"snmpsim finds data files when it starts: write {path.name} before start()")
            tmp = path.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            # snmpsim compares whole-second mtimes: each version gets its own second, never
            # earlier than its index file (written "now"), so the change is always seen.
            self._mtime = max(self._mtime + 1, int(time.time()) + 1)
            os.utime(tmp, (self._mtime, self._mtime))
            os.replace(tmp, path)

    # -- process ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def command(self) -> list[str]:
        v3 = self.v3
        return [responder() or "snmpsim-command-responder", "--log-level=error", f"--data-dir={self.data}",
                f"--cache-dir={self.cache}", f"--max-var-binds={self.max_varbinds}",
                f"--v3-user={v3['user']}", f"--v3-auth-key={v3['auth_key']}",
                f"--v3-auth-proto={v3['auth_protocol'].upper()}", f"--v3-priv-key={v3['priv_key']}",
                f"--v3-priv-proto={v3['priv_protocol'].upper()}",
                f"--agent-udpv4-endpoint=127.0.0.1:{self.port}"]

    def start(self, timeout: float = 30.0) -> SnmpSim:
        """Start the agent (again, on the same port) and wait until it listens."""
        if responder() is None:
            raise FileNotFoundError("snmpsim-command-responder not found: pip install snmpsim")
        if self.running:
            return self
        env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
        self.log.write_text("")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        wait_until(lambda: "Listening at UDP/IPv4 endpoint" in self.output(), timeout,
                   f"snmpsim on UDP {self.port}", self.proc, output=self.output, cleanup=self.stop)
        return self

    def stop(self) -> None:
        """Stop the agent (the port stays this object's: ``start()`` reuses it)."""
        proc, self.proc = self.proc, None
        stop_process(proc, 5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class UdpRelay:
    """Forwards UDP datagrams between clients and ``target``, counting the requests.

    Each client address gets its own upstream socket, so replies find their way back.
    ``requests`` counts datagrams from clients, ``replies`` those sent back.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.requests = self.replies = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._upstream: dict[tuple, socket.socket] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-relay", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.1):
                data, addr = key.fileobj.recvfrom(65535)
                if key.data is None:  # from a client: forward upstream
                    up = self._upstream.get(addr)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.connect(self.target)
                        self._upstream[addr] = up
                        self._sel.register(up, selectors.EVENT_READ, addr)
                    self.requests += 1
                    up.send(data)
                else:  # from the agent: back to its client
                    self.replies += 1
                    self.sock.sendto(data, key.data)

    def start(self) -> UdpRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for s in [self.sock, *self._upstream.values()]:
            s.close()
        self._sel.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- recorded-style data ---------------------------------------------------------------------
#: Outlet ``i`` draws ``power_w(i)`` W and has used ``energy_wh(i)`` Wh (0.1 kWh steps for
#: the vendors that count in 0.1 kWh); the values avoid round numbers so a wrong scale shows.
def power_w(i: int) -> int:
    return 100 + 7 * i


def energy_wh(i: int) -> int:
    return 1_000_000 + 123_400 * i


def pdu_records(preset: str, outlets: int = 24, *, unit: int | None = None) -> dict[str, tuple[int, object]]:
    """A PDU of ``preset`` as its agent shows it: outlets ``1..outlets`` and the whole-PDU figures.

    The whole PDU draws ``total_w(outlets)`` = the outlets' sum rounded to what its OID can say.
    """
    numbers = range(1, outlets + 1)
    w = {i: power_w(i) for i in numbers}
    wh = {i: energy_wh(i) for i in range(1, outlets + 1)}
    tw, twh = sum(w.values()), sum(wh.values())
    rec: dict[str, tuple[int, object]] = {"1.3.6.1.2.1.1.1.0": (OCTETS, f"simulated {preset} PDU")}
    if preset == "apc":
        u = 1 if unit is None else unit
        base = "1.3.6.1.4.1.318.1.1.26"
        for i in numbers:
            rec[f"{base}.9.4.3.1.3.{i}"] = (OCTETS, f"outlet {i}")
            rec[f"{base}.9.4.3.1.7.{i}"] = (INTEGER, w[i])                 # W
            rec[f"{base}.9.4.3.1.11.{i}"] = (INTEGER, wh[i] // 100)        # 0.1 kWh
        rec[f"{base}.4.3.1.5.{u}"] = (INTEGER, tw // 10)                    # 0.01 kW
        rec[f"{base}.4.3.1.9.{u}"] = (INTEGER, twh // 100)                  # 0.1 kWh
    elif preset == "eaton":
        u = 0 if unit is None else unit
        base = "1.3.6.1.4.1.534.6.6.7"
        for i in numbers:
            rec[f"{base}.6.5.1.3.{u}.{i}"] = (INTEGER, w[i])                # W
            rec[f"{base}.6.5.1.4.{u}.{i}"] = (GAUGE32, wh[i])               # Wh
        rec[f"{base}.3.5.1.4.{u}.1"] = (INTEGER, tw)
        rec[f"{base}.3.5.1.5.{u}.1"] = (GAUGE32, twh)
    elif preset == "raritan":
        u = 1 if unit is None else unit
        base = "1.3.6.1.4.1.13742.6"
        for i in numbers:  # power with 1 decimal digit (tenths of W), energy in whole Wh
            rec[f"{base}.3.5.4.1.7.{u}.{i}.5"] = (GAUGE32, 1)
            rec[f"{base}.3.5.4.1.7.{u}.{i}.8"] = (GAUGE32, 0)
            rec[f"{base}.5.4.3.1.4.{u}.{i}.5"] = (GAUGE32, w[i] * 10 + 3)   # 0.1 W: w[i] + 0.3 W
            rec[f"{base}.5.4.3.1.4.{u}.{i}.8"] = (GAUGE32, wh[i])
        rec[f"{base}.3.3.4.1.7.{u}.1.5"] = (GAUGE32, 0)
        rec[f"{base}.3.3.4.1.7.{u}.1.8"] = (GAUGE32, 0)
        rec[f"{base}.5.2.3.1.4.{u}.1.5"] = (GAUGE32, tw)
        rec[f"{base}.5.2.3.1.4.{u}.1.8"] = (GAUGE32, twh)
    elif preset == "servertech":
        u = 1 if unit is None else unit
        base = "1.3.6.1.4.1.1718.4.1"
        for i in numbers:
            rec[f"{base}.8.3.1.7.{u}.1.{i}"] = (INTEGER, w[i])              # W
            rec[f"{base}.8.3.1.14.{u}.1.{i}"] = (GAUGE32, wh[i])            # Wh
        rec[f"{base}.3.3.1.3.{u}.1"] = (INTEGER, tw)                        # W
        rec[f"{base}.3.3.1.10.{u}.1"] = (GAUGE32, twh // 100)               # 0.1 kWh
    elif preset == "liebert":
        u = 1 if unit is None else unit
        base = "1.3.6.1.4.1.476.1.42.3.8"
        for i in numbers:
            rec[f"{base}.50.20.1.65.{u}.1.{i}"] = (GAUGE32, w[i])           # W
            rec[f"{base}.50.20.1.85.{u}.1.{i}"] = (GAUGE32, wh[i] // 100)   # 0.1 kWh
        rec[f"{base}.30.20.1.65.{u}.1"] = (GAUGE32, tw)
        rec[f"{base}.30.20.1.50.{u}.1"] = (GAUGE32, twh // 100)
    else:
        raise ValueError(f"no recorded-style data for preset {preset!r}")
    return rec


IF_NAME, IF_IN, IF_OUT = "1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.2.2.1.10", "1.3.6.1.2.1.2.2.1.16"
IF_HC_IN, IF_HC_OUT = "1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.10"


def octets_in(port: int) -> int:
    """Port ``port``'s ifHCInOctets: beyond 2**32, so a 32-bit read of it would differ."""
    return 5 * 2**32 + 1_000_003 * port


def octets_out(port: int) -> int:
    return 7 * 2**32 + 2_000_029 * port


def switch_records(ports: int = 24, *, hc: bool = True, first_index: int = 1) -> dict[str, tuple[int, object]]:
    """A switch: ``ports`` interfaces (ifIndex ``first_index``..), named ``Gi1/0/<n>``, with
    64-bit counters (``hc``) or only the 32-bit ones (an old agent)."""
    rec: dict[str, tuple[int, object]] = {"1.3.6.1.2.1.1.1.0": (OCTETS, "simulated switch")}
    for n in range(1, ports + 1):
        i = first_index + n - 1
        rec[f"{IF_NAME}.{i}"] = (OCTETS, f"Gi1/0/{n}")
        rec[f"{IF_IN}.{i}"] = (COUNTER32, octets_in(n) % 2**32)
        rec[f"{IF_OUT}.{i}"] = (COUNTER32, octets_out(n) % 2**32)
        if hc:
            rec[f"{IF_HC_IN}.{i}"] = (COUNTER64, octets_in(n))
            rec[f"{IF_HC_OUT}.{i}"] = (COUNTER64, octets_out(n))
    return rec


def probe_options(section: dict) -> list[str]:
    """A driver's config section as ``wattsight probe`` options: lists comma-separated, tables in TOML."""
    def text(v) -> str:
        if isinstance(v, list):
            return ",".join(map(str, v))
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = "{x}"' for k, x in v.items()) + "}"
        return str(v)
    return [a for k, v in section.items() if k != "type" for a in (f"--{k.replace('_', '-')}", text(v))]
