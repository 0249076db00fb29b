"""A private mosquitto broker, and smart plugs that publish to it the way real ones do.

:class:`Mosquitto` runs ``mosquitto -c <conf>`` on free ports of 127.0.0.1: an anonymous listener
(``port``) and one that wants a user and password (``auth_port``, users in ``users``).  ``stop()``
ends it and ``start()`` runs it again on the SAME ports::

    with Mosquitto(tmp_path) as broker:
        with TasmotaPlug(broker.port, "plug001") as plug:
            plug.sensor(power=56.0, total_kwh=514.153)

The plugs connect as the devices do, each with its last will: a Shelly Gen2 (``<prefix>/online``
``false``) and a Tasmota (``tele/<topic>/LWT`` ``Offline``, retained).  ``crash()`` drops the
connection without a goodbye so that the broker publishes the will, as when a plug loses power.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import paho.mqtt.client as mqtt

from ._common import PeerMissing, free_port, stop_process, tcp_listens, wait_until


class Mosquitto:
    """A mosquitto broker of our own: ``port`` anonymous, ``auth_port`` with the ``users``."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.folder = Path(folder)
        self.users = {"meter": "s3cret"} if users is None else users
        self.port, self.auth_port = free_port(), free_port()
        #: With ``tls``: a TLS listener on ``tls_port`` whose certificate (for 127.0.0.1 and localhost)
        #: is signed by the CA in ``ca_file``.
        self.tls_port = free_port() if tls else None
        self.ca_file = self.folder / "ca.pem" if tls else None
        self.log = self.folder / "mosquitto.log"
        self._proc: subprocess.Popen | None = None

    def _configure(self) -> tuple[Path, Path]:
        exe = shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", ""))
        passwd = shutil.which("mosquitto_passwd")
        if exe is None or passwd is None:
            raise PeerMissing("mosquitto is not installed (Debian package mosquitto, with mosquitto_passwd)")
        self.folder.mkdir(parents=True, exist_ok=True)
        users = self.folder / "passwords"
        users.write_text("")
        for name, password in self.users.items():
            subprocess.run([passwd, "-b", str(users), name, password], check=True, capture_output=True)
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            "per_listener_settings true\npersistence false\nuser root\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"listener {self.auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {users}\n")
        if self.tls_port:
            if not self.ca_file.exists():
                make_certificates(self.folder)
            with conf.open("a") as f:
                f.write(f"listener {self.tls_port} 127.0.0.1\nallow_anonymous true\ncafile {self.ca_file}\n"
                        f"certfile {self.folder / 'server.pem'}\nkeyfile {self.folder / 'server.key'}\n")
        return Path(exe), conf

    def start(self) -> Mosquitto:
        exe, conf = self._configure()
        self._proc = subprocess.Popen([str(exe), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        ports = [p for p in (self.port, self.auth_port, self.tls_port) if p is not None]
        wait_until(lambda: all(tcp_listens(p) for p in ports), 15, f"mosquitto listening on {ports}",
                   self._proc, output=self.output, every=0.02, cleanup=self.stop)
        return self

    def stop(self) -> None:
        stop_process(self._proc, 10)
        self._proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def make_certificates(folder: Path) -> None:
    """A CA (``ca.pem``) and a server certificate it signs for 127.0.0.1 and localhost (``server.*``)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def certificate(subject: str, issuer: x509.Name | None, key, signer, *extensions) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    ca = certificate("wattsight test CA", None, ca_key, ca_key,
                     (x509.BasicConstraints(ca=True, path_length=None), True), (usage, True),
                     (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False))
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = certificate("localhost", ca.subject, key, ca_key, (x509.SubjectAlternativeName(names), False),
                         (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


class Publisher:
    """An MQTT client that publishes and waits until the broker has each message (QoS 1)."""

    def __init__(self, port: int, *, client_id: str = "", will: tuple[str, bytes, bool] | None = None,
                 host: str = "127.0.0.1") -> None:
        self.host, self.port, self.client_id, self.will = host, port, client_id, will
        self.client: mqtt.Client | None = None

    def connect(self) -> Publisher:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.will:
            topic, payload, retain = self.will
            c.will_set(topic, payload, qos=1, retain=retain)
        c.connect(self.host, self.port, keepalive=30)
        c.loop_start()
        deadline = time.monotonic() + 10
        while not c.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot connect to the broker on {self.port}")
            time.sleep(0.01)
        self.client = c
        return self

    def publish(self, topic: str, payload: bytes | str | dict, *, retain: bool = False) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        """Say goodbye: the broker drops the will."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def crash(self) -> None:
        """Vanish without a goodbye (power cut): the broker publishes the will."""
        if self.client is not None:
            self.client.socket().shutdown(socket.SHUT_RDWR)
            self.client.loop_stop()
            self.client = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()


class ShellyPlug(Publisher):
    """A Shelly Gen2 plug: status on ``<prefix>/status/switch:0``, notices on ``<prefix>/events/rpc``."""

    def __init__(self, port: int, prefix: str, component: str = "switch:0", **kw) -> None:
        super().__init__(port, client_id=prefix, will=(f"{prefix}/online", b"false", True), **kw)
        self.prefix, self.component = prefix, component

    def connect(self) -> ShellyPlug:
        super().connect()
        self.publish(f"{self.prefix}/online", "true", retain=True)
        return self

    def status(self, apower: float, total_wh: float, **extra) -> None:
        self.publish(f"{self.prefix}/status/{self.component}", {
            "id": 0, "source": "timer", "output": True, "apower": apower, "voltage": 230.1,
            "current": round(apower / 230.1, 3), "aenergy": {"total": total_wh, "by_minute": [0, 0, 0],
                                                            "minute_ts": int(time.time())},
            "temperature": {"tC": 40.1, "tF": 104.2}, **extra})

    def notify(self, delta: dict, ts: float | None = None) -> None:
        """A NotifyStatus with a partial status of the component."""
        self.publish(f"{self.prefix}/events/rpc", {
            "src": self.prefix, "dst": f"{self.prefix}/events", "method": "NotifyStatus",
            "params": {"ts": time.time() if ts is None else ts, self.component: {"id": 0, **delta}}})


class TasmotaPlug(Publisher):
    """A Tasmota plug: ``tele/<topic>/SENSOR`` telemetry and the retained LWT ``Online``/``Offline``."""

    def __init__(self, port: int, topic: str, **kw) -> None:
        super().__init__(port, client_id=f"DVES_{topic}", will=(f"tele/{topic}/LWT", b"Offline", True), **kw)
        self.topic = topic

    def connect(self) -> TasmotaPlug:
        super().connect()
        self.publish(f"tele/{self.topic}/LWT", "Online", retain=True)
        return self

    def sensor(self, power: float | list, total_kwh: float | list, time_: str | None = None) -> None:
        when = time_ or datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        self.publish(f"tele/{self.topic}/SENSOR", {"Time": when, "ENERGY": {
            "TotalStartTime": "2022-03-20T15:20:48", "Total": total_kwh, "Yesterday": 1.495, "Today": 0.537,
            "Period": 0, "Power": power, "ApparentPower": 92, "ReactivePower": 73, "Factor": 0.61,
            "Voltage": 234, "Current": 0.392}})
