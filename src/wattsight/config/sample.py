"""The commented sample file (``wattsight config sample``): every section and key, with defaults."""

from __future__ import annotations

from .. import plugins
from ..errors import PluginError

_SAMPLE_HEAD = '''\
# wattsight configuration: one file for every part (drivers, bus, store, API).
# `wattsight config check FILE` validates it; the comments give each key's default.
# Times are in seconds, power in watts, energy in joules.

# The site: the first part of every probe id this host publishes ("<site>.<name>").
site = "local"

[bus]
# Where drivers publish and consumers subscribe: "ipc://<path>" on one host,
# "tcp://<host>:<port>" between hosts, "inproc://<name>" inside one process.
# Default: ipc://<runtime dir>/wattsight-bus
endpoint = "tcp://127.0.0.1:5555"
# Where consumers (store, API) connect, e.g. ["tcp://drivers-host:5570"] when drivers bind
# tcp://0.0.0.0:5570 on another host; several for several driver hosts. Default: [endpoint].
connect = []
# The key that signs every message, shared by every part. Prefer a file readable by wattsight only:
#   head -c 32 /dev/urandom | base64 > /etc/wattsight/bus.key && chmod 600 /etc/wattsight/bus.key
# secret_file = "/etc/wattsight/bus.key"   # a relative path is taken from this file's folder
# ... or the key itself (set only one of secret and secret_file):
secret = "replace-me-with-32-random-bytes-in-base64"
# Messages stamped further than this many seconds from now are refused (replays). Default: 300.
window = 300.0
# Seconds the publisher gathers samples before sending one message. Default: 0.05.
linger = 0.05
# The most samples in one message. Default: 50000.
batch_max = 50000

[store]
# The storage engine: "embedded" (files under path) or "postgresql" (a PostgreSQL database: give
# its postgresql table, docs/consumers/postgresql.md).
backend = "embedded"
# The store's folder. Default: <user data dir>/wattsight/store (~/.local/share/wattsight/store).
path = "/var/lib/wattsight/store"
# false: what was acknowledged survives kill -9; true: it also survives a power loss (slower).
fsync = false
# Seconds of samples kept in the write-ahead log before they are written as a segment. Default: 60.
flush_interval = 60.0
# How long raw samples (per metric; "*": the others) and rollup cells (per level) are kept.
# Missing: forever. Raw samples may go while the 1 min / 5 min / 1 h / 1 day rollups stay.
# retention = { raw = { power = "30d", "*" = "forever" }, rollups = { "1m" = "90d" } }
# backend = "postgresql": the server, the schema (one per store) and when handle() returns.
# postgresql = { dsn = "postgresql://wattsight@db.example.org/metrics", schema = "wattsight", ack = "commit" }

[api]
# The address the REST API and web UI listen on, as host:port. Default: 127.0.0.1:8080.
listen = "127.0.0.1:8080"
# The most points per series in one /series answer (coarser steps beyond). Default: 10000.
max_points = 10000
# Seconds: gaps longer than max(max_gap, 3 * period) are not bridged when integrating. Default: 5.
max_gap = 5.0
# The energy price per kWh, for cost figures (0: no cost shown), and its currency.
price_per_kwh = 0.0
currency = "EUR"

# The energy recorder: recordings (scenarios, steps) and jobs, kept in one SQLite file
# (docs/recordings.md, docs/jobs.md).
[recorder]
# The SQLite file. Default: recordings.sqlite beside the store's folder (also with a PostgreSQL store).
# database = "/var/lib/wattsight/recordings.sqlite"
# The bearer token that writes (POST) need:  head -c 24 /dev/urandom | base64 > recorder.token
# token_file = "/etc/wattsight/recorder.token"   # a relative path is taken from this file's folder
# ... or the token itself (set only one). Neither: writes are open to whoever reaches the API.
# token = "replace-me"
# true: reads (GET) need the token too. Default: false.
read_token_required = false
# Seconds a caller's clock may differ from the server's before answers carry a warning. Default: 2.
max_clock_skew = 2.0

# Probe metadata (optional): aliases, and the nodes a probe feeds. Quote ids: they contain a dot.
[probes."local.pdu1-3"]
# Other names the probe answers to in the API. Default: [].
aliases = ["rack1-outlet3"]
# The nodes fed by this probe; several means a shared outlet (reported, never split). Default: the probe.
nodes = ["local.node-1", "local.node-2"]
# Free text shown in the API and UI. Default: "".
description = "PDU 1, outlet 3"

# Consumers beyond the built-in store and API (optional), each with a type listed by
# `wattsight plugins`: remote_write or influxdb (docs/consumers/). Default: none.
# [consumers.prometheus]
# type = "remote_write"
# url = "http://prometheus.example.org:9090/api/v1/write"

# Drivers: one [drivers.<name>] section per meter (or group of meters). Every section has
#   type = "<driver>"     the driver, as listed by `wattsight plugins` (required)
#   period = 1.0          seconds between reads (0.02 = 50 Hz). Default: 1.
#   timeout = 2.0         seconds a read may take. Default: the period, at least 1 s.
#   enabled = true        false keeps the section but does not run it. Default: true.
# and the keys of its driver, shown in the sections below.
'''


def sample_text() -> str:
    """The commented sample file: every section and key, plus one section per registered driver."""
    parts = [_SAMPLE_HEAD]
    for name in plugins.names():
        try:
            text = (getattr(plugins.load(name), "SAMPLE", "") or "").strip()
        except PluginError as exc:
            text = f"# driver {name!r} cannot be loaded here: {exc}"
        if text:
            parts.append(f"# -- driver {name} " + "-" * max(3, 80 - len(name)) + "\n" + text + "\n")
    return "\n".join(parts)


def __getattr__(name: str):
    # SAMPLE is built on first use: it asks every installed driver for its own sample section.
    if name == "SAMPLE":
        return sample_text()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
