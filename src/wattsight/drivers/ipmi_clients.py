"""The two ways the ``ipmi`` driver talks to a BMC, and the pure parsing of what it answers.

* :class:`PyghmiClient`: pyghmi's native IPMI 2.0 (RMCP+) client; one session kept across reads.
* :class:`IpmitoolClient`: the ``ipmitool`` program, one process (and one session) per call,
  always ``-I lanplus -C 3`` (without ``-C 3`` each call waits seconds on cipher discovery).

Both answer the same two questions: :meth:`dcmi` (the completion code and bytes of DCMI Get
Power Reading) and :meth:`sensors` (name, value, unit of every analog sensor), and raise the
wattsight errors (:class:`~wattsight.errors.MeterUnreachable`, ``MeterAuthError``,
``MeterReplyError``) naming the BMC.  The password goes to pyghmi in memory and to ipmitool
through its environment (``-E``), never on a command line, and is scrubbed from any message.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import MeterAuthError, MeterReplyError, MeterUnreachable, MissingDependency

#: DCMI Get Power Reading: NetFn 0x2C (group extension), command 0x02, group id 0xDC, mode 1.
DCMI_NETFN, DCMI_POWER_CMD, DCMI_REQUEST = 0x2C, 0x02, (0xDC, 0x01, 0x00, 0x00)
#: Completion codes a BMC gives when it has no (usable) DCMI power reading.
NO_DCMI_CODES = {0xC1: "invalid command", 0xC2: "command invalid for this LUN", 0xCC: "invalid data field",
                 0xD5: "not supported in present state",
                 0xD6: "command sub-function disabled or unavailable"}
#: The privilege levels a session may ask for: pyghmi's numbers and ipmitool's names.
PRIVILEGES = {"user": (2, "USER"), "operator": (3, "OPERATOR"), "administrator": (4, "ADMINISTRATOR")}
#: Words of a refused login, in pyghmi's and ipmitool's messages.
AUTH_WORDS = re.compile(r"password|unauthori[sz]ed|privilege|role|RAKP|HMAC|Kg\b|integrity", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SensorValue:
    """One analog sensor's reading: ``value`` None when it has none; ``unit`` "W" for watts."""

    name: str
    value: float | None
    unit: str


class NoDcmi(Exception):
    """The BMC has no usable DCMI power reading (the reason is the message)."""


# -- pure parsing ---------------------------------------------------------------------------------
def parse_dcmi(code: int, data: bytes, *, probe: str) -> float:
    """Watts from a DCMI Get Power Reading reply (the bytes after the completion code).

    Only the instantaneous reading is used: minimum, maximum and average are often junk.
    Raises :class:`NoDcmi` when the BMC lacks DCMI (or refuses it at this privilege) or the
    measurement is not active, and MeterReplyError when the reply is malformed.
    """
    if code == 0xD4:
        raise NoDcmi("DCMI Get Power Reading answered completion code 0xd4 (insufficient privilege: the BMC "
                     "may have no DCMI, or want a higher `privilege` for it)")
    if code:
        raise NoDcmi(f"DCMI Get Power Reading answered completion code {code:#04x} "
                     f"({NO_DCMI_CODES.get(code, 'error')})")
    if len(data) < 18 or data[0] != 0xDC:
        raise MeterReplyError(f"malformed DCMI power reading ({bytes(data).hex(' ')}): expected 18 bytes "
                              "starting with dc", probe=probe)
    if not data[17] & 0x40:
        raise NoDcmi("DCMI says its power measurement is not active (reading state bit 6 clear)")
    return float(struct.unpack_from("<H", data, 1)[0])


def parse_raw_hex(text: str) -> bytes:
    """The bytes ``ipmitool raw`` prints (hex pairs over one or more lines)."""
    try:
        return bytes(int(tok, 16) for tok in text.split())
    except ValueError:
        raise ValueError(f"not hex bytes: {text[:80]!r}") from None


