"""The remote_write consumer against a real Prometheus started here (and a capture server for auth).

What is written is read back through Prometheus' query API: names, labels, values and times
exactly.  Prometheus stopped and started again on the same port and storage: the backlog
arrives; a backlog that overflows drops its oldest samples and counts them; a 400 is counted
and logged with Prometheus' own words; credentials never reach a log line.
"""

from __future__ import annotations

import logging

import cramjam
import numpy as np
import pytest
from consumer_helpers import FAST, T0, power, wait_for
from peers.influxdb import Capture
from peers.prometheus import PeerMissing, Prometheus, free_port

from wattsight.app import Inbox
from wattsight.bus import Publisher, Subscriber
from wattsight.consumers.base import build_consumers, validate_section
from wattsight.consumers.remote_write import (
    RemoteWriteConfig,
    RemoteWriteConsumer,
    encode_samples,
    metric_name,
)
from wattsight.errors import ConfigError
from wattsight.sample import Batch, Series, wrapping_counter


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    server = Prometheus(tmp_path_factory.mktemp("prometheus"))
    try:
        server.start()
    except PeerMissing as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


def consumer(url: str, **kw) -> RemoteWriteConsumer:
    return RemoteWriteConsumer(RemoteWriteConfig(url=url, **{**FAST, **kw}), site="t", name="prom")


def only(series: dict) -> tuple[dict, list]:
    assert len(series) == 1, series
    labels, samples = next(iter(series.items()))
    return dict(labels), samples


# -- a hand decoder of the four messages, to check the bytes themselves ---------------------------
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 == 0:
            value, i = _varint(buf, i)
        elif key & 7 == 1:
            value, i = buf[i:i + 8], i + 8
        else:
            assert key & 7 == 2, key
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        yield key >> 3, value


def decode(body: bytes) -> list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]:
    out = []
    for num, ts in _fields(body):
        assert num == 1
        labels, samples = [], []
        for field, value in _fields(ts):
            parts = dict(_fields(value))
            if field == 1:
                labels.append((parts[1].decode(), parts[2].decode()))
            else:
                t = parts[2] - (1 << 64) if parts[2] >= 1 << 63 else parts[2]
                samples.append((t, float(np.frombuffer(parts[1], "<f8")[0])))
        out.append((labels, samples))
    return out


def test_samples_encode_as_protobuf_sample_messages_for_any_time():
    t = np.array([0, 1, 127, 128, T0, -1, -(1 << 62), (1 << 63) - 1], np.int64)
    v = np.array([0.0, -1.5, 1e300, np.inf, 183.25, 2.0, 3.0, 4.0])
    body, offsets = encode_samples(t, v)
    assert offsets[-1] == len(body) and len(offsets) == len(t) + 1
    got = [(f, dict(_fields(m))) for f, m in _fields(body)]
    assert [f for f, _ in got] == [2] * len(t)
    times = [m[2] - (1 << 64) if m[2] >= 1 << 63 else m[2] for _, m in got]
    assert times == t.tolist()
    assert [float(np.frombuffer(m[1], "<f8")[0]) for _, m in got] == v.tolist()


def test_metric_names_follow_prometheus_conventions():
    assert metric_name(Series("a.b", "power", "W")) == "wattsight_power_watts"
    assert metric_name(Series("a.b", "energy", "J", "counter")) == "wattsight_energy_joules_total"
    assert metric_name(Series("a.b", "network_in", "B", "counter")) == "wattsight_network_receive_bytes_total"
    assert metric_name(Series("a.b", "network_out", "B", wrapping_counter(2**32))) == \
        "wattsight_network_transmit_bytes_total"
    assert metric_name(Series("a.b", "psu.voltage", "V")) == "wattsight_psu_voltage_volts"
    assert metric_name(Series("a.b", "uptime_seconds", "s", "counter"), prefix="") == "uptime_seconds_total"


