"""What the SNMP drivers share: the agent's settings and a small synchronous GET client.

:class:`SnmpClient` runs pysnmp 7's asyncio API on an event loop of its own, inside the thread
that calls it (the runner gives each driver one thread), so ``read()`` stays a plain function.
It asks for numeric OIDs only (``lookupMib=False``: no MIB files are needed nor loaded), puts
every OID of a read in **one GET** (split in several, sent together, only when the agent's
``max_varbinds`` says so), and turns what pysnmp reports into wattsight's errors: no answer
before the deadline is :class:`MeterUnreachable`, a refused SNMPv3 user or key is
:class:`MeterAuthError`, an error status is :class:`MeterReplyError`.  An OID the agent does not
have comes back as a :class:`Missing` value: only the driver knows what it meant and what to set.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..errors import MeterAuthError, MeterReplyError, MeterUnreachable, MissingDependency
from .base import DriverConfig

AUTH = ("none", "md5", "sha", "sha224", "sha256", "sha384", "sha512")
PRIV = ("none", "des", "3des", "aes", "aes192", "aes256")
#: pysnmp's error indications that mean "the agent refused our SNMPv3 credentials".
AUTH_ERRORS = {
    "UnknownUserName": "unknown user: check `user`",
    "WrongDigest": "wrong digest: check `auth_key` and `auth_protocol`",
    "DecryptionError": "cannot decrypt: check `priv_key` and `priv_protocol`",
    "UnknownSecurityName": "unknown security name: check `user`",
    "UnsupportedSecurityLevel": "security level not supported for this user: check `auth_protocol` "
                                "and `priv_protocol`",
    "AuthenticationFailure": "authentication failure: check the credentials",
    "AuthenticationError": "authentication error: check `auth_key` and `auth_protocol`",
    "UnknownCommunityName": "unknown community: check `community`",
    "NoSuchContext": "unknown context: check `context`",
}


def int_as_text(v):
    """A choice written as a TOML integer (``version = 3``, ``counters = 64``) as the text it stands for."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class SnmpConfig(DriverConfig):
    """The agent and how to talk to it: common to ``snmp`` and ``snmp-switch`` sections."""

    host: str = Field(description="the agent's address: host name or IP")
    port: int = Field(161, ge=1, le=65535, description="the agent's UDP port")
    version: Literal["1", "2c", "3"] = Field("2c", description='SNMP version: "1", "2c" or "3"')
    community: SecretStr = Field(SecretStr("public"), description="v1/v2c community (a secret: never logged)")
    user: str = Field("", description="v3 user name (USM security name)")
    auth_protocol: Literal[AUTH] = Field("sha", description=f"v3 authentication: {', '.join(AUTH)}")
    auth_key: SecretStr = Field(SecretStr(""), description="v3 authentication pass phrase, at least 8 characters")
    priv_protocol: Literal[PRIV] = Field("aes", description=f"v3 privacy (encryption): {', '.join(PRIV)}")
    priv_key: SecretStr = Field(SecretStr(""), description="v3 privacy pass phrase, at least 8 characters")
    context: str = Field("", description="v3 context name (most agents: empty)")
    retries: int = Field(1, ge=0, le=5, description="requests re-sent after no answer, within the time-out")
    max_varbinds: int = Field(0, ge=0, description="OIDs per GET the agent accepts; 0: no limit "
                                                   "(all in one request)")

    _version_text = field_validator("version", mode="before")(int_as_text)

    @model_validator(mode="after")
    def _v3(self) -> SnmpConfig:
        if self.version != "3":
            return self
        if not self.user:
            raise ValueError('version = "3" needs `user`')
        if self.priv_protocol != "none" and self.auth_protocol == "none":
            raise ValueError("SNMPv3 privacy needs authentication: set `auth_protocol`")
        for key, proto in (("auth_key", self.auth_protocol), ("priv_key", self.priv_protocol)):
            if proto != "none" and len(getattr(self, key).get_secret_value()) < 8:
                raise ValueError(f"`{key}` must have at least 8 characters (RFC 3414)")
        return self

    @property
    def agent(self) -> str:
        return f"{self.host}:{self.port}"