def parse_sdr_csv(text: str) -> list[SensorValue]:
    """``ipmitool -c sdr elist full`` lines ``name,value,unit,status`` as sensor values."""
    out = []
    for line in text.splitlines():
        parts = line.rsplit(",", 3)
        if len(parts) != 4:
            continue
        name, value, unit, _status = (p.strip() for p in parts)
        try:
            number = float(value)
        except ValueError:
            number = None  # "No Reading", "", "Disabled"
        out.append(SensorValue(name, number, watt_unit(unit)))
    return out


def watt_unit(unit: str) -> str:
    """"W" for a plain watts unit, in pyghmi's ("W") or ipmitool's ("Watts") spelling."""
    return "W" if unit.strip() in ("W", "Watts", "watts") else unit.strip()


def scrub(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` hidden (belt and braces: clients never print it)."""
    return text.replace(secret, "******") if secret else text


# -- is anything answering? -----------------------------------------------------------------------
def auth_capabilities_request() -> bytes:
    """RMCP + IPMI 1.5 session-less Get Channel Authentication Capabilities (admin level)."""
    head = bytes([0x20, 0x06 << 2])  # rsSA (BMC), netFn App
    body = bytes([0x81, 0x00, 0x38, 0x0E, 0x04])  # rqSA, rqSeq, cmd 0x38, this channel, admin
    msg = head + bytes([-sum(head) & 0xFF]) + body + bytes([-sum(body) & 0xFF])
    return bytes([0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, len(msg)]) + msg


def ping(host: str, port: int, timeout: float, label: str | None = None) -> None:
    """Raise MeterUnreachable unless the BMC answers Get Channel Authentication Capabilities.

    Every IPMI LAN interface answers it without a session.  Two tries within ``timeout``.
    ``label`` names the probe in the error (default: the host).
    """
    where, probe = f"{host}:{port}", label or host
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout / 2)
            s.connect(addr)
            for _ in range(2):
                s.send(auth_capabilities_request())
                try:
                    if s.recv(512)[:1] == b"\x06":
                        return
                except TimeoutError:
                    continue
    except socket.gaierror as exc:
        raise MeterUnreachable(f"cannot resolve the BMC's name ({exc.strerror}); check `host`", probe=probe) from None
    except ConnectionRefusedError:
        raise MeterUnreachable(f"nothing listens on UDP {where} (port unreachable); check `host` and `port` "
                               "and that IPMI over LAN is enabled on the BMC", probe=probe) from None
    except OSError as exc:
        raise MeterUnreachable(f"cannot reach UDP {where}: {exc.strerror or exc}", probe=probe) from None
    raise MeterUnreachable(f"no answer from UDP {where} within {timeout:g} s; is the BMC up, IPMI over LAN "
                           "enabled, and `host`/`port` right?", probe=probe)


# -- pyghmi ---------------------------------------------------------------------------------------
class PyghmiClient:
    """pyghmi's native client: one IPMI 2.0 session, kept across reads, re-opened after a loss."""

    name = "pyghmi"

    def __init__(self, host: str, port: int, username: str, password: str, timeout: float, *,
                 label: str | None = None, privilege: str = "user") -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.label, self.privilege = label or host, privilege
        self._user, self._password = username, password
        self._cmd = None
        #: Sensor names this session's SDR has (pyghmi raises a bare Exception for others).
        self._known: set[str] = set()

    def __repr__(self) -> str:
        return f"PyghmiClient({self.host}:{self.port}, user {self._user!r})"

    def _session(self):
        """The logged-in pyghmi Command, logging in first if there is none or it broke."""
        if self._cmd is not None and not getattr(self._cmd.ipmi_session, "broken", False):
            return self._cmd
        try:
            from pyghmi import exceptions as pyghmi_exc
            from pyghmi.ipmi import command
        except ImportError:
            raise MissingDependency("pyghmi", "ipmi", "the ipmi driver's pyghmi client") from None
        ping(self.host, self.port, self.timeout, self.label)  # pyghmi alone takes ~5 s to give up on a dead BMC
        try:
            # bytes, not str: pyghmi 1.6 keys its session cache on the encoded values and, given
            # str, keeps a dead session in the cache and hands it back at the next login.
            cmd = command.Command(bmc=self.host, userid=self._user.encode(), password=self._password.encode(),
                                  port=self.port, privlevel=PRIVILEGES[self.privilege][0])
        except pyghmi_exc.IpmiException as exc:
            text = scrub(str(exc), self._password)
            if AUTH_WORDS.search(text):
                raise MeterAuthError(f"the BMC refused the login ({text}); check `username` and `password`, "
                                     "that the user may log in over LAN and has the `privilege` asked for",
                                     probe=self.label) from None
            raise MeterUnreachable(f"could not open an IPMI session on {self.host}:{self.port} ({text or 'time-out'})",
                                   probe=self.label) from None
        _bound_retries(cmd.ipmi_session, self.timeout)
        self._cmd, self._known = cmd, set()
        return cmd

    def _call(self, fn: Callable, what: str):
        from pyghmi import exceptions as pyghmi_exc

        cmd = self._session()
        try:
            return fn(cmd)
        except pyghmi_exc.IpmiException as exc:
            text = scrub(str(exc), self._password)
            if getattr(cmd.ipmi_session, "broken", False) or "no longer connected" in text:
                self._cmd = None
                raise MeterUnreachable(f"the BMC stopped answering during {what} (session lost: {text}); "
                                       "the next read logs in again", probe=self.label) from None
            raise MeterReplyError(f"{what} failed: {text}", probe=self.label) from None

    def dcmi(self) -> tuple[int, bytes]:
        rsp = self._call(lambda c: c.raw_command(netfn=DCMI_NETFN, command=DCMI_POWER_CMD, data=DCMI_REQUEST),
                         "DCMI Get Power Reading")
        return int(rsp.get("code", 0)), bytes(rsp.get("data", b""))

    def sensors(self, names: Sequence[str] = ()) -> list[SensorValue]:
        """Every analog sensor, or just those named (once this session has seen them all)."""
        def one(r) -> SensorValue:
            value = None if r.unavailable or r.value is None else float(r.value)
            return SensorValue(r.name, value, watt_unit(r.units or ""))

        if names and set(names) <= self._known:  # read just these: one Get Sensor Reading each
            return self._call(lambda c: [one(c.get_sensor_reading(n)) for n in names], "Get Sensor Reading")
        found = self._call(lambda c: [one(r) for r in c.get_sensor_data() if r.units is not None],
                           "reading the sensors")
        self._known = {s.name for s in found}
        return [s for s in found if s.name in names] if names else found

    def close(self) -> None:
        cmd, self._cmd = self._cmd, None
        if cmd is not None and not getattr(cmd.ipmi_session, "broken", False):
            from pyghmi import exceptions as pyghmi_exc

            try:
                cmd.ipmi_session.logout()
            except pyghmi_exc.IpmiException:
                pass  # the BMC is gone: the session is as good as closed


def _bound_retries(session, timeout: float) -> None:
    """Make pyghmi give up on a silent BMC within about ``timeout`` + 1 s (default: ~30 s).

    pyghmi waits 0.5-1 s, then 1 s longer at each retransmission while the wait is at most
    ``maxtimeout``, then re-logs in.  We allow n waits with n(n+1)/2 + 1 <= timeout (at least
    one) and no silent re-login: the driver logs in again at its next read, which the runner
    schedules with back-off.
    """
    n = 1
    while (n + 1) * (n + 2) / 2 + 1 <= timeout:
        n += 1
    if hasattr(session, "maxtimeout") and hasattr(session, "logontries"):
        session.maxtimeout = n
        session.logontries = 0


# -- ipmitool -------------------------------------------------------------------------------------
CommandRunner = Callable[..., subprocess.CompletedProcess]


class IpmitoolClient:
    """The ``ipmitool`` program: one process and one session per call."""

    name = "ipmitool"

    def __init__(self, host: str, port: int, username: str, password: str, timeout: float, *,
                 label: str | None = None, privilege: str = "user", lanplus: bool = True,
                 program: str = "ipmitool", run: CommandRunner = subprocess.run) -> None:
        self.host, self.port, self.timeout, self.lanplus = host, port, timeout, lanplus
        self.label, self.privilege = label or host, privilege
        self._user, self._password, self.program, self.run = username, password, program, run

    def __repr__(self) -> str:
        return f"IpmitoolClient({self.host}:{self.port}, user {self._user!r})"

    def _argv(self, args: Sequence[str], verbose: bool = False) -> list[str]:
        iface = ["-I", "lanplus", "-C", "3"] if self.lanplus else ["-I", "lan"]
        # -N 1 -R 1: ipmitool gives up on a silent BMC after ~2 s (-R 0 means its default: 20 s).
        return [self.program, *(["-v"] if verbose else []), *iface, "-H", self.host, "-p", str(self.port),
                "-L", PRIVILEGES[self.privilege][1], "-U", self._user, "-E", "-N", "1", "-R", "1", *args]

    def _ipmitool(self, args: Sequence[str], what: str, verbose: bool = False) -> subprocess.CompletedProcess:
        # ipmitool says the same for a dead BMC and a wrong password, and takes seconds to say
        # it: one UDP round trip first tells a dead BMC apart at once.
        ping(self.host, self.port, self.timeout, self.label)
        env = {**os.environ, "IPMI_PASSWORD": self._password}  # -E: never on the command line
        limit = self.timeout + 2
        try:
            done = self.run(self._argv(args, verbose), capture_output=True, text=True, env=env,
                            timeout=limit, stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise MissingDependency("ipmitool (the program)", "ipmi", "the ipmi driver's ipmitool client") from None
        except subprocess.TimeoutExpired:
            raise MeterUnreachable(f"ipmitool did not finish {what} within {limit:g} s", probe=self.label) from None
        if done.returncode and not verbose and "Unable to establish" in done.stderr + done.stdout:
            self._login_failed(what)
        return done

    def _login_failed(self, what: str) -> None:
        """The BMC answers but gave no session: say why (ipmitool -v names the RAKP error)."""
        detail = self._ipmitool(["raw", "0x06", "0x01"], what, verbose=True)
        lines = [ln.strip() for ln in (detail.stderr + detail.stdout).splitlines() if AUTH_WORDS.search(ln)]
        why = scrub("; ".join(lines) or "no session could be opened", self._password)
        raise MeterAuthError(f"the BMC answers but refused an IPMI session for {what} ({why}); check `username` "
                             "and `password`, that the user may log in over LAN with cipher suite 3 and has the "
                             "`privilege` asked for", probe=self.label)

    def dcmi(self) -> tuple[int, bytes]:
        args = ["raw", *(f"{b:#04x}" for b in (DCMI_NETFN, DCMI_POWER_CMD, *DCMI_REQUEST))]
        done = self._ipmitool(args, "DCMI Get Power Reading")
        if done.returncode:
            m = re.search(r"rsp=0x([0-9a-f]{2})", done.stderr, re.IGNORECASE)
            if m:
                return int(m.group(1), 16), b""
            raise MeterReplyError(f"ipmitool raw failed: {scrub(done.stderr.strip(), self._password)}",
                                  probe=self.label)
        try:
            return 0, parse_raw_hex(done.stdout)
        except ValueError as exc:
            raise MeterReplyError(f"ipmitool raw printed {exc}", probe=self.label) from None

    def sensors(self, names: Sequence[str] = ()) -> list[SensorValue]:
        done = self._ipmitool(["-c", "sdr", "elist", "full"], "reading the sensors")
        if done.returncode:
            raise MeterReplyError(f"ipmitool sdr elist failed: {scrub(done.stderr.strip(), self._password)}",
                                  probe=self.label)
        found = parse_sdr_csv(done.stdout)
        return [s for s in found if s.name in names] if names else found

    def close(self) -> None:
        """Nothing to release: every call was its own session."""