# -- against Prometheus --------------------------------------------------------------------------
def test_samples_arrive_with_their_names_labels_values_and_times(prom):
    t = T0 + 1000 * np.arange(6)
    c = consumer(prom.write_url, labels={"cluster": "lyon-a"})
    c.handle(Batch.concat([
        power("t.node-1", t, [100.0, 101.5, 99.25, 250.0, 0.0, 1e-3]),
        Batch.of_series(Series("t.node-1", "energy", "J", "counter"), t, 1e9 + 100.0 * np.arange(6)),
        Batch.of_series(Series("t.sw-1", "network_in", "B", wrapping_counter(2**32)), t[:3], [1.0, 2.0, 3.0]),
        Batch.of_series(Series("t.sw-1", "network_out", "B", "counter"), t[:2], [7.0, 8.0]),
        power("t.node-2", t[:2], [90.0, 91.0], provenance="modelled"),
    ]))
    c.handle(power("t.node-1", [t[-1] + 2000, t[-1] + 1000, t[-1] + 1000], [5.0, 6.0, 7.0]))  # unsorted, a repeat
    assert c.close(timeout=30) == 0
    stats = c.stats()
    assert stats["sent_samples"] == 6 + 6 + 3 + 2 + 2 + 2 and stats["duplicate_samples"] == 1
    assert stats["rejected_samples"] == stats["dropped_samples"] == 0

    labels, samples = only(prom.samples('wattsight_power_watts{probe="t.node-1"}'))
    assert labels == {"__name__": "wattsight_power_watts", "probe": "t.node-1", "site": "t",
                      "provenance": "measured", "cluster": "lyon-a"}
    assert samples == list(zip(t.tolist(), [100.0, 101.5, 99.25, 250.0, 0.0, 1e-3])) + [
        (int(t[-1]) + 1000, 7.0), (int(t[-1]) + 2000, 5.0)]  # equal times: the last written wins
    _, energy = only(prom.samples('wattsight_energy_joules_total{probe="t.node-1"}'))
    assert energy == [(int(a), 1e9 + 100.0 * i) for i, a in enumerate(t)]
    _, rx = only(prom.samples('wattsight_network_receive_bytes_total{probe="t.sw-1"}'))
    assert rx == [(int(a), float(i + 1)) for i, a in enumerate(t[:3])]
    _, tx = only(prom.samples('wattsight_network_transmit_bytes_total{probe="t.sw-1"}'))
    assert [v for _, v in tx] == [7.0, 8.0]
    labels, _ = only(prom.samples('wattsight_power_watts{probe="t.node-2"}'))
    assert labels["provenance"] == "modelled"


def test_samples_not_newer_than_those_sent_are_left_out_and_counted(prom, caplog):
    t = T0 + 1000 * np.arange(8)
    c = consumer(prom.write_url)
    c.handle(power("t.late", t[:5], np.arange(5.0)))
    wait_for(lambda: c.stats()["sent_samples"] == 5, what="first batch sent")
    c.handle(power("t.late", t[2:], 10 + np.arange(6.0)))  # t2..t4 were sent already
    assert c.close(timeout=30) == 0
    assert c.stats()["late_samples"] == 3 and c.stats()["rejected_samples"] == 0
    _, samples = only(prom.samples('wattsight_power_watts{probe="t.late"}'))
    assert samples == list(zip(t.tolist(), [0.0, 1.0, 2.0, 3.0, 4.0, 13.0, 14.0, 15.0]))
    assert sum("late_samples" in r.getMessage() for r in caplog.records) == 1


