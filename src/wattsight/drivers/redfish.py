"""wattsight driver for Redfish: the power and energy of a server's chassis (BMC) or of a rack PDU's outlets.

One section reads one Redfish service. For a BMC, each chassis' power comes from the first of
EnvironmentMetrics, PowerSubsystem, the legacy Power resource and the Sensors collection it has (see
:mod:`.redfish_models`); for a rack PDU (``rack_pdu``), each outlet's. Where the meter keeps an energy
counter it is published too, in J. What is where is found at the first read and kept; ``probes()``
is derived from the configuration alone. The HTTP side (keep-alive, sessions, errors) is
:mod:`.redfish_http`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from ..errors import DriverError, MeterPermissionError, MeterReplyError, MeterUnreachable
from ..sample import Batch, Probe, Sample, check_probe_id, now_ms
from .base import Driver, DriverConfig, FilePath, from_config_folder
from .httpclient import check_url
from .redfish_http import NotFound, RedfishClient
from .redfish_models import (
    AUTO_ORDER,
    EXPAND,
    ROOT,
    Reader,
    Walker,
    chassis_reader,
    expand_supported,
    history,
    ident,
    link,
    member_ids,
    norm,
    outlet_reader,
    value,
)

SAMPLE = """\
# A server's BMC over Redfish: the chassis' power (W) and, where the BMC counts it, energy (J).
[drivers.bmc-1]
type = "redfish"
period = 10.0                 # s between reads: BMCs refresh their power reading every 1-10 s
timeout = 8.0                 # s a read may take, login and first discovery included
url = "https://bmc-1.example.org"   # the BMC's address, http:// or https:// (/redfish/v1 is added)
verify_tls = true             # check the certificate; BMCs often have a self-signed one: see ca_file
# ca_file = "bmc-1-ca.pem"    # PEM of the CA to trust; relative paths (here too) are from this file's folder
username = "wattsight"        # a read-only account is enough
password_file = "/etc/wattsight/bmc-1.password"   # its password on the first line; or: password = "..."
auth = "session"              # "session" (log in once, out on stop) or "basic" (credentials on every GET)
chassis = ["all"]             # chassis ids to read, or ["all"]: the chassis that reports power
probe = "{host}"              # probe name, <site>.<probe>: e.g. "node-7"; {host}, {chassis} are filled in
source = "auto"               # or EnvironmentMetrics, PowerSubsystem, Power, Sensors, FastPowerMeter (HPE)
energy = true                 # publish the energy counter where the BMC has one
max_power = 50000.0           # W; a reading above this is refused as out of range

