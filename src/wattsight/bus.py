"""Publish / subscribe batches over ZeroMQ: topics, signatures, sequence numbers.

A message is four frames::

    topic    b"<site>|<metric>|"        (ZeroMQ prefix matching selects sites)
    header   msgpack {"src": source id, "seq": n, "sent": ms, "n": samples}
    payload  codec.encode_batch(batch)  (columnar, one site and metric)
    mac      HMAC-SHA256(key, len-prefixed topic + header + payload)

The MAC covers the whole message, so nothing can be changed or moved between frames.
Each publisher has a fresh random source id and numbers its messages 1, 2, 3, ... per
topic (so a subscriber to some topics sees every number of those topics) and a
subscriber sees what was lost (a gap), duplicated or replayed (a number seen before),
and re-ordered (a late number, still accepted once).  Messages sent further than
``window`` from the subscriber's clock are refused as stale: together with the per
source numbering this refuses replays.  A refused message is counted per cause, logged
the first time each cause is seen, and never stops the subscriber.

A subscriber given a :class:`~wattsight.bus_ledger.Ledger` remembers across restarts the
last number its consumers acknowledged from each source (:meth:`Subscriber.commit`), so
messages sent while it was down are counted as lost instead of vanishing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgpack
import numpy as np
import zmq

from .bus_ledger import Ledger
from .codec import decode_batch, encode_batch
from .errors import BusError, MessageRefused
from .recent import ByIdentity
from .sample import Batch, Series, now_ms

log = logging.getLogger(__name__)

#: How far back (in sequence numbers) a late message is still accepted as re-ordered.
REORDER_WINDOW = 4096


def topic_of(site: str, metric: str) -> bytes:
    return f"{site}|{metric}|".encode()


def sign(key: bytes, topic: bytes, header: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 over the three frames, each prefixed by its length."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (topic, header, payload):
        mac.update(struct.pack("<Q", len(part)))
        mac.update(part)
    return mac.digest()


def new_source_id() -> str:
    """A source id unique to this publisher's life: host, pid and a random nonce."""
    return f"{socket.gethostname()}/{os.getpid()}/{os.urandom(6).hex()}"


