"""The section models ([bus], [store], [api], [recorder], [probes."<id>"]) and the whole :class:`Config`.

Values are strict where a string is given for a number or a boolean (``linger = "0.05"``,
``fsync = "yes"`` are errors: a quoted number is more likely a mistake than a wish); an
integer is still accepted for a float, and a string for a path.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .. import bus
from ..consumers.pgstore.config import PgStoreConfig
from ..consumers.store.retention import RetentionConfig
from ..drivers.base import DriverConfig, FilePath, from_config_folder
from ..errors import BusError, ConfigError

log = logging.getLogger(__package__)  # "wattsight.config", as before the module became a package

ENDPOINT_FORMS = "'ipc://<path>', 'tcp://<host>:<port>' or 'inproc://<name>'"
_LISTEN = re.compile(rf"^({bus.HOST}):(\d{{1,5}})$")
KEY_HINT = "create one with `head -c 32 /dev/urandom | base64 > /etc/wattsight/bus.key` and set secret_file"

#: A path field of a strict model: a TOML string is how a path is written, so it stays accepted.
LaxPath = FilePath


def runtime_dir() -> Path:
    """Where the default ipc:// endpoint lives (:func:`default` creates it)."""
    if sys.platform.startswith("linux") and not os.environ.get("XDG_RUNTIME_DIR"):
        return Path(f"/tmp/wattsight-{os.getuid()}")  # platformdirs would warn and guess
    return Path(platformdirs.user_runtime_dir("wattsight"))


def user_data_dir() -> Path:
    """The user's wattsight data folder (the default store and bus key live there)."""
    return Path(platformdirs.user_data_dir("wattsight"))


def read_key(path: Path) -> bytes:
    """The bytes of a key file: how the key checks read it unless the context names an ``opener``."""
    return path.read_bytes()


def _readable_key(path: Path, info: ValidationInfo) -> Path:
    if not path.is_file():
        raise ValueError(f"the key file {str(path)!r} does not exist; {KEY_HINT}")
    opener = (info.context or {}).get("opener") or read_key
    try:  # read it, as os.access() says yes to root whatever the mode: tests inject a refusing opener
        opener(path)
    except PermissionError:
        raise ValueError(f"the key file {str(path)!r} cannot be read by this user; run wattsight as its "
                         "owner, or give this user's group read access (`chmod 640`)") from None
    if path.stat().st_mode & 0o077:
        log.warning("%s: the bus key can be read by other users; chmod 600 it", path)
    return path


def check_endpoint(value: str) -> str:
    """``value`` if it is a ZeroMQ endpoint wattsight accepts, else ValueError naming the forms."""
    try:
        return bus.check_endpoint(value)
    except BusError:
        if isinstance(value, str) and value.startswith("tcp://") and value.rsplit(":", 1)[-1].isdigit():
            raise ValueError(f"{value!r}: the port must be between 1 and 65535") from None
        raise ValueError(f"{value!r} is not an endpoint; accepted forms: {ENDPOINT_FORMS}") from None


class _Section(BaseModel):
    # strict: no string for a number or a boolean (paths are LaxPath, see above).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class BusConfig(_Section):
    """[bus]: where drivers publish and consumers subscribe, and the shared signing key."""

    endpoint: str = Field(
        default_factory=lambda: f"ipc://{runtime_dir()}/wattsight-bus",
        description="the endpoint drivers bind and consumers connect to: " + ENDPOINT_FORMS,
    )
    connect: list[str] = Field([], description="where consumers connect (driver hosts, forwarders); "
                                               "default: [endpoint]")
    secret: str | None = Field(None, description="the HMAC key shared by every part (prefer secret_file)")
    secret_file: LaxPath | None = Field(None, description="a file holding the HMAC key (mode 0600)")
    window: float = Field(300.0, gt=0, description="seconds; messages sent further from now are refused")
    linger: float = Field(0.05, ge=0, description="seconds the publisher gathers samples before sending")
    batch_max: int = Field(50_000, ge=1, description="the most samples in one message")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        return check_endpoint(v)

    @field_validator("connect")
    @classmethod
    def _check_connect(cls, v: list[str]) -> list[str]:
        return [check_endpoint(e) for e in v]

    @field_validator("secret_file")
    @classmethod
    def _check_secret_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else _readable_key(from_config_folder(v, info), info)

    @model_validator(mode="after")
    def _one_secret(self) -> BusConfig:
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("set either secret or secret_file, not both")
        if self.secret is not None and not self.secret.strip():
            raise ValueError("secret is empty")
        return self


class StoreConfig(_Section):
    """[store]: where samples are kept."""

    backend: Literal["embedded", "postgresql"] = Field(
        "embedded", description="the storage engine: 'embedded' (files under path) or 'postgresql' "
                                "(a PostgreSQL database, [store.postgresql])")
    path: LaxPath = Field(default_factory=lambda: user_data_dir() / "store", description="the store's folder")
    fsync: bool = Field(False, description="false: survives kill -9; true: also survives power loss")
    flush_interval: float = Field(60.0, gt=0, description="seconds of samples kept in the WAL tail")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description=(
        "[store.retention]: how long raw samples (per metric) and rollup cells (per level) are kept "
        "(docs/consumers/store.md)"))
    postgresql: PgStoreConfig | None = Field(
        None, description="backend = 'postgresql': server, schema, write mode (docs/consumers/postgresql.md)")

    @model_validator(mode="after")
    def _backend_section(self) -> StoreConfig:
        if self.backend == "postgresql" and self.postgresql is None:
            raise ValueError("backend = 'postgresql' needs a [store.postgresql] section (dsn, schema, ...)")
        return self

    @field_validator("path")
    @classmethod
    def _relative(cls, v: Path, info: ValidationInfo) -> Path:
        return from_config_folder(v, info)


