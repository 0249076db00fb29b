"""wattsight driver for smart plugs that publish over MQTT: Shelly Gen2+, Tasmota, or any JSON.

One section is one broker connection feeding any number of plugs.  The driver subscribes to
each plug's topics and turns every message into samples: power (W), energy (J, a counter) and
``up`` (1 online, 0 offline, from the plug's last will); the messages arriving within ``linger``
seconds of the one that woke it go out as one batch (see :mod:`.mqtt_inbox`).  A message is
stamped with the plug's own timestamp when it gives one within ``clock_skew`` of ours, else with
the time it arrived.  The MQTT client is aiomqtt (on paho-mqtt), driven by the runner's event loop.

A payload that cannot be read is counted per plug and logged once (topic and path), never
dropped silently; it does not end the stream, as the other plugs are fine.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from ..errors import DriverError, MeterAuthError, MeterPermissionError, MeterUnreachable, MissingDependency
from ..sample import Batch, Probe, Series, now_ms
from . import mqtt_formats as fmt
from .base import Driver, DriverConfig, FilePath, from_config_folder, site_probe
from .mqtt_inbox import Columns, Inbox

log = logging.getLogger(__name__)

SAMPLE = """\
# Smart plugs publishing over MQTT: power (W), energy (J) and up (1 online, 0 offline) per plug.
[drivers.smartplugs]
type = "mqtt"
host = "mqtt.example.org"     # the MQTT broker
port = 1883                   # 8883 for TLS, usually
# username = "wattsight"      # if the broker wants credentials
# password = "..."            # keep this file readable by wattsight only
tls = false                   # true: TLS, checking the broker's certificate
# ca_file = "broker-ca.pem"   # the CA of the broker's certificate (default: the system's CAs)
keepalive = 30                # s; a silent broker is given up after 1.5 x keepalive
linger = 0.05                 # s; messages arriving this soon after the first go out in one batch
clock_skew = 10.0             # s; a plug's own timestamp is used when it is this close to ours

[[drivers.smartplugs.plugs]]  # a Shelly Plus Plug S, Plus 1PM, Pro 4PM...
probe = "desk-1"              # probe id; a name without a dot gets "<site>." in front
format = "shelly"
topic = "shellyplusplugs-a8032abe54dc"   # its MQTT topic prefix (default: the device id)
component = "switch:0"        # the metered component: switch:N or pm1:N

[[drivers.smartplugs.plugs]]  # a plug running Tasmota
probe = "desk-2"
format = "tasmota"
topic = "plug001"             # its Topic
full_topic = "%prefix%/%topic%/"         # its FullTopic
channel = 0                   # multi-channel devices: 1, 2... or 0 for the sum

