"""wattsight driver for IPMI BMCs: the power a server's BMC measures, over the network.

Two sources: DCMI Get Power Reading (NetFn 0x2C, command 0x02; only its instantaneous
reading, as minimum/maximum/average are often junk) and the SDR sensors whose *unit* is Watts
(names differ per vendor: ``Pwr Consumption``, ``PSU1 PIn``, ``SYS_POWER``...).  With
``source = "auto"`` the driver uses DCMI when the BMC answers it, else the Watts sensors.

Two clients (:mod:`wattsight.drivers.ipmi_clients`): pyghmi, native, keeps its session across
reads; ipmitool, a process per read, as a fallback.  One section is one BMC.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..errors import MeterAuthError, MeterReplyError, MissingDependency
from ..sample import Batch, Probe, Sample, check_probe_id, now_ms
from .base import Driver, DriverConfig
from .ipmi_clients import IpmitoolClient, NoDcmi, PyghmiClient, SensorValue, parse_dcmi

SAMPLE = """\
# A server's BMC over IPMI: the power it measures (W), by DCMI or its Watts sensors.
[drivers.ipmi]
type = "ipmi"
period = 5.0                  # s between reads (BMCs refresh about once a second)
host = "bmc-1.example.org"    # the BMC's address
port = 623                    # UDP (RMCP)
username = "wattsight"        # a BMC user allowed to log in over LAN
password = "change-me"        # never logged
privilege = "administrator"   # the session's level, as ipmitool -L: "user" | "operator" | "administrator"
lanplus = true                # IPMI 2.0 / RMCP+ (cipher suite 3); false: IPMI 1.5 (ipmitool only)
client = "auto"               # "pyghmi" (native, keeps its session) | "ipmitool" | "auto": pyghmi if installed
source = "auto"               # "dcmi" | "sdr" (sensors in Watts) | "auto": DCMI if the BMC answers it
sensors = []                  # sdr: the sensors to read, by name; [] = every sensor in Watts
combine = "sum"               # sdr: "sum" = one probe <site>.<name>; "each" = <site>.<name>.<sensor>
max_watts = 20000.0           # W; a reading above it (or below 0) is refused as out of range
name = "node-1"               # probe name; default: host (host:port if port is not 623)
"""


class IpmiConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "ipmi"``."""

    type: Literal["ipmi"] = "ipmi"
    host: str = Field(min_length=1, description="the BMC's address (name or IP)")
    port: int = Field(623, ge=1, le=65535, description="the BMC's UDP port (RMCP)")
    username: str = Field(description="a BMC user allowed to log in over LAN")
    password: SecretStr = Field(description="the user's password (never logged nor shown)")
    privilege: Literal["user", "operator", "administrator"] = Field(
        "administrator", description="the session's privilege level (as ipmitool's -L); the user must have it: "
                                     "user reads the sensors, and DCMI on most BMCs")
    lanplus: bool = Field(True, description="IPMI 2.0 / RMCP+ with cipher suite 3; false: IPMI 1.5 (ipmitool)")
    client: Literal["auto", "pyghmi", "ipmitool"] = Field(
        "auto", description="pyghmi (native, one session kept), ipmitool (a process per read), "
                            "or auto: pyghmi if installed, else ipmitool")
    source: Literal["auto", "dcmi", "sdr"] = Field(
        "auto", description="dcmi (DCMI Get Power Reading), sdr (the sensors in Watts), "
                            "or auto: DCMI if the BMC answers it, else sdr")
    sensors: list[str] = Field([], description="sdr: the sensors to read, by name; empty: every sensor in Watts")
    combine: Literal["sum", "each"] = Field(
        "sum", description="sdr: sum = one probe, the sum of the sensors; each = one probe per sensor "
                           "(needs `sensors`)")
    max_watts: float = Field(20000.0, gt=0, description="W; a reading above it (or below 0) is out of range")
    name: str | None = Field(None, description="the probe's name, <site>.<name> (a name with a dot is the "
                                               "whole id); default: host, or host:port if port is not 623")

    @field_validator("username", "password", mode="before")
    @classmethod
    def _digits_are_text(cls, value):
        # `wattsight probe --password 1234` reads 1234 as a number, as TOML would.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check(self) -> IpmiConfig:
        if self.combine == "each" and not self.sensors:
            raise ValueError('combine = "each" needs `sensors`: the names of the probes come from them')
        if self.source == "dcmi" and self.sensors:
            raise ValueError('`sensors` are SDR sensors: they cannot be read with source = "dcmi"')
        if self.client == "pyghmi" and not self.lanplus:
            raise ValueError('lanplus = false (IPMI 1.5) needs client = "ipmitool" or "auto"')
        try:
            check_probe_id(f"site.{self.probe_name}")
        except ValueError:
            raise ValueError(f"{self.probe_name!r} cannot be a probe name: set `name` "
                             "(letters, digits and . _ - : / @ +)") from None
        return self

    @property
    def probe_name(self) -> str:
        return self.name or (self.host if self.port == 623 else f"{self.host}:{self.port}")


