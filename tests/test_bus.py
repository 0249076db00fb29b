"""The bus over real ZeroMQ sockets: signatures, numbering, topics, refusals."""

from __future__ import annotations

import itertools
import time

import msgpack
import numpy as np
import pytest
import zmq

from wattsight.bus import Publisher, Subscriber, sign, topic_of
from wattsight.codec import decode_batch, encode_batch
from wattsight.errors import BusError, MessageRefused
from wattsight.sample import Batch, Series

KEY = b"k" * 32
_port = itertools.count(0)


@pytest.fixture
def endpoint(tmp_path):
    return f"ipc://{tmp_path}/bus-{next(_port)}"


def power(probe: str, n: int = 5, t0: int = 1_700_000_000_000) -> Batch:
    return Batch.of_series(Series(probe, "power", "W"), t0 + 1000 * np.arange(n), 100.0 + np.arange(n))


def connected(endpoint, **kw):
    """A publisher and a subscriber that is surely joined (ZeroMQ's slow joiner)."""
    pub = Publisher(endpoint, KEY)
    sub = Subscriber(endpoint, KEY, **kw)
    time.sleep(0.2)
    return pub, sub


def drain(sub, timeout_ms=300):
    out = []
    while (got := sub.recv(timeout_ms)) is not None:
        out.append(got[0])
    return out


def test_codec_round_trip_is_exact():
    b = Batch.concat([power("a.x", 7), power("b.y", 3)])
    back = decode_batch(encode_batch(b))
    assert back.series == b.series
    assert np.array_equal(back.sidx, b.sidx) and np.array_equal(back.t, b.t) and np.array_equal(back.v, b.v)


def test_batches_arrive_split_by_site_and_metric(endpoint):
    pub, sub = connected(endpoint)
    net = Batch.of_series(Series("a.x", "network_in", "B", "counter"), [1_700_000_000_000], [5.0])
    now = int(time.time() * 1000)
    pub.publish(Batch.concat([power("a.x", t0=now), power("b.y", t0=now), net]))
    got = drain(sub)
    assert sorted((b.series[0].probe, b.series[0].metric, len(b)) for b in got) == [
        ("a.x", "network_in", 1), ("a.x", "power", 5), ("b.y", "power", 5)]
    assert sub.stats()["accepted"] == 3 and sub.stats()["lost"] == 0


def test_subscribe_to_a_site_or_a_metric(endpoint):
    pub = Publisher(endpoint, KEY)
    by_site = Subscriber(endpoint, KEY, sites=["b"])
    by_metric = Subscriber(endpoint, KEY, metrics=["network_in"])
    time.sleep(0.2)
    now = int(time.time() * 1000)
    net = Batch.of_series(Series("a.x", "network_in", "B", "counter"), [now], [5.0])
    pub.publish(Batch.concat([power("a.x", t0=now), power("b.y", t0=now), net]))
    assert [b.series[0].probe for b in drain(by_site)] == ["b.y"]
    assert [b.series[0].metric for b in drain(by_metric)] == ["network_in"]
    assert by_site.stats()["lost"] == 0 and by_metric.stats()["lost"] == 0


class Capture:
    """Publishes through a real socket pair and keeps the raw frames to tamper with."""

    def __init__(self, endpoint):
        self.pub, self.sub = connected(endpoint)
        self.raw = self.sub.sock  # read raw frames through the subscriber's socket

    def frames(self, batch):
        self.pub.publish(batch)
        assert self.raw.poll(2000)
        return self.raw.recv_multipart()