[[drivers.smartplugs.plugs]]  # anything else that publishes JSON (here Zigbee2MQTT)
probe = "rack-3"
format = "json"
topic = "zigbee2mqtt/rack-3-plug"
power_path = "power"          # dotted path of the power in the payload, e.g. "ENERGY.Power"
power_scale = 1.0             # W per unit of power_path
energy_path = "energy"        # dotted path of the energy counter
energy_scale = 3600000.0      # J per unit of energy_path: 3600 for Wh, 3600000 for kWh
availability_topic = "zigbee2mqtt/rack-3-plug/availability"   # online/offline
"""


class PlugConfig(BaseModel):
    """One plug of an ``mqtt`` section (``[[drivers.<name>.plugs]]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    probe: str = Field(description="the probe id; a name without a dot gets '<site>.' in front")
    format: Literal["shelly", "tasmota", "json"] = Field(description="what the plug publishes")
    topic: str = Field(min_length=1, description="shelly: the topic prefix; tasmota: the Topic; "
                                                 "json: the topic of the payload (wildcards allowed)")
    component: str = Field("switch:0", pattern=r"^[a-z0-9]+:\d+$",
                           description="shelly: the metered component, switch:N or pm1:N")
    full_topic: str = Field("%prefix%/%topic%/", description="tasmota: the plug's FullTopic")
    channel: int = Field(0, ge=0, description="tasmota: channel of multi-channel devices (1...), 0: the sum")
    power_path: str | None = Field(None, min_length=1, description="json: dotted path of the power")
    power_scale: float = Field(1.0, gt=0, description="json: W per unit of power_path")
    energy_path: str | None = Field(None, min_length=1, description="json: dotted path of the energy counter")
    energy_scale: float = Field(3600.0, gt=0, description="json: J per unit of energy_path (3600: Wh)")
    time_path: str | None = Field(None, min_length=1,
                                  description="json: dotted path of the plug's timestamp (s, ms or ISO 8601)")
    availability_topic: str | None = Field(None, min_length=1,
                                           description="json: topic saying online/offline")

    @model_validator(mode="after")
    def _check(self) -> PlugConfig:
        site_probe(self.probe, "site")
        own = {"shelly": {"component"}, "tasmota": {"full_topic", "channel"},
               "json": {"power_path", "power_scale", "energy_path", "energy_scale", "time_path",
                        "availability_topic"}}
        foreign = sorted(self.model_fields_set - own[self.format] - {"probe", "format", "topic"})
        if foreign:
            raise ValueError(f"plug {self.probe}: {', '.join(foreign)} do not apply to "
                             f"format {self.format!r}")
        if self.format == "json" and not (self.power_path or self.energy_path):
            raise ValueError(f"plug {self.probe}: format 'json' needs power_path or energy_path")
        if self.format != "json" and ("+" in self.topic or "#" in self.topic):
            raise ValueError(f"plug {self.probe}: a {self.format} topic names one device: "
                             "no + or # wildcards")
        if self.format == "tasmota" and not {"%prefix%", "%topic%"} <= set(_placeholders(self.full_topic)):
            raise ValueError(f"plug {self.probe}: full_topic must contain %prefix% and %topic%")
        return self


class MqttConfig(DriverConfig):
    """Settings of ``[drivers.<name>]`` with ``type = "mqtt"``."""

    type: Literal["mqtt"] = "mqtt"
    host: str = Field(min_length=1, description="the MQTT broker's host name or address")
    port: int = Field(1883, ge=1, le=65535, description="the broker's port (1883; 8883 for TLS)")
    username: str | None = Field(None, description="user name for the broker, if it wants one")
    password: SecretStr | None = Field(None, description="password for the broker (never logged)")
    tls: bool = Field(False, description="connect with TLS, checking the broker's certificate")
    ca_file: FilePath | None = Field(None, description="PEM file of the CA that signed the broker's "
                                                       "certificate; default: the system's CAs")
    cert_file: FilePath | None = Field(None, description="PEM client certificate, if the broker wants one")
    key_file: FilePath | None = Field(None, description="PEM key of cert_file")
    tls_check_hostname: bool = Field(True, description="check that the certificate names `host`")
    client_id: str = Field("", description="MQTT client id; empty: a random one")
    keepalive: int = Field(30, ge=5, le=3600, description="s between pings; a silent broker is given "
                                                          "up after 1.5 x keepalive")
    clock_skew: float = Field(10.0, ge=0, description="s; a plug's own timestamp is used when it is "
                                                      "within this of the arrival time")
    linger: float = Field(0.05, ge=0, description="s (at most period); the messages arriving this soon after "
                                                  "the first go out in one batch (0: those already queued)")
    plugs: list[PlugConfig] = Field(min_length=1, description="the plugs: probe, format, topic and "
                                                              "the keys of their format")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _from_config_folder(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return from_config_folder(path, info)

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        names = [p.probe for p in self.plugs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"plugs: probe {', '.join(twice)} given twice")
        if (self.ca_file or self.cert_file or self.key_file) and not self.tls:
            raise ValueError("ca_file, cert_file and key_file need tls = true")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        return self


def _placeholders(template: str) -> list[str]:
    import re

    return re.findall(r"%[a-z]+%", template)


def routes(plug: PlugConfig) -> list[tuple[str, Callable[[bytes], fmt.Reading | None]]]:
    """(topic filter, parser) for each topic a plug publishes on."""
    if plug.format == "shelly":
        p = plug.topic
        return [(f"{p}/status/{plug.component}", partial(fmt.shelly_status, component=plug.component)),
                (f"{p}/events/rpc", partial(fmt.shelly_rpc, component=plug.component)),
                (f"{p}/online", fmt.shelly_online)]
    if plug.format == "tasmota":
        full = plug.full_topic if plug.full_topic.endswith("/") else plug.full_topic + "/"

        def at(prefix: str, leaf: str) -> str:
            return full.replace("%prefix%", prefix).replace("%topic%", plug.topic) + leaf

        return [(at("tele", "SENSOR"), partial(fmt.tasmota_sensor, channel=plug.channel)),
                (at("stat", "STATUS10"), partial(fmt.tasmota_status, channel=plug.channel)),
                (at("stat", "STATUS8"), partial(fmt.tasmota_status, channel=plug.channel)),
                (at("tele", "LWT"), fmt.tasmota_lwt)]
    out = [(plug.topic, partial(fmt.json_values, power_path=plug.power_path, energy_path=plug.energy_path,
                                power_scale=plug.power_scale, energy_scale=plug.energy_scale,
                                time_path=plug.time_path))]
    if plug.availability_topic:
        out.append((plug.availability_topic, fmt.availability))
    return out


def _aiomqtt():
    try:
        import aiomqtt
    except ImportError:
        raise MissingDependency("aiomqtt", "mqtt", "the mqtt (smart plug) driver") from None
    return aiomqtt


class MqttDriver(Driver):
    """Smart plugs over MQTT (Shelly Gen2+, Tasmota, any JSON): power, energy and up per plug."""

    Config = MqttConfig
    SAMPLE = SAMPLE
    push = True
    #: The most messages in one batch (a flood is cut into batches of this many).
    MAX_BATCH = 1000
    METRICS = (("power", "W", "gauge"), ("energy", "J", "counter"), ("up", "1", "gauge"))

    def __init__(self, config: MqttConfig, *, site: str, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(config, site=site, clock=clock)
        self.ids = [site_probe(p.probe, site) for p in config.plugs]
        #: Every series the plugs can give: plug i's metric k is ``table[3 * i + k]``.
        self.table = tuple(Series(pid, m, u, k) for pid in self.ids for m, u, k in self.METRICS)
        self.exact: dict[str, list[tuple[int, Callable]]] = {}
        self.wild: list[tuple[str, int, Callable]] = []
        for i, plug in enumerate(config.plugs):
            for topic, parse in routes(plug):
                if "+" in topic or "#" in topic:
                    self.wild.append((topic, i, parse))
                else:
                    self.exact.setdefault(topic, []).append((i, parse))
        self.online: dict[int, int] = {}          # plug -> last up value seen on this connection
        self.rejected: dict[str, int] = {}        # probe -> payloads that could not be read
        self._skew_told: set[int] = set()

    @property
    def broker(self) -> str:
        return f"mqtt://{self.config.host}:{self.config.port}"

    def probes(self) -> list[Probe]:
        cfg = self.config
        return [Probe(pid, driver=cfg.type, description=f"{plug.format} plug {plug.topic} on {self.broker}")
                for pid, plug in zip(self.ids, cfg.plugs)]

    def topics(self) -> list[str]:
        """Every topic filter the driver subscribes to."""
        return list(self.exact) + list(dict.fromkeys(t for t, _, _ in self.wild))

    # -- the stream -------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[Batch]:
        aiomqtt = _aiomqtt()
        client = self._client(aiomqtt)
        try:
            async with client:
                await self._subscribe(client)
                inbox = Inbox(client.messages)
                try:
                    while True:
                        batch = await self.gather(inbox)
                        if len(batch):
                            yield batch
                finally:
                    inbox.close()
        except aiomqtt.MqttError as exc:
            raise self._error(exc, aiomqtt) from None

    async def gather(self, inbox: Inbox) -> Batch:
        """The samples of the next message and of those arriving within ``linger`` s of it, as one batch."""
        loop = asyncio.get_running_loop()
        cols = Columns(self.table)
        message = await inbox.next()
        deadline = loop.time() + min(self.config.linger, self.config.period)
        for taken in range(1, self.MAX_BATCH + 1):
            self.take(message.topic.value, message.payload, int(self.clock()), cols)
            if taken == self.MAX_BATCH:
                break
            message = await inbox.next(deadline - loop.time())
            if message is None:
                break
        return cols.batch()

    def _client(self, aiomqtt):
        cfg = self.config
        tls = None
        if cfg.tls:
            import ssl

            for key in ("ca_file", "cert_file", "key_file"):
                path = getattr(cfg, key)
                if path is not None and not os.access(path, os.R_OK):
                    why = "permission denied" if path.exists() else "no such file"
                    raise MeterPermissionError(f"cannot read {key} {path}: {why}", probe=self.broker)
            tls = aiomqtt.TLSParameters(ca_certs=_str(cfg.ca_file), certfile=_str(cfg.cert_file),
                                        keyfile=_str(cfg.key_file), cert_reqs=ssl.CERT_REQUIRED)
        return aiomqtt.Client(
            cfg.host, cfg.port, username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            identifier=cfg.client_id or None, timeout=cfg.read_timeout, keepalive=cfg.keepalive,
            tls_params=tls, tls_insecure=(not cfg.tls_check_hostname) if cfg.tls else None,
            logger=log.getChild("client"))

    async def _subscribe(self, client) -> None:
        topics = self.topics()
        granted = await client.subscribe([(t, 1) for t in topics])
        for topic, code in zip(topics, granted):
            value = getattr(code, "value", code)
            if value >= 0x80:
                who = f"user {self.config.username!r}" if self.config.username else "an anonymous client"
                raise MeterAuthError(f"the broker refused the subscription to {topic!r} ({code}): does the "
                                     f"broker's ACL let {who} read it?", probe=self.broker)

    def _error(self, exc: Exception, aiomqtt) -> DriverError:
        from aiomqtt.exceptions import MqttConnectError

        code = getattr(exc, "rc", None)
        value = getattr(code, "value", code)
        user = self.config.username
        if isinstance(exc, MqttConnectError) and value in (4, 5, 134, 135):
            who = f"user {user!r}" if user else "an anonymous client"
            return MeterAuthError(f"the broker refused {who} ({exc}): check `username` and `password`",
                                  probe=self.broker)
        if isinstance(exc, MqttConnectError):
            return MeterUnreachable(f"the broker refused the connection ({exc})", probe=self.broker)
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "hostname mismatch" in str(exc).lower():
            return MeterUnreachable(f"the broker's certificate is not trusted ({exc}): set `ca_file` to the "
                                    "CA that signed it (and check that it names `host`)", probe=self.broker)
        if "Disconnected" in str(exc):
            return MeterUnreachable(f"lost the connection to the broker ({exc}); reconnecting",
                                    probe=self.broker)
        return MeterUnreachable(f"cannot reach the broker ({exc}): is it running, and are `host` and `port` "
                                "right?", probe=self.broker)

    # -- messages -> samples ------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, t_ms: int) -> Batch:
        """The samples in one message that arrived at ``t_ms``; unreadable payloads are counted."""
        cols = Columns(self.table)
        self.take(topic, payload, t_ms, cols)
        return cols.batch()

    def take(self, topic: str, payload: bytes, t_ms: int, cols: Columns) -> None:
        """Add the samples of one message that arrived at ``t_ms`` to ``cols``; count unreadable payloads."""
        targets = list(self.exact.get(topic, ()))
        if self.wild:
            from aiomqtt import Topic

            targets += [(i, parse) for flt, i, parse in self.wild if Topic(topic).matches(flt)]
        for i, parse in targets:
            try:
                reading = parse(payload)
            except fmt.PayloadError as exc:
                self._reject(i, topic, str(exc))
                continue
            if reading is not None:
                self._samples(i, reading, t_ms, cols)

    def _samples(self, i: int, r: fmt.Reading, t_ms: int, cols: Columns) -> None:
        when = self._when(i, r.time, t_ms)
        if r.up is not None:
            self._transition(i, r.up)
        for k, value in enumerate((r.power, r.energy, r.up)):
            if value is not None:
                cols.add(3 * i + k, when, value)

    def _when(self, i: int, meter_s: float | None, t_ms: int) -> int:
        """The plug's own time if it is within ``clock_skew`` of the arrival, else the arrival."""
        if meter_s is None:
            return t_ms
        meter_ms = round(meter_s * 1000)
        if abs(meter_ms - t_ms) <= self.config.clock_skew * 1000:
            return meter_ms
        if i not in self._skew_told:
            self._skew_told.add(i)
            log.warning("%s: plug %s: its timestamp is %+.0f s off this host's clock: its samples are "
                        "stamped when they arrive (a Tasmota without a time zone in Time: SetOption52 1)",
                        self.broker, self.ids[i], (meter_ms - t_ms) / 1000)
        return t_ms

    def _transition(self, i: int, up: int) -> None:
        before = self.online.get(i)
        self.online[i] = up
        if up == before or (before is None and up):
            return
        if up:
            log.warning("%s: plug %s is online again", self.broker, self.ids[i])
        else:
            log.warning("%s: plug %s is OFFLINE (its last will); its up metric is 0", self.broker,
                        self.ids[i])

    def _reject(self, i: int, topic: str, reason: str) -> None:
        probe = self.ids[i]
        self.rejected[probe] = self.rejected.get(probe, 0) + 1
        if self.rejected[probe] == 1:
            log.warning("%s: plug %s: payload on %r skipped: %s (expected %s); further unreadable payloads "
                        "of this plug are counted, not logged", self.broker, probe, topic, reason,
                        _EXPECTED[self.config.plugs[i].format])

    def close(self) -> None:
        for probe, n in self.rejected.items():
            if n > 1:
                log.warning("%s: plug %s: %d unreadable payloads skipped on this connection", self.broker,
                            probe, n)


_EXPECTED = {"shelly": "a Shelly Gen2 status with apower and aenergy.total",
             "tasmota": "a Tasmota SENSOR with ENERGY.Power and ENERGY.Total",
             "json": "JSON with the configured paths"}


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None