class ApiConfig(_Section):
    """[api]: the REST API and web UI."""

    listen: str = Field("127.0.0.1:8080", description="the address the API listens on, as host:port")
    max_points: int = Field(10_000, ge=1, description="the most points per series in one /series answer")
    max_gap: float = Field(5.0, ge=0, description="seconds; longer gaps (or 3 periods) are not integrated")
    price_per_kwh: float = Field(0.0, ge=0, description="the energy price per kWh, for cost figures")
    currency: str = Field("EUR", min_length=1, description="the currency of price_per_kwh")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        m = _LISTEN.match(v)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(f"{v!r} is not host:port (e.g. '127.0.0.1:8080' or '[::1]:8080')")
        return v


TOKEN_HINT = ("create one with `head -c 24 /dev/urandom | base64 > /etc/wattsight/recorder.token` "
              "(chmod 600) and set token_file")


class RecorderConfig(_Section):
    """[recorder]: the recordings and jobs database and who may write to it (docs/recordings.md)."""

    database: LaxPath | None = Field(
        None, description="the SQLite file of recordings and jobs; default: recordings.sqlite beside the "
                          "store's folder (also with a PostgreSQL store)")
    token: SecretStr | None = Field(None, description="the bearer token writes need (prefer token_file); "
                                                      "none: writes are open")
    token_file: LaxPath | None = Field(None, description="a file holding the token (mode 0600)")
    read_token_required: bool = Field(False, description="true: reads need the token too")
    max_clock_skew: float = Field(2.0, ge=0, description="seconds; a caller's clock further off is "
                                                         "reported in the answer's warnings")

    @field_validator("database", "token_file")
    @classmethod
    def _relative(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return from_config_folder(v, info)

    @field_validator("token_file")
    @classmethod
    def _check_token_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"the token file {str(v)!r} does not exist; {TOKEN_HINT}")
        return v

    @model_validator(mode="after")
    def _one_token(self) -> RecorderConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set either token or token_file, not both")
        if self.token is not None and not self.token.get_secret_value().strip():
            raise ValueError("token is empty")
        if self.read_token_required and self.token is None and self.token_file is None:
            raise ValueError("read_token_required = true needs a token (token or token_file)")
        return self

    def database_path(self, store: StoreConfig) -> Path:
        """Where the database lives: ``database``, or ``recordings.sqlite`` beside the store's folder."""
        return self.database if self.database is not None else Path(store.path).parent / "recordings.sqlite"

    def read_token(self) -> SecretStr | None:
        """The token (``token``, or the stripped content of ``token_file``), or None: writes are open."""
        if self.token_file is None:
            return self.token
        try:
            text = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the token file {str(self.token_file)!r}: {exc}",
                              key="recorder.token_file", hint=TOKEN_HINT) from None
        if not text:
            raise ConfigError(f"the token file {str(self.token_file)!r} is empty", key="recorder.token_file",
                              hint=TOKEN_HINT)
        if self.token_file.stat().st_mode & 0o077:
            log.warning("%s: the recorder token can be read by other users; chmod 600 it", self.token_file)
        return SecretStr(text)


class ProbeConfig(_Section):
    """[probes."<site>.<name>"]: metadata of one probe."""

    aliases: list[str] = Field([], description="other names the probe answers to")
    nodes: list[str] = Field([], description="the nodes this probe feeds (several: a shared outlet)")
    description: str = Field("", description="free text shown in the API and UI")


@dataclass(frozen=True)
class Config:
    """A whole validated configuration: every part reads its section from here."""

    path: Path | None = None
    site: str = "local"
    bus: BusConfig = field(default_factory=BusConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    drivers: dict[str, DriverConfig] = field(default_factory=dict)
    probes: dict[str, ProbeConfig] = field(default_factory=dict)
    consumers: dict = field(default_factory=dict)  # name -> the consumer plugin's Config (a ConsumerConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)

    def bus_secret(self) -> bytes:
        """The HMAC key of the bus: ``secret``, or the content of ``secret_file`` (whitespace stripped)."""
        file = str(self.path) if self.path else None
        if self.bus.secret is not None:
            return self.bus.secret.encode()
        if self.bus.secret_file is None:
            raise ConfigError("no bus key is set", file=file, key="bus.secret_file", hint=KEY_HINT)
        try:
            key = self.bus.secret_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {str(self.bus.secret_file)!r}: {exc.strerror}", file=file,
                              key="bus.secret_file", hint=KEY_HINT) from exc
        if not key:
            raise ConfigError(f"{str(self.bus.secret_file)!r} is empty", file=file, key="bus.secret_file",
                              hint=KEY_HINT)
        return key