#: The host of a ``host:port`` (a name, an IPv4 address or a bracketed IPv6 one); [api] listen uses it too.
HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+"
_ENDPOINT = re.compile(rf"(ipc://.+|tcp://(\*|{HOST}):(\d{{1,5}})|inproc://.+)")


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is one wattsight accepts (the one rule, used by the config too)."""
    m = _ENDPOINT.fullmatch(endpoint) if isinstance(endpoint, str) else None
    if not m or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
        raise BusError(f"bus endpoint {endpoint!r}: expected ipc://PATH, tcp://HOST:PORT (port 1-65535) "
                       "or inproc://NAME")
    return endpoint


def _prepare_ipc(endpoint: str) -> None:
    """Create the folder of an ipc:// path, refusing one that a live process listens on.

    (ZeroMQ would silently unlink a live socket file and steal the endpoint.)
    """
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint[6:]
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            return  # a stale file left by a dead process: ZeroMQ replaces it
        finally:
            probe.close()
        raise BusError(f"cannot bind {endpoint}: another process is listening there "
                       "(is another wattsight running? stop it or choose another bus.endpoint)")


def _attach(sock: zmq.Socket, endpoints: str | Iterable[str], bind: bool) -> None:
    """Bind or connect ``sock`` to every endpoint; on failure close it and raise BusError."""
    for ep in [endpoints] if isinstance(endpoints, str) else list(endpoints):
        try:
            check_endpoint(ep)
            if bind:
                _prepare_ipc(ep)
                sock.bind(ep)
            else:
                sock.connect(ep)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise BusError(f"cannot {'bind' if bind else 'connect'} {ep}: {exc}"
                           + (" (is another wattsight already publishing there?)" if bind else "")) from exc
        except BusError:
            sock.close(0)
            raise


class Publisher:
    """Sends batches, split by site and metric, signed and numbered.  Not thread-safe."""

    def __init__(self, endpoints: str | Iterable[str], key: bytes, *, bind: bool = True,
                 context: zmq.Context | None = None, clock: Callable[[], int] = now_ms,
                 batch_max: int = 50_000, source: str | None = None, hwm: int = 100_000) -> None:
        if not key:
            raise BusError("the bus needs a secret key to sign messages (bus.secret or bus.secret_file)")
        self.key, self.clock, self.batch_max = key, clock, batch_max
        self.source = source or new_source_id()
        self.seq: dict[bytes, int] = {}
        self._topics = ByIdentity(16)  # series table -> how it splits by topic (see _by_topic)
        self.sent_batches = self.sent_samples = 0
        # A context of its own, terminated on close: the messages still queued are then sent
        # (up to LINGER) before the process exits, instead of being dropped by the exit.
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._subscriptions: set[bytes] = set()
        self.sock = self._ctx.socket(zmq.XPUB)  # XPUB: we see subscriptions come and go
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        # Block instead of dropping when a subscriber is slow: loss must never be silent.
        self.sock.setsockopt(zmq.XPUB_NODROP, 1)
        self.sock.setsockopt(zmq.LINGER, 2000)
        _attach(self.sock, endpoints, bind)

    def listening(self) -> bool:
        """Whether any subscriber is connected (messages sent with none are lost by ZeroMQ)."""
        while self.sock.poll(0):
            msg = self.sock.recv()
            if msg[:1] == b"\x01":
                self._subscriptions.add(msg[1:])
            elif msg[:1] == b"\x00":
                self._subscriptions.discard(msg[1:])
        return bool(self._subscriptions)

    def publish(self, batch: Batch) -> int:
        """Send ``batch``; returns the number of messages it took."""
        messages = 0
        for topic, part in self._by_topic(batch):
            for lo in range(0, len(part), self.batch_max):
                chunk = part if len(part) <= self.batch_max else part.rows(lo, lo + self.batch_max)
                self._send(topic, encode_batch(chunk), len(chunk))
                messages += 1
        return messages

    def _by_topic(self, batch: Batch) -> list[tuple[bytes, Batch]]:
        """``batch`` split by topic, each part with the topic's whole share of the series table.

        Not only the series a part's rows use: a sender whose table does not change (a rack)
        then sends the same table bytes every time, which receivers decode once (codec)."""
        plan = self._topics.get(batch.series)
        if plan is None:
            plan = _topic_plan(batch.series)
            self._topics.put(batch.series, plan)
        topics, code, local, tables = plan
        if len(topics) == 1:
            return [(topics[0], Batch(tables[0], batch.sidx, batch.t, batch.v))] if len(batch) else []
        rowcode = code[batch.sidx]
        out = []
        for i, topic in enumerate(topics):
            rows = np.flatnonzero(rowcode == i)
            if len(rows):
                out.append((topic, Batch(tables[i], local[batch.sidx[rows]], batch.t[rows], batch.v[rows])))
        return out

    def _send(self, topic: bytes, payload: bytes, n: int) -> None:
        seq = self.seq[topic] = self.seq.get(topic, 0) + 1
        header = msgpack.packb({"src": self.source, "seq": seq, "sent": self.clock(), "n": n})
        # copy=True: ZeroMQ owns its copy.  Zero-copy frames point into Python memory, which the
        # interpreter may free at exit while ZeroMQ still sends them (refused as bad-signature).
        self.sock.send_multipart([topic, header, payload, sign(self.key, topic, header, payload)], copy=True)
        self.sent_batches += 1
        self.sent_samples += n

    def close(self) -> None:
        """Close the socket; with its own context, wait (up to LINGER) until queued messages are sent."""
        self.sock.close()
        if self._own_ctx:
            self._ctx.term()


def _topic_plan(series: tuple[Series, ...]) -> tuple:
    """How a series table splits by topic: (topics, topic number and index in its topic's table per
    series, the topics' tables)."""
    keys = [topic_of(s.site, s.metric) for s in series]
    topics = sorted(set(keys))
    number = {k: i for i, k in enumerate(topics)}
    code = np.asarray([number[k] for k in keys], np.int64)
    local = np.zeros(len(keys), np.uint32)
    tables = []
    for i in range(len(topics)):
        mine = np.flatnonzero(code == i)
        local[mine] = np.arange(len(mine), dtype=np.uint32)
        tables.append(tuple(series[j] for j in mine.tolist()))
    return topics, code, local, tables


@dataclass
class SourceState:
    """What a subscriber knows of one publisher: highest number and the gaps below it."""

    highest: int = 0
    missing: set[int] = field(default_factory=set)
    batches: int = 0
    lost_expired: int = 0
    #: True when ``highest`` came from the ledger (the previous run): a gap is then logged.
    restored: bool = False
    #: The first number this subscriber received from the source (0: none yet).
    first: int = 0

    def accept(self, seq: int) -> str:
        """Record ``seq``; returns "new", "reordered", or raises MessageRefused."""
        if self.batches == 0 and self.highest == 0:
            self.highest = seq
            self.batches = 1
            return "new"
        if seq > self.highest:
            if seq - self.highest > 1:
                self.missing.update(range(max(self.highest + 1, seq - REORDER_WINDOW), seq))
                self.lost_expired += max(0, (seq - self.highest - 1) - REORDER_WINDOW)
            self.highest = seq
            self._expire()
            self.batches += 1
            return "new"
        if seq in self.missing:
            self.missing.discard(seq)
            self.batches += 1
            return "reordered"
        if seq <= self.highest - REORDER_WINDOW:
            raise MessageRefused("too-old", f"sequence {seq} is older than the re-order window")
        raise MessageRefused("replayed", f"sequence {seq} was already received")

    def _expire(self) -> None:
        floor = self.highest - REORDER_WINDOW
        if self.missing and min(self.missing) <= floor:
            old = {s for s in self.missing if s <= floor}
            self.missing -= old
            self.lost_expired += len(old)

    @property
    def lost(self) -> int:
        return self.lost_expired + len(self.missing)


class Subscriber:
    """Receives, checks and decodes batches.  Not thread-safe: one thread calls ``recv``."""

    def __init__(self, endpoints: str | Iterable[str], key: bytes, *, bind: bool = False,
                 sites: Iterable[str] = (), metrics: Iterable[str] = (), window: float = 300.0,
                 context: zmq.Context | None = None, clock: Callable[[], int] = now_ms,
                 hwm: int = 100_000, ledger: Ledger | None = None) -> None:
        if not key:
            raise BusError("the bus needs a secret key to check messages (bus.secret or bus.secret_file)")
        #: Where acknowledged message numbers persist (see :meth:`commit`), or None.
        self.ledger = ledger
        self._pending: tuple[str, int] | None = None
        self.key, self.clock, self.window_ms = key, clock, int(window * 1000)
        self.metrics = frozenset(metrics)
        self.sources: dict[str, SourceState] = {}
        self.refused: Counter[str] = Counter()
        self.accepted = self.samples = self.reordered = 0
        self._ctx = context or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        sites = list(sites)
        for prefix in ([f"{s}|".encode() for s in sites] or [b""]):
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix)
        _attach(self.sock, endpoints, bind)

    def recv(self, timeout_ms: int | None = None) -> tuple[Batch, bytes] | None:
        """The next good batch and its payload bytes, or None when ``timeout_ms`` passes."""
        while True:
            if timeout_ms is not None and not self.sock.poll(timeout_ms):
                return None
            frames = self.sock.recv_multipart(copy=True)
            try:
                got = self.check(frames)
            except MessageRefused as exc:
                self._refuse(exc)
                continue
            if got is not None:
                return got

    def check(self, frames: list[bytes]) -> tuple[Batch, bytes] | None:
        """Verify one message; returns (batch, payload) or raises MessageRefused."""
        if len(frames) != 4:
            raise MessageRefused("malformed", f"{len(frames)} frames instead of 4")
        topic, header, payload, mac = frames
        parts = topic.split(b"|")
        if len(parts) != 3 or parts[2]:
            raise MessageRefused("malformed", f"topic {topic[:60]!r} is not 'site|metric|'")
        if self.metrics and parts[1].decode(errors="replace") not in self.metrics:
            return None  # not ours: skipped before any work
        if not hmac.compare_digest(mac, sign(self.key, topic, header, payload)):
            raise MessageRefused("bad-signature", "the HMAC does not match (wrong bus secret, or tampered)")
        try:
            h = msgpack.unpackb(header, raw=False)
            src, seq, sent, n = str(h["src"]), int(h["seq"]), int(h["sent"]), int(h["n"])
        except (ValueError, TypeError, KeyError, msgpack.ExtraData, msgpack.FormatError) as exc:
            raise MessageRefused("malformed", f"bad header: {exc}") from None
        if abs(self.clock() - sent) > self.window_ms:
            raise MessageRefused("stale", f"sent {(self.clock() - sent) / 1000:.1f} s from now (window "
                                 f"{self.window_ms / 1000:.0f} s): replayed, or clocks out of sync")
        batch = decode_batch(payload)
        if len(batch) != n:
            raise MessageRefused("malformed", f"header says {n} samples, payload has {len(batch)}")
        key = f"{src} {topic.decode(errors='replace')}"
        state = self.sources.get(key) or self._new_source(key)
        if state.accept(seq) == "reordered":
            self.reordered += 1
        state.first = state.first or seq
        if state.restored:
            state.restored = False
            if state.lost:
                log.warning("bus: %d messages from %s were sent while this consumer was down (last one "
                            "stored: %d, now: %d); they are lost and counted in bus.lost",
                            state.lost, key, seq - state.lost - 1, seq)
        self._pending = (key, seq)
        self.accepted += 1
        self.samples += n
        return batch, payload

    def _new_source(self, key: str) -> SourceState:
        known = self.ledger.highest.get(key, 0) if self.ledger else 0
        state = self.sources[key] = SourceState(highest=known, batches=int(known > 0), restored=known > 0)
        return state

    def commit(self) -> None:
        """Mark the last batch :meth:`recv` returned as acknowledged by every consumer (in the ledger)."""
        if self._pending is not None and self.ledger is not None:
            self.ledger.record(*self._pending)
        self._pending = None

    def _refuse(self, exc: MessageRefused) -> None:
        if not self.refused[exc.cause]:
            log.warning("bus: %s (further messages refused for this cause are counted, not logged)", exc)
        self.refused[exc.cause] += 1

    def stats(self) -> dict:
        return {
            "accepted": self.accepted,
            "samples": self.samples,
            "refused": dict(self.refused),
            "lost": sum(s.lost for s in self.sources.values()),
            "duplicates": self.refused.get("replayed", 0),
            "reordered": self.reordered,
            "sources": {k: {"first": s.first, "highest": s.highest, "batches": s.batches, "lost": s.lost}
                        for k, s in self.sources.items()},
        }

    def close(self) -> None:
        self.sock.close()
        if self.ledger is not None:
            self.ledger.close()