class Missing:
    """An OID the agent does not have: ``kind`` is noSuchObject, noSuchInstance, endOfMibView,
    noSuchName (SNMPv1) or ``unknown`` (SNMPv1 stops at the first bad OID of a request)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"Missing({self.kind})"


class SnmpClient:
    """GETs and walks against one agent, synchronously, from the thread that calls them."""

    def __init__(self, config: SnmpConfig, *, what: str) -> None:
        self.config = config
        self.what = what  # e.g. "PDU (probes local.pdu-1-1 ... local.pdu-1-24)", for messages
        self.deadline = config.read_timeout * 0.9
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine = self._target = None
        self._requests: dict[tuple[str, ...], list] = {}
        self._lock = threading.Lock()
        self._busy = self._closing = False
        self._size = 0  # OIDs in the largest request of the current call

    # -- set-up ----------------------------------------------------------------------------
    def _setup(self) -> None:
        """The SNMP engine and its configuration for this agent (CPU only: before the deadline)."""
        if self._engine is not None:
            return
        try:
            import pysnmp.hlapi.v3arch.asyncio as hl
        except ImportError:
            raise MissingDependency("pysnmp", "snmp", "the SNMP drivers") from None
        self._hl = hl
        self._loop = self._loop or asyncio.new_event_loop()
        self._engine = hl.SnmpEngine()
        self._auth = self._credentials(hl)

    def _credentials(self, hl):
        cfg = self.config
        if cfg.version != "3":
            return hl.CommunityData(cfg.community.get_secret_value(), mpModel=0 if cfg.version == "1" else 1)
        auth = {"none": hl.usmNoAuthProtocol, "md5": hl.usmHMACMD5AuthProtocol, "sha": hl.usmHMACSHAAuthProtocol,
                "sha224": hl.usmHMAC128SHA224AuthProtocol, "sha256": hl.usmHMAC192SHA256AuthProtocol,
                "sha384": hl.usmHMAC256SHA384AuthProtocol, "sha512": hl.usmHMAC384SHA512AuthProtocol}
        priv = {"none": hl.usmNoPrivProtocol, "des": hl.usmDESPrivProtocol, "3des": hl.usm3DESEDEPrivProtocol,
                "aes": hl.usmAesCfb128Protocol, "aes192": hl.usmAesCfb192Protocol,
                "aes256": hl.usmAesCfb256Protocol}
        return hl.UsmUserData(cfg.user, cfg.auth_key.get_secret_value() or None,
                              cfg.priv_key.get_secret_value() or None,
                              authProtocol=auth[cfg.auth_protocol], privProtocol=priv[cfg.priv_protocol])

    async def _connect(self) -> None:
        if self._target is not None:
            return
        from pysnmp.error import PySnmpError

        hl, cfg = self._hl, self.config
        try:
            target = await hl.UdpTransportTarget.create((cfg.host, cfg.port), timeout=self.deadline / (cfg.retries + 1),
                                                        retries=cfg.retries)
        except PySnmpError as exc:  # the name does not resolve
            raise MeterUnreachable(f"cannot resolve the SNMP agent's address ({exc}); check `host`",
                                   probe=cfg.agent) from None
        from pysnmp.hlapi.v3arch.asyncio.cmdgen import LCD

        self._address, _ = LCD.configure(self._engine, self._auth, target, cfg.context)
        self._target = target

    def _run(self, coro):
        with self._lock:
            self._busy = True
        loop = engine = None
        try:
            self._setup()
            loop, engine = self._loop, self._engine
            return loop.run_until_complete(self._with_deadline(coro))
        finally:
            with self._lock:
                self._busy = False
                closing = self._closing
            if closing:  # close() came while this read ran (the runner gave up on it): finish it here
                self._loop = self._engine = self._target = None
                _shut(loop, engine)

    async def _with_deadline(self, coro):
        try:
            return await asyncio.wait_for(coro, self.deadline)
        except TimeoutError:
            raise self._no_answer() from None

    async def _send(self, generator, *args, oids: list[str]) -> tuple[int, int, list[tuple]]:
        """One request of ``generator`` (pysnmp's GET, GETNEXT or GETBULK) for ``oids``: the
        reply's error status (0, or 2 for SNMPv1's noSuchName), error index and var-binds.

        Numeric OIDs go to pysnmp's command generators as they are: nothing is looked up in MIBs.
        """
        request = self._requests.get(tuple(oids))
        if request is None:
            from pyasn1.type.univ import Null
            from pysnmp.proto.rfc1902 import ObjectName

            request = self._requests[tuple(oids)] = [(ObjectName(o), Null("")) for o in oids]
        future = asyncio.get_running_loop().create_future()

        def done(engine, handle, indication, status, index, binds, context) -> None:
            if not future.done():
                future.set_result((indication, status, index, binds))

        generator.send_varbinds(self._engine, self._address, None, self.config.context, *args, request, done)
        indication, status, index, binds = await future
        self._check(indication, status, index, oids)
        return int(status or 0), int(index or 0), list(binds)

    # -- requests --------------------------------------------------------------------------
    def get(self, oids: list[str]) -> list:
        """The values of ``oids``, in order, from one GET (or one per ``max_varbinds`` OIDs, sent
        together): ints for numbers, bytes for strings, :class:`Missing` for absent OIDs."""
        return self._run(self._get(oids))

    async def _get(self, oids: list[str]) -> list:
        await self._connect()
        size = self.config.max_varbinds or len(oids) or 1
        self._size = min(size, len(oids))
        chunks = [oids[i:i + size] for i in range(0, len(oids), size)]
        parts = await asyncio.gather(*(self._get_chunk(c) for c in chunks))
        return [v for part in parts for v in part]

    async def _get_chunk(self, oids: list[str]) -> list:
        from pysnmp.entity.rfc3413.cmdgen import GetCommandGenerator

        status, index, binds = await self._send(GetCommandGenerator(), oids=oids)
        if status == 2:  # SNMPv1 noSuchName: only the OID at `index` is known to be bad
            return [Missing("noSuchName") if i == index - 1 else Missing("unknown") for i in range(len(oids))]
        if len(binds) != len(oids):
            raise MeterReplyError(f"the agent of the {self.what} answered {len(binds)} values for {len(oids)} OIDs",
                                  probe=self.config.agent)
        return [python_value(v) for _, v in binds]

    def walk(self, oid: str) -> list[tuple[str, object]]:
        """(OID, value) of every object under ``oid`` (GETBULK; GETNEXT with SNMPv1)."""
        return self._run(self._walk(oid))

    async def _walk(self, oid: str) -> list[tuple[str, object]]:
        from pysnmp.entity.rfc3413.cmdgen import BulkCommandGenerator, NextCommandGenerator

        await self._connect()
        self._size, out, prefix, at = 1, [], oid.strip(".") + ".", oid.strip(".")
        while True:
            if self.config.version == "1":
                status, _, binds = await self._send(NextCommandGenerator(), oids=[at])
            else:
                status, _, binds = await self._send(BulkCommandGenerator(), 0, 25, oids=[at])
            if status == 2:  # SNMPv1: the end of the MIB
                return out
            for name, value in binds:
                name, value = str(name), python_value(value)
                if not name.startswith(prefix) or isinstance(value, Missing):
                    return out
                out.append((name, value))
            if not binds or name == at:
                return out
            at = name

    # -- errors ----------------------------------------------------------------------------
    def _no_answer(self) -> MeterUnreachable:
        cfg = self.config
        creds = "community" if cfg.version != "3" else "v3 user and keys"
        big = (f" (one request asked for {self._size} OIDs: an agent that drops big requests answers smaller "
               "ones; then set `max_varbinds`)") if self._size > 10 and not cfg.max_varbinds else ""
        return MeterUnreachable(
            f"no answer: host down or wrong community/credentials (SNMP v{cfg.version} agent of the {self.what}, "
            f"nothing within {self.deadline:.3g} s); check `host`, `port`, `version` and the "
            f"{creds}{big}", probe=cfg.agent)

    def _check(self, indication, status, index, oids: list[str]) -> None:
        cfg, code, index = self.config, int(status or 0), int(index or 0)
        if indication:
            name = type(indication).__name__
            if name == "RequestTimedOut":
                raise self._no_answer()
            if name in AUTH_ERRORS:
                raise MeterAuthError(f"the SNMP agent refused v{cfg.version} user {cfg.user!r} of the {self.what}: "
                                     f"{AUTH_ERRORS[name]}", probe=cfg.agent)
            raise MeterReplyError(f"SNMP error from the agent of the {self.what}: {indication}", probe=cfg.agent)
        if code in (0, 2):
            return
        where = f" at {oids[index - 1]}" if 0 < index <= len(oids) else ""
        name = status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
        if code == 1:  # tooBig
            raise MeterReplyError(f"the agent of the {self.what} says a reply of {len(oids)} OIDs is too big; "
                                  f"set `max_varbinds` (e.g. {max(1, len(oids) // 2)})", probe=cfg.agent)
        raise MeterReplyError(f"the agent of the {self.what} answered error {name}{where}",
                              probe=cfg.agent)

    def close(self) -> None:
        """Close the socket and the loop.  Safe from another thread while a read runs (that read
        closes them when it ends) and from inside a running event loop (the runner's)."""
        with self._lock:
            self._closing = True
            if self._busy:
                return
            loop, engine = self._loop, self._engine
            self._loop = self._engine = self._target = None
        if loop is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop running in this thread: ours can run here
            _shut(loop, engine)
            return
        worker = threading.Thread(target=_shut, args=(loop, engine), name="snmp-close")
        worker.start()
        worker.join()


def _shut(loop: asyncio.AbstractEventLoop | None, engine) -> None:
    """Close the engine's socket, let its timer task see its cancellation, close the loop."""
    if loop is None or loop.is_closed():
        return
    if engine is not None:
        engine.close_dispatcher()
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending))
    loop.close()