# A Redfish rack PDU: power (W) and energy (J) of each outlet.
[drivers.redfish-pdu]
type = "redfish"
period = 5.0
url = "https://pdu-1.example.org"
username = "wattsight"
password_file = "/etc/wattsight/pdu-1.password"
rack_pdu = "1"                # the PDU's id under /redfish/v1/PowerEquipment/RackPDUs
outlets = []                  # outlet ids to read, e.g. ["A1", "A2"]; [] = every outlet that measures power
probe = "{host}.{outlet}"     # probe names; {host}, {pdu}, {outlet} are filled in
outlet_probes = { A1 = "node-1", A2 = "node-2" }   # outlet id -> probe name, before `probe`
"""

SOURCES = Literal["auto", "EnvironmentMetrics", "PowerSubsystem", "Power", "Sensors", "FastPowerMeter"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@+-]")


def _safe(text: str) -> str:
    """``text`` usable in a probe id: other characters become '-'."""
    return _UNSAFE.sub("-", text)


class RedfishConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "redfish"``: one BMC or one rack PDU."""

    type: Literal["redfish"] = "redfish"
    period: float = Field(5.0, ge=0.02, le=86400, description="seconds between reads (BMCs refresh their "
                                                              "reading every 1-10 s)")
    url: str = Field(description="the service's address, http(s)://host[:port]; /redfish/v1 is added")
    verify_tls: bool = Field(True, description="check the https certificate (false: accept any, even "
                                               "self-signed)")
    ca_file: FilePath | None = Field(None, description="PEM file of the CA or certificate to trust for https")
    username: str = Field(description="the account to log in with (read-only rights are enough)")
    password: SecretStr | None = Field(None, description="its password (or give password_file)")
    password_file: FilePath | None = Field(None, description="a file whose first line is the password")
    auth: Literal["session", "basic"] = Field("session", description='"session" (X-Auth-Token, logged out on '
                                                                     'stop) or "basic" (on every request)')
    chassis: list[str] = Field(["all"], description='chassis ids to read, or ["all"] (each chassis with '
                                                     'power)')
    source: SOURCES = Field("auto", description="where a chassis' power is read; auto: the first it has of "
                                                "EnvironmentMetrics, PowerSubsystem, Power, Sensors")
    probe: str | None = Field(None, description='probe name template: {host}, {chassis}; for a PDU {host}, '
                                                '{pdu}, {outlet} (default "{host}", PDU "{host}.{outlet}")')
    rack_pdu: str | None = Field(None, description="read the outlets of this rack PDU id instead of chassis")
    outlets: list[str] = Field([], description="outlet ids to read; empty: every outlet that measures power")
    outlet_probes: dict[str, str] = Field({}, description="outlet id -> probe name (these outlets are read)")
    energy: bool = Field(True, description="publish the meter's energy counter (J) where it has one")
    max_power: float = Field(50_000.0, gt=0, description="W; a power reading above it is out of range")

    @field_validator("url")
    @classmethod
    def _origin(cls, url: str) -> str:
        parts = check_url(url)
        if parts.path.rstrip("/") not in ("", "/redfish/v1") or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: give the service's address only (https://host[:port])")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("ca_file", "password_file")
    @classmethod
    def _from_config_folder(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return from_config_folder(path, info)

    @field_validator("chassis", "outlets", "rack_pdu", mode="before")
    @classmethod
    def _ids(cls, value, info):
        """Ids as strings: ``rack_pdu = 1`` and ``chassis = "1U"`` (one id, not a list) are fine too."""
        def text(v):
            return str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if info.field_name == "rack_pdu":
            return text(value)
        return [text(v) for v in value] if isinstance(value, list) else [text(value)]

    @model_validator(mode="after")
    def _check(self) -> RedfishConfig:
        if not self.username:
            raise ValueError("`username` is empty")
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give `password` or `password_file` (one of them)")
        if not self.chassis or ("all" in self.chassis and len(self.chassis) > 1):
            raise ValueError('`chassis` lists chassis ids, or is ["all"]')
        pdu = self.rack_pdu is not None
        if not pdu and (self.outlets or self.outlet_probes):
            raise ValueError("`outlets` and `outlet_probes` need `rack_pdu` (the PDU to read)")
        if pdu and (self.chassis != ["all"] or self.source != "auto"):
            raise ValueError("`chassis` and `source` apply to BMCs, not with `rack_pdu`")
        allowed = {"host", "pdu", "outlet"} if pdu else {"host", "chassis"}
        names = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        if names - allowed:
            raise ValueError(f"`probe` {self.template!r}: unknown {sorted(names - allowed)}; "
                             f"use {sorted(allowed)}")
        wanted = self.outlets or list(self.outlet_probes)
        templated = [o for o in wanted if o not in self.outlet_probes]
        if pdu and "outlet" not in names and (not wanted or len(templated) > 1):
            raise ValueError("`probe` must contain {outlet} when several outlets are named by it")
        if not pdu and "chassis" not in names and len(self.chassis) > 1:
            raise ValueError("`probe` must contain {chassis} when several chassis are read")
        example = self.template.format(host="h", pdu="p", outlet="o", chassis="c")
        for name in [example, *self.outlet_probes.values()]:
            check_probe_id(f"site.{name}")
        return self

    @property
    def template(self) -> str:
        return self.probe or ("{host}.{outlet}" if self.rack_pdu is not None else "{host}")


@dataclass(frozen=True)
class Meter:
    """One probe and where its readings are."""

    probe: str
    reader: Reader


class RedfishDriver(Driver):
    """Redfish BMCs and rack PDUs: chassis or outlet power (W) and energy counters (J), over HTTP(S)."""

    Config = RedfishConfig
    SAMPLE = SAMPLE

    def __init__(self, config: RedfishConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(config, site=site, clock=clock)
        self.host = urlsplit(config.url).hostname or ""
        self.http = RedfishClient(origin=config.url, username=config.username, password_text=self._password,
                                  auth=config.auth, verify_tls=config.verify_tls, ca_file=config.ca_file,
                                  transport=transport)
        self._meters: list[Meter] | None = None
        self._walker: Walker | None = None          # discovery so far, kept if it ran out of time
        self._outlets: str | None = None            # the outlet collection, when one $expand GET reads it
        self._history_after: dict[str, int] = {}   # FastPowerMeter: ms of the last average published

    # -- names -------------------------------------------------------------------------------
    def _probe_id(self, *, chassis: str = "", outlet: str = "") -> str:
        cfg = self.config
        name = cfg.outlet_probes.get(outlet) if outlet else None
        name = name or cfg.template.format(host=_safe(self.host), chassis=_safe(chassis),
                                           outlet=_safe(outlet), pdu=_safe(cfg.rack_pdu or ""))
        return check_probe_id(f"{self.site}.{name}")

    def probes(self) -> list[Probe]:
        cfg, where = self.config, self.config.url
        common = {"driver": cfg.type, "period": cfg.period}
        if cfg.rack_pdu is not None:
            return [Probe(self._probe_id(outlet=o), **common,
                          description=f"Redfish rack PDU {cfg.rack_pdu} at {where}, outlet {o}")
                    for o in cfg.outlets or list(cfg.outlet_probes)]
        if cfg.chassis == ["all"]:
            if "{chassis}" in cfg.template:
                return []                    # which chassis there are is known once the BMC is asked
            return [Probe(self._probe_id(), description=f"Redfish BMC {where}", **common)]
        return [Probe(self._probe_id(chassis=c), description=f"Redfish BMC {where}, chassis {c}", **common)
                for c in cfg.chassis]

    def _password(self) -> str:
        cfg = self.config
        if cfg.password is not None:
            return cfg.password.get_secret_value()
        try:
            lines = cfg.password_file.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise MeterPermissionError(f"cannot read password_file {cfg.password_file} "
                                       f"({getattr(exc, 'strerror', None) or exc})", probe=cfg.url) from None
        if not lines or not lines[0]:
            raise MeterPermissionError(f"password_file {cfg.password_file} is empty", probe=cfg.url)
        return lines[0]

    # -- discovery ---------------------------------------------------------------------------
    def _discover(self) -> list[Meter]:
        w = self._walker = self._walker or Walker(self.http.get)
        try:
            meters = self._discover_with(w)
        except MeterUnreachable:
            raise                    # out of time or cut off: what was fetched is kept for the next read
        except DriverError:
            self._walker = None      # anything else may change on the BMC: look afresh next time
            raise
        self._walker = None
        return meters

    def _discover_with(self, w: Walker) -> list[Meter]:
        try:
            root = w.doc(ROOT)
        except NotFound:
            raise self._fail("no Redfish service here: GET /redfish/v1/ answered 404; is `url` the BMC's "
                             "address?") from None
        w.expand = expand_supported(root)
        if self.config.rack_pdu is not None:
            return self._discover_outlets(w, root)
        return self._discover_chassis(w, root)

    def _fail(self, message: str) -> MeterReplyError:
        return MeterReplyError(message, probe=self.config.url)

    def _discover_chassis(self, w: Walker, root: dict) -> list[Meter]:
        cfg = self.config
        coll = norm(link(root, "Chassis") or "/redfish/v1/Chassis")
        looked = (f"no {cfg.source} resource with a power reading (set source = \"auto\" to take what it has)"
                  if cfg.source != "auto" else f"none of {', '.join(AUTO_ORDER)} with a power reading")
        found = []
        if cfg.chassis == ["all"]:
            members, _ = w.members(coll)
            found = [(ident(p, d), chassis_reader(w, d, cfg.source, cfg.energy)) for p, d in members]
            found = [(c, r) for c, r in found if r is not None]
            if not found:
                raise self._fail(f"no chassis reports power: {[ident(p, d) for p, d in members]} "
                                 f"have {looked}")
            if len(found) > 1 and "{chassis}" not in cfg.template:
                raise self._fail(f"{len(found)} chassis report power ({[c for c, _ in found]}): set "
                                 "`chassis` to the one to read, or put {chassis} in `probe` to read each "
                                 "as a probe")
        for cid in [] if cfg.chassis == ["all"] else cfg.chassis:
            try:
                doc = w.doc(f"{coll}/{cid}")
            except NotFound:
                raise self._fail(f"no chassis {cid!r}: GET {coll}/{cid} answered 404; set `chassis` to one "
                                 f"of {member_ids(w.doc(coll))} or [\"all\"]") from None
            reader = chassis_reader(w, doc, cfg.source, cfg.energy)
            if reader is None:
                raise self._fail(f"chassis {cid!r} has {looked}")
            found.append((cid, reader))
        return [Meter(self._probe_id(chassis=c), r) for c, r in found]

    def _discover_outlets(self, w: Walker, root: dict) -> list[Meter]:
        cfg = self.config
        equipment = w.optional(link(root, "PowerEquipment") or "/redfish/v1/PowerEquipment") or {}
        pdus = norm(link(equipment, "RackPDUs") or "/redfish/v1/PowerEquipment/RackPDUs")
        path = f"{pdus}/{cfg.rack_pdu}"
        try:
            pdu = w.doc(path)
        except NotFound:
            raise self._fail(f"no rack PDU {cfg.rack_pdu!r}: GET {path} answered 404; set `rack_pdu` to "
                             f"one of {member_ids(w.optional(pdus))}") from None
        coll = norm(link(pdu, "Outlets") or path + "/Outlets")
        members, expanded = w.members(coll)
        by_id = {ident(p, d): (p, d) for p, d in members}
        wanted = cfg.outlets or list(cfg.outlet_probes)
        missing = [o for o in wanted if o not in by_id]
        if missing:
            raise self._fail(f"rack PDU {cfg.rack_pdu} has no outlet {missing} (it has {list(by_id)}): fix "
                             "`outlets` / `outlet_probes`")
        meters = []
        for oid in wanted or list(by_id):
            reader = outlet_reader(by_id[oid][0], by_id[oid][1], cfg.energy)
            if reader is not None:
                meters.append(Meter(self._probe_id(outlet=oid), reader))
            elif wanted:
                raise self._fail(f"outlet {oid} of rack PDU {cfg.rack_pdu} measures no power (an "
                                 "un-monitored outlet): leave it out of `outlets` / `outlet_probes`")
        if not meters:
            raise self._fail(f"no outlet of rack PDU {cfg.rack_pdu} measures power ({list(by_id)})")
        self._outlets = coll if expanded else None
        return meters

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> Batch:
        self.http.begin(self.config.read_timeout * 0.9)
        if self._meters is None:
            self._meters = self._discover()
        try:
            return Batch.of(self._read(self._meters))
        except NotFound as exc:
            self._meters, self._outlets = None, None
            raise self._fail(f"{norm(exc.path)} answered 404, though it was there before (a firmware update "
                             "or reconfiguration?); the next read looks for the power resources "
                             "again") from None

    def _read(self, meters: list[Meter]) -> list[Sample]:
        cfg, docs = self.config, {}
        if self._outlets:
            coll = self.http.get(self._outlets + EXPAND)
            t = self.clock()
            docs = {norm(m["@odata.id"]): (m, t) for m in coll.get("Members") or []
                    if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)}
        samples = []
        for meter in meters:
            if meter.reader.history:
                samples += self._read_history(meter)
                continue
            for path in meter.reader.paths:
                if norm(path) not in docs:
                    docs[norm(path)] = (self.http.get(path), self.clock())
            t = max(docs[norm(p)][1] for p in meter.reader.paths) / 1000
            watts = sum(value(docs[norm(s.path)][0], s, limit=cfg.max_power, probe=cfg.url)
                        for s in meter.reader.power)
            samples.append(Sample(meter.probe, "power", t, watts, "W"))
            if meter.reader.energy:
                joules = sum(value(docs[norm(s.path)][0], s, limit=None, probe=cfg.url)
                             for s in meter.reader.energy)
                samples.append(Sample(meter.probe, "energy", t, joules, "J", "counter"))
        return samples

    def _read_history(self, meter: Meter) -> list[Sample]:
        """The HPE power meter's averages newer than those already published, at the iLO's times."""
        path = meter.reader.history
        rows = history(self.http.get(path), path, after_ms=self._history_after.get(meter.probe, -1),
                       limit=self.config.max_power, probe=self.config.url)
        if rows:
            self._history_after[meter.probe] = rows[-1][0]
        return [Sample(meter.probe, "power", t / 1000, watts, "W") for t, watts in rows]

    def close(self) -> None:
        self.http.close()