def test_bad_messages_are_refused_counted_and_do_not_stop_the_consumer(endpoint):
    cap = Capture(endpoint)
    now = int(time.time() * 1000)
    good = [cap.frames(power("a.x", t0=now + i)) for i in range(4)]
    sub = cap.sub
    # forged: payload changed, MAC kept
    forged = list(good[0])
    forged[2] = encode_batch(power("a.x", 5, now + 99))
    # signed with another key
    other = list(good[0])
    other[3] = sign(b"x" * 32, *other[:3])
    # truncated payload and missing frame
    trunc = list(good[1][:2]) + [good[1][2][:-7], good[1][3]]
    short = good[1][:3]
    # header lying about its size, correctly signed (a buggy or hostile key holder)
    h = msgpack.packb({"src": "evil", "seq": 1, "sent": now, "n": 999})
    lying = [good[0][0], h, good[0][2], sign(KEY, good[0][0], h, good[0][2])]
    # stale: a message signed long ago
    h = msgpack.packb({"src": "old", "seq": 1, "sent": now - 3_600_000, "n": 5})
    stale = [good[0][0], h, good[0][2], sign(KEY, good[0][0], h, good[0][2])]
    for bad in (forged, other, trunc, short, lying, stale):
        with pytest.raises(MessageRefused):
            sub.check(bad)
    # the real ones, re-ordered: 0, 2, 1 then replays of 0 and 2
    assert sub.check(good[0]) is not None
    assert sub.check(good[2]) is not None
    assert sub.stats()["lost"] == 1
    assert sub.check(good[1]) is not None  # late but new: accepted once
    for replay in (good[0], good[2], good[1]):
        with pytest.raises(MessageRefused, match="replayed"):
            sub.check(replay)
    assert sub.check(good[3]) is not None
    s = sub.stats()
    assert s["accepted"] == 4 and s["reordered"] == 1 and s["lost"] == 0


def test_recv_counts_refusals_per_cause_and_keeps_serving(endpoint, caplog):
    cap = Capture(endpoint)
    now = int(time.time() * 1000)
    f = cap.frames(power("a.x", t0=now))  # number 1, read raw: the subscriber has not seen it
    cap.pub.publish(power("a.x", t0=now + 10))  # number 2, through the subscriber
    got = drain(cap.sub)
    assert len(got) == 1 and got[0].t[0] == now + 10
    inject = cap.pub._ctx.socket(zmq.PUB)
    ep2 = endpoint + "-inject"
    inject.bind(ep2)
    cap.sub.sock.connect(ep2)
    forged = list(f)
    forged[2] = forged[2][:-1] + b"\x00"
    # A new PUB connection drops what it sends before the subscription reaches it: send forged
    # messages until one is refused, then count exactly from there.
    deadline = time.monotonic() + 30
    while not cap.sub.stats()["refused"].get("bad-signature"):
        assert time.monotonic() < deadline, "the injecting socket never reached the subscriber"
        inject.send_multipart(forged)
        assert cap.sub.recv(100) is None
    base = cap.sub.stats()["refused"]["bad-signature"]
    for _ in range(2):
        inject.send_multipart(forged)
    inject.send_multipart(f)  # number 1 again, after number 2: a replay
    cap.pub.publish(power("a.x", t0=now + 20))
    got = drain(cap.sub)
    while sum(cap.sub.stats()["refused"].values()) < base + 3 and time.monotonic() < deadline:
        got += drain(cap.sub)  # a loaded machine may deliver the injected ones late
    assert len(got) == 1 and got[0].t[0] == now + 20
    s = cap.sub.stats()
    assert s["refused"] == {"bad-signature": base + 2, "replayed": 1}
    assert sum("bad-signature" in r.message for r in caplog.records) == 1  # logged once per cause
    inject.close(0)


def test_bad_endpoint_and_missing_key_are_clear_errors(endpoint):
    with pytest.raises(BusError, match="expected ipc://PATH"):
        Publisher("http://x", KEY)
    with pytest.raises(BusError, match="secret"):
        Subscriber(endpoint, b"")
    pub = Publisher(endpoint, KEY)
    with pytest.raises(BusError, match="cannot bind"):
        Publisher(endpoint, KEY)
    pub.close()


def test_large_batches_are_split_and_nothing_is_lost(endpoint):
    pub, sub = connected(endpoint)
    pub.batch_max = 1000
    now = int(time.time() * 1000)
    pub.publish(power("a.x", 10_500, t0=now))
    got = drain(sub)
    assert [len(b) for b in got] == [1000] * 10 + [500]
    assert np.array_equal(np.concatenate([b.t for b in got]), now + 1000 * np.arange(10_500))