def test_a_400_is_counted_and_logged_with_the_servers_message(prom, caplog):
    first = consumer(prom.write_url)
    first.handle(power("t.ooo", [T0 + 10_000], [1.0]))
    assert first.close(timeout=30) == 0
    second = consumer(prom.write_url)  # a restarted process: it does not know what was sent
    second.handle(power("t.ooo", [T0, T0 + 1000], [2.0, 3.0]))
    assert second.close(timeout=30) == 0  # refused is final: nothing waits
    stats = second.stats()
    assert stats["rejected_samples"] == 2 and stats["rejected_requests"] == 1 and stats["failed_attempts"] == 0
    assert "HTTP 400" in stats["last_error"] and "out of order" in stats["last_error"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("refused 2 samples" in m and "out of order sample" in m for m in errors), errors
    _, samples = only(prom.samples('wattsight_power_watts{probe="t.ooo"}'))
    assert samples == [(T0 + 10_000, 1.0)]


def test_prometheus_down_then_up_gets_the_whole_backlog(prom, caplog):
    c = consumer(prom.write_url)
    t = T0 + 20_000 + 1000 * np.arange(30)
    prom.stop()
    try:
        c.handle(power("t.outage", t[:10], np.arange(10.0)))
        wait_for(lambda: c.stats()["failed_attempts"] >= 2, what="failed attempts while down")
        c.handle(power("t.outage", t[10:], np.arange(10.0, 30.0)))
        wait_for(lambda: c.stats()["failed_attempts"] >= 3, what="another failed attempt")
    finally:
        prom.start()
    wait_for(lambda: c.stats()["sent_samples"] == 30, what="the backlog delivered")
    assert c.close(timeout=30) == 0
    assert c.stats()["dropped_samples"] == 0 and c.stats()["rejected_samples"] == 0
    _, samples = only(prom.samples('wattsight_power_watts{probe="t.outage"}'))
    assert samples == list(zip(t.tolist(), np.arange(30.0).tolist()))
    text = caplog.text
    assert "ConnectError" in text and "delivering again after" in text


def test_a_full_backlog_drops_the_oldest_samples_counts_them_and_says_so_once(prom, caplog):
    c = consumer(prom.write_url, max_backlog=100, backoff_min=60.0, backoff_max=60.0)
    t = T0 + 60_000 + 1000 * np.arange(200)
    prom.stop()
    try:
        c.handle(power("t.full", t[:50], np.arange(50.0)))
        # the first attempt failed and the sender waits 30-60 s: the backlog is what we put in
        wait_for(lambda: c.stats()["failed_attempts"] == 1 and c.stats()["inflight_samples"] == 0,
                 what="a failed attempt")
        c.handle(power("t.full", t[50:100], np.arange(50.0, 100.0)))
        c.handle(power("t.full", t[100:150], np.arange(100.0, 150.0)))
        assert c.stats()["dropped_samples"] == 50 and c.stats()["queued_samples"] == 100
        c.handle(power("t.full", t[150:], np.arange(150.0, 200.0)))
        assert c.stats()["dropped_samples"] == 100 and c.stats()["queued_samples"] == 100
    finally:
        prom.start()
    assert c.close(timeout=30) == 0  # close() cuts the back-off short for a last try
    stats = c.stats()
    assert stats["sent_samples"] == 100 and stats["dropped_samples"] == 100
    _, samples = only(prom.samples('wattsight_power_watts{probe="t.full"}'))
    assert samples == list(zip(t[100:].tolist(), np.arange(100.0, 200.0).tolist()))  # the newest kept
    full = [r for r in caplog.records if "backlog full" in r.getMessage() and r.levelno == logging.ERROR]
    assert len(full) == 1
    assert "100 samples were dropped" in caplog.text


def test_through_the_bus_to_prometheus(prom, tmp_path):
    key = b"k" * 32
    endpoint = f"ipc://{tmp_path}/bus"
    pub = Publisher(endpoint, key)
    c = consumer(prom.write_url)
    inbox = Inbox(Subscriber(endpoint, key), [c])
    wait_for(pub.listening, what="the subscriber joined")
    t = T0 + 300_000 + 1000 * np.arange(20)
    pub.publish(Batch.concat([power("t.bus-1", t, np.arange(20.0)),
                              Batch.of_series(Series("t.bus-1", "energy", "J", "counter"), t, np.arange(20.0))]))
    wait_for(lambda: inbox.acked_samples == 40, what="the inbox got the batches")
    inbox.close()
    pub.close()
    assert c.close(timeout=30) == 0
    _, samples = only(prom.samples('wattsight_power_watts{probe="t.bus-1"}'))
    assert samples == list(zip(t.tolist(), np.arange(20.0).tolist()))
    _, energy = only(prom.samples('wattsight_energy_joules_total{probe="t.bus-1"}'))
    assert len(energy) == 20


# -- the request itself, and credentials -----------------------------------------------------------
def test_the_request_is_remote_write_1_0_with_a_bearer_token_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    with Capture() as cap:
        c = consumer(cap.url + "/api/v1/write", bearer_token="s3cr3t-t0ken", labels={"zone": "b"})
        c.handle(power("t.x", [T0 + 2000, T0 + 1000], [2.0, 1.0]))
        c.handle(Batch.of_series(Series("t.x", "energy", "J", "counter"), [T0], [5.0]))
        assert c.close(timeout=10) == 0
        (req,) = cap.requests
    assert req.path == "/api/v1/write"
    h = req.headers
    assert h["content-encoding"] == "snappy" and h["content-type"] == "application/x-protobuf"
    assert h["x-prometheus-remote-write-version"] == "0.1.0" and h["user-agent"].startswith("wattsight/")
    assert h["authorization"] == "Bearer s3cr3t-t0ken"
    series = decode(bytes(cramjam.snappy.decompress_raw(req.body)))  # the block format, not framed
    by_name = {dict(labels)["__name__"]: (labels, samples) for labels, samples in series}
    labels, samples = by_name["wattsight_power_watts"]
    assert [k for k, _ in labels] == ["__name__", "probe", "provenance", "site", "zone"]  # sorted
    assert samples == [(T0 + 1000, 1.0), (T0 + 2000, 2.0)]  # in time order
    assert by_name["wattsight_energy_joules_total"][1] == [(T0, 5.0)]
    assert "s3cr3t" not in caplog.text and "s3cr3t" not in repr(c.config) and "s3cr3t" not in str(c.stats())


def test_basic_auth_refused_is_counted_retries_on_429_and_the_password_is_never_logged(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    secret = tmp_path / "password"
    secret.write_text("pa55-w0rd\n")
    with Capture() as cap:
        c = consumer(cap.url + "/write", username="ws", password_file=str(secret))
        cap.status, cap.reply, cap.reply_headers = 429, b"slow down", {"Retry-After": "0"}
        c.handle(power("t.x", [T0], [1.0]))
        wait_for(lambda: c.stats()["failed_attempts"] >= 2, what="retries on 429")
        cap.status, cap.reply, cap.reply_headers = 204, b"", {}
        wait_for(lambda: c.stats()["sent_samples"] == 1, what="delivered after 429")
        cap.status, cap.reply = 401, b'{"error":"authentication failed for ws"}'
        c.handle(power("t.x", [T0 + 1000], [2.0]))
        wait_for(lambda: c.stats()["rejected_samples"] == 1, what="the 401 counted")
        assert c.close(timeout=10) == 0
        assert all(r.headers["authorization"] == "Basic d3M6cGE1NS13MHJk" for r in cap.requests)  # ws:pa55-w0rd
    assert c.stats()["failed_attempts"] == len(cap.requests) - 2
    assert "HTTP 401: authentication failed for ws" in caplog.text
    assert "pa55" not in caplog.text and "pa55" not in str(c.stats()) and "pa55" not in repr(c.config)


def test_close_says_what_could_not_be_delivered(caplog):
    c = consumer(f"http://127.0.0.1:{free_port()}/api/v1/write")
    c.handle(power("t.x", T0 + 1000 * np.arange(10), np.arange(10.0)))
    wait_for(lambda: c.stats()["failed_attempts"] >= 1, what="a failed attempt")
    assert c.close(timeout=0.2) == 10
    assert c.stats()["unsent_samples"] == 10
    assert "closing with 10 samples not delivered" in caplog.text
    c.handle(power("t.x", [T0], [1.0]))  # after close: counted, not lost silently
    assert c.stats()["dropped_samples"] == 1


# -- configuration ---------------------------------------------------------------------------------
def test_the_sample_validates_and_secrets_stay_hidden():
    import tomllib

    (name, section), = tomllib.loads(RemoteWriteConsumer.SAMPLE)["consumers"].items()
    cfg = validate_section(name, section, issues := [], classes={"remote_write": RemoteWriteConsumer})
    assert issues == [] and cfg.url.endswith("/api/v1/write")
    cfg = RemoteWriteConfig(url="http://h/api/v1/write", username="u", password="hunter2")
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


@pytest.mark.parametrize(("section", "key", "words"), [
    ({"url": "http://h/w", "labels": {"probe": "x"}}, "consumers.prom.labels", "set by wattsight"),
    ({"url": "ftp://h/w"}, "consumers.prom", "not an http://"),
    ({"url": "http://u:p@h/w"}, "consumers.prom", "not in `url`"),
    ({"url": "http://h/w", "password": "x"}, "consumers.prom", "needs `username`"),
    ({"url": "http://h/w", "batch_max": "10"}, "consumers.prom.batch_max", "not a whole number"),
    ({"url": "http://h/w", "flush_intervall": 1.0}, "consumers.prom.flush_intervall", "flush_interval"),
    ({}, "consumers.prom.url", "missing"),
])
def test_bad_sections_are_config_errors_naming_the_key(section, key, words):
    with pytest.raises(ConfigError) as err:
        build_consumers({"prom": {"type": "remote_write", **section}}, "t",
                        classes={"remote_write": RemoteWriteConsumer})
    assert err.value.errors[0].key == key and words in str(err.value), str(err.value)


def test_build_consumers_starts_the_enabled_ones():
    built = build_consumers({"a": {"type": "remote_write", "url": "http://127.0.0.1:9/w"},
                             "b": {"type": "remote_write", "url": "http://127.0.0.1:9/w", "enabled": False}},
                            "t", classes={"remote_write": RemoteWriteConsumer})
    assert [c.name for c in built] == ["a"]
    assert built[0].close(timeout=0) == 0


def test_remote_write_is_registered_as_a_consumer():
    from wattsight import plugins

    assert plugins.load("remote_write", plugins.CONSUMERS) is RemoteWriteConsumer