def sensor_slug(name: str) -> str:
    """A sensor name as the last part of a probe id (``PSU1 Input`` -> ``PSU1_Input``)."""
    return re.sub(r"[^A-Za-z0-9_.:/@+-]+", "_", name.strip()).strip("_") or "sensor"


def make_client(cfg: IpmiConfig, label: str):
    """The client ``cfg`` asks for (the driver's default ``client_factory``); ``label`` names it in errors."""
    which = cfg.client
    if which == "auto":
        try:
            import pyghmi  # noqa: F401
            which = "pyghmi" if cfg.lanplus else "ipmitool"
        except ImportError:
            which = "ipmitool"
            if shutil.which("ipmitool") is None:
                raise MissingDependency("pyghmi", "ipmi", "the ipmi driver (or install the ipmitool program)") \
                    from None
    args = (cfg.host, cfg.port, cfg.username, cfg.password.get_secret_value(), cfg.read_timeout)
    if which == "pyghmi":
        return PyghmiClient(*args, label=label, privilege=cfg.privilege)
    return IpmitoolClient(*args, label=label, privilege=cfg.privilege, lanplus=cfg.lanplus)


class IpmiDriver(Driver):
    """IPMI BMCs over the network: DCMI power reading or SDR sensors in Watts (pyghmi or ipmitool)."""

    Config = IpmiConfig
    SAMPLE = SAMPLE

    def __init__(self, config: IpmiConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 client_factory: Callable[[IpmiConfig, str], object] = make_client) -> None:
        super().__init__(config, site=site, clock=clock)
        self.client_factory = client_factory
        self.client = None
        #: "dcmi" or "sdr": fixed by the config, or chosen at the first read (source = "auto").
        self.mode: str | None = "dcmi" if config.source == "dcmi" else \
            "sdr" if config.source == "sdr" or config.sensors else None
        #: The sensors read in sdr mode: those configured, or every sensor in Watts (found at the first read).
        self.watts_sensors: list[str] = list(config.sensors)
        # A `name` with a dot is a whole probe id (<site>.<name>), as in every driver; the host
        # (default) is always a name under this site.
        dotted = config.name is not None and "." in config.name
        self.base = config.name if dotted else f"{site}.{config.probe_name}"
        #: Why DCMI was not used (source = "auto"), for the error when nothing else can be read.
        self.no_dcmi = ""
        #: Who errors name: the probe and the BMC.
        self.label = f"{self.base} (BMC {config.host}:{config.port})"

    def __repr__(self) -> str:
        cfg = self.config
        return f"IpmiDriver({cfg.host}:{cfg.port}, user {cfg.username!r}, source {self.mode or cfg.source})"

    def probes(self) -> list[Probe]:
        cfg = self.config
        where = f"IPMI BMC {cfg.host}:{cfg.port}"
        if cfg.combine == "each":
            return [Probe(f"{self.base}.{sensor_slug(s)}", driver=cfg.type, period=cfg.period,
                          description=f"{where}, sensor {s!r} (W)") for s in cfg.sensors]
        what = {"dcmi": "DCMI power reading", "sdr": "sum of its sensors in Watts",
                "auto": "DCMI power reading, else its sensors in Watts"}[cfg.source]
        return [Probe(self.base, driver=cfg.type, period=cfg.period, description=f"{where}: {what}")]

    # -- reading --------------------------------------------------------------------------------
    def read(self) -> Batch:
        if self.client is None:
            self.client = self.client_factory(self.config, self.label)
        if self.mode in (None, "dcmi"):
            watts = self._read_dcmi()
            if watts is not None:
                return self._batch([(self.base, watts)], self.clock())
        return self._read_sdr()

    def _read_dcmi(self) -> float | None:
        """Watts from DCMI, or None when ``source = "auto"`` and the BMC has none (then: SDR)."""
        code, data = self.client.dcmi()
        try:
            watts = parse_dcmi(code, data, probe=self.label)
        except NoDcmi as exc:
            if self.mode == "dcmi":
                error = MeterAuthError if code == 0xD4 else MeterReplyError
                raise error(f"{exc}; set source = \"sdr\" to read the BMC's sensors in Watts",
                            probe=self.label) from None
            self.mode, self.no_dcmi = "sdr", str(exc)
            return None
        self.mode = "dcmi"
        return watts

    def _read_sdr(self) -> Batch:
        if not self.watts_sensors:  # discover once: every sensor whose unit is Watts
            found = self.client.sensors()
            t = self.clock()
            self.watts_sensors = [s.name for s in found if s.unit == "W"]
            if not self.watts_sensors:
                raise MeterReplyError(_nothing_to_read(found, self.no_dcmi), probe=self.label)
        else:
            found = self.client.sensors(self.watts_sensors)
            t = self.clock()
        return self._batch(self._pick(found), t)

    def _pick(self, found: list[SensorValue]) -> list[tuple[str, float]]:
        """(probe id, W) from the sensor values read, checked: present, in Watts, with a reading."""
        cfg = self.config
        by_name = {s.name: s for s in found}
        rows = []
        for name in self.watts_sensors:
            s = by_name.get(name)
            if s is None:
                watts = sorted(v.name for v in self.client.sensors() if v.unit == "W")
                raise MeterReplyError(f"no sensor named {name!r}; its sensors in Watts: {watts or 'none'}; "
                                      "fix `sensors`", probe=self.label)
            if s.unit != "W":
                raise MeterReplyError(f"sensor {name!r} reads in {s.unit!r}, not Watts; remove it from `sensors`",
                                      probe=self.label)
            if s.value is None:
                if cfg.combine == "each":
                    continue  # one probe without a reading this time: a gap in its own series
                raise MeterReplyError(f"sensor {name!r} has no reading (absent or disabled, e.g. an unplugged "
                                      "PSU?); list the others in `sensors`", probe=self.label)
            rows.append((f"{self.base}.{sensor_slug(name)}" if cfg.combine == "each" else self.base, s.value))
        if not rows:
            raise MeterReplyError(f"none of the sensors {self.watts_sensors} has a reading", probe=self.label)
        if cfg.combine == "sum":
            for _, v in rows:
                self._check_range(v)
            rows = [(self.base, sum(v for _, v in rows))]
        return rows

    def _check_range(self, watts: float) -> None:
        if not 0 <= watts <= self.config.max_watts:
            raise MeterReplyError(f"a power reading of {watts:g} W is out of range (0..{self.config.max_watts:g} W, "
                                  "`max_watts`)", probe=self.label)

    def _batch(self, rows: list[tuple[str, float]], t_ms: int) -> Batch:
        for _, watts in rows:
            self._check_range(watts)
        return Batch.of(Sample(pid, "power", t_ms / 1000, watts, "W") for pid, watts in rows)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()


def _nothing_to_read(found: list[SensorValue], no_dcmi: str) -> str:
    """What to say when the BMC has no DCMI reading and no sensor in Watts."""
    seen = ", ".join(f"{s.name} ({s.unit or 'no unit'})" for s in found[:12]) or "none"
    dcmi = f"no DCMI power reading ({no_dcmi}) and " if no_dcmi else ""
    return (f"{dcmi}none of the BMC's sensors reads in Watts (sensors: {seen}); nothing to read. Check the "
            "BMC's firmware (DCMI may need enabling) and the `privilege` asked for")