def fill(template: str, key: str, **values) -> str:
    """``template`` with its ``{placeholders}`` replaced; a ValueError naming ``key`` if one is unknown."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        names = ", ".join("{" + k + "}" for k in values)
        raise ValueError(f"`{key}` = {template!r}: only {names} may be used") from None


def host_label(host: str) -> str:
    """The agent's host as a part of a probe name: dots and colons become dashes (10-0-4-12)."""
    return host.replace(".", "-").replace(":", "-")


def python_value(value) -> object:
    """A pysnmp value as Python: int for numbers, bytes for strings, Missing for absent OIDs."""
    name = type(value).__name__
    if name in ("NoSuchObject", "NoSuchInstance", "EndOfMibView"):
        return Missing(name[0].lower() + name[1:])
    if name in ("OctetString", "DisplayString", "Opaque", "IpAddress", "Bits"):
        return bytes(value.asOctets())
    if name == "ObjectIdentifier":
        return str(value)
    return int(value)


def type_name(value: object) -> str:
    """How an unexpected value is named in messages."""
    if isinstance(value, Missing):
        return value.kind
    if isinstance(value, bytes):
        return f"the string {value[:40]!r}"
    if isinstance(value, str):
        return f"the OID {value}"
    return f"{type(value).__name__} {value!r}"