def test_messages_sent_while_the_subscriber_was_down_are_counted_through_the_ledger(endpoint, tmp_path, caplog):
    """A restarted subscriber reads the ledger: the messages it missed show as lost, with a warning."""
    from wattsight.bus_ledger import Ledger

    ledger_path = tmp_path / "bus-ledger"
    pub, sub = connected(endpoint, ledger=Ledger(ledger_path))
    now = int(time.time() * 1000)
    for i in range(5):
        pub.publish(power("a.x", 2, t0=now + 10_000 * i))
    for _ in range(5):
        assert sub.recv(2000) is not None
        sub.commit()
    sub.close()
    for i in range(3):  # nobody listens: ZeroMQ drops these
        pub.publish(power("a.x", 2, t0=now + 100_000 + 10_000 * i))
    sub = Subscriber(endpoint, KEY, ledger=Ledger(ledger_path))
    time.sleep(0.2)
    pub.publish(power("a.x", 2, t0=now + 200_000))
    assert sub.recv(2000) is not None
    stats = sub.stats()
    assert stats["lost"] == 3 and stats["accepted"] == 1
    assert any("3 messages from" in r.getMessage() and "while this consumer was down" in r.getMessage()
               for r in caplog.records)
    sub.close()


def test_a_message_already_stored_before_a_restart_is_refused_as_replayed(endpoint, tmp_path):
    from wattsight.bus_ledger import Ledger

    ledger_path = tmp_path / "bus-ledger"
    pub, sub = connected(endpoint, ledger=Ledger(ledger_path))
    now = int(time.time() * 1000)
    pub.publish(power("a.x", 2, t0=now))
    assert sub.recv(2000) is not None
    sub.commit()
    sub.close()
    pub.close()
    topic, payload = topic_of("a", "power"), encode_batch(power("a.x", 2, t0=now))
    header = msgpack.packb({"src": pub.source, "seq": 1, "sent": now, "n": 2})  # the message stored
    sub = Subscriber(endpoint, KEY, ledger=Ledger(ledger_path))
    with pytest.raises(MessageRefused, match="already received"):
        sub.check([topic, header, payload, sign(KEY, topic, header, payload)])
    sub.close()


def test_the_ledger_keeps_the_highest_number_and_is_rewritten_when_large(tmp_path):
    from wattsight.bus_ledger import Ledger

    clock = [1000.0]
    led = Ledger(tmp_path / "l", forget_after=100.0, clock=lambda: clock[0])
    led.MAX_BYTES = 200
    for seq in range(1, 30):
        led.record("old src|power|", seq)
    clock[0] += 500.0  # "old" falls silent for longer than forget_after: the next rewrite drops it
    for seq in range(1, 15):
        led.record("new src|power|", seq)
    led.record("new src|power|", 5)  # re-ordered below the mark: no line
    led.close()
    (tmp_path / "l").open("ab").write(b"12")  # a line torn by a crash
    back = Ledger(tmp_path / "l", clock=lambda: clock[0])
    assert back.highest == {"new src|power|": 14} and back.torn == 1
    assert (tmp_path / "l").stat().st_size < 200
    back.close()


_EXITING_PUBLISHER = r'''
import atexit, os, sys, time
# registered before zmq is imported, so it runs after pyzmq's own exit handler: a process that
# is still busy while it finalises (what made queued zero-copy frames go out from freed memory)
atexit.register(lambda: [os.urandom(1_000_000) for _ in range(100)] and time.sleep(0.3))
import numpy as np
from wattsight.bus import Publisher
from wattsight.sample import Batch, Series
ep, n = sys.argv[1], int(sys.argv[2])
pub = Publisher(ep, b"k" * 32, hwm=10, batch_max=10**9)
while not pub.listening():
    time.sleep(0.01)
series = tuple(Series(f"exp.p{i}", "power", "W") for i in range(100))
rng = np.random.default_rng(1)
for k in range(n):
    m = 60_000  # about 1 MB a message
    pub.publish(Batch(series, rng.integers(0, 100, m).astype(np.uint32),
                      np.arange(m, dtype=np.int64) + int(time.time() * 1000), rng.random(m)))
pub.close()
'''


def test_a_publisher_that_exits_right_after_close_delivers_every_queued_message_intact(endpoint):
    """Large messages still queued for a slow subscriber when the publisher's process exits all
    arrive, none refused (they used to be lost, or sent from freed memory: bad-signature)."""
    import subprocess
    import sys

    n = 40
    sub = Subscriber(endpoint, KEY, hwm=5)
    child = subprocess.Popen([sys.executable, "-c", _EXITING_PUBLISHER, endpoint, str(n)])
    got = 0
    while got < n and (sub.recv(timeout_ms=10_000) is not None):
        got += 1
        time.sleep(0.02)  # a slow consumer: the publisher's queue stays full until it exits
    assert child.wait(60) == 0
    stats = sub.stats()
    sub.close()
    assert (got, stats["refused"], stats["lost"]) == (n, {}, 0)
