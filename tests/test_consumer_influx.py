"""The influxdb consumer against a real InfluxDB 1.x started here; 2.x as a request shape only.

Only InfluxDB 1.6 (Debian) runs on this machine: what 1.x stores is read back with InfluxQL
(values, times, tags, the field type); the 2.x API (``/api/v2/write``, ``Authorization: Token``)
is checked as the request a capture server receives.
"""

from __future__ import annotations

import gzip
import logging
import tomllib

import numpy as np
import pytest
from consumer_helpers import FAST, T0, power, wait_for
from peers.influxdb import Capture, InfluxDB, PeerMissing, free_port

from wattsight.app import Inbox
from wattsight.bus import Publisher, Subscriber
from wattsight.consumers.base import build_consumers, validate_section
from wattsight.consumers.influx import InfluxConfig, InfluxConsumer, escape_key, escape_measurement
from wattsight.errors import ConfigError
from wattsight.sample import Batch, Series, wrapping_counter

DB = "ws"
ADMIN, WRITER = ("admin", "adm1n-pw"), ("writer", "wr1ter-pw")


@pytest.fixture(scope="module")
def influx(tmp_path_factory):
    server = InfluxDB(tmp_path_factory.mktemp("influxdb"), users=dict([ADMIN, WRITER]))
    try:
        server.start()
    except PeerMissing as exc:
        pytest.skip(str(exc))
    server.create_database(DB)
    server.query(f'GRANT WRITE ON "{DB}" TO "{WRITER[0]}"')
    yield server
    server.stop()


def consumer(url: str, **kw) -> InfluxConsumer:
    settings = {"database": DB, "username": WRITER[0], "password": WRITER[1], **FAST, **kw}
    return InfluxConsumer(InfluxConfig(url=url, **settings), site="t", name="influx")


def points(influx, measurement: str, probe: str) -> list[tuple[int, float]]:
    rows = influx.select(f'SELECT "value" FROM "{measurement}" WHERE "probe" = \'{probe}\'', DB)
    return [(r["time"], r["value"]) for r in rows]


def test_escaping_follows_the_line_protocol():
    assert escape_measurement("odd metric,x=1") == r"odd\ metric\,x=1"
    assert escape_measurement("#x") == r"\#x"
    assert escape_key("a b,c=d") == r"a\ b\,c\=d"
    assert escape_key("two\nlines") == r"two\ lines"


# -- against InfluxDB 1.x -------------------------------------------------------------------------
def test_samples_arrive_as_float_fields_with_their_tags_and_times(influx):
    t = T0 + 1000 * np.arange(6)
    c = consumer(influx.url, tags={"room name": "b,2=x"})
    c.handle(Batch.concat([
        power("t.node-1", t, [100.0, 101.5, 99.25, 250.0, 0.0, np.nan]),
        Batch.of_series(Series("t.node-1", "energy", "J", "counter"), t, 1e9 + 100.0 * np.arange(6)),
        Batch.of_series(Series("t.sw-1", "network_in", "B", wrapping_counter(2**32)), t[:3], [1.0, 2.0, 3.0]),
        Batch.of_series(Series("t.node-1", "odd metric,x=1", "V"), t[:2], [230.0, 231.0]),
        power("t.node-2", t[:2], [90.0, 91.0], provenance="modelled"),
    ]))
    assert c.close(timeout=30) == 0
    stats = c.stats()
    assert stats["sent_samples"] == 5 + 6 + 3 + 2 + 2 and stats["nonfinite_samples"] == 1
    assert stats["rejected_samples"] == stats["dropped_samples"] == 0

    rows = influx.select("SELECT * FROM \"power\" WHERE \"probe\" = 't.node-1'", DB)
    assert [(r["time"], r["value"]) for r in rows] == list(zip(t[:5].tolist(), [100.0, 101.5, 99.25, 250.0, 0.0]))
    assert {k: v for k, v in rows[0].items() if k not in ("time", "value")} == {
        "probe": "t.node-1", "provenance": "measured", "site": "t", "room name": "b,2=x"}
    assert points(influx, "energy", "t.node-1") == [(int(a), 1e9 + 100.0 * i) for i, a in enumerate(t)]
    assert points(influx, "network_in", "t.sw-1") == [(int(a), float(i + 1)) for i, a in enumerate(t[:3])]
    assert points(influx, "odd metric,x=1", "t.node-1") == [(int(t[0]), 230.0), (int(t[1]), 231.0)]
    modelled = influx.select("SELECT * FROM \"power\" WHERE \"probe\" = 't.node-2'", DB)
    assert {r["provenance"] for r in modelled} == {"modelled"}
    (fields,) = influx.query('SHOW FIELD KEYS FROM "power"', DB)
    assert fields["series"][0]["values"] == [["value", "float"]]


def test_influxdb_down_then_up_gets_the_whole_backlog(influx, caplog):
    c = consumer(influx.url)
    t = T0 + 1000 * np.arange(30)
    influx.stop()
    try:
        c.handle(power("t.outage", t[:10], np.arange(10.0)))
        wait_for(lambda: c.stats()["failed_attempts"] >= 2, what="failed attempts while down")
        c.handle(power("t.outage", t[10:], np.arange(10.0, 30.0)))
        wait_for(lambda: c.stats()["failed_attempts"] >= 3, what="another failed attempt")
    finally:
        influx.start()
    wait_for(lambda: c.stats()["sent_samples"] == 30, what="the backlog delivered")
    assert c.close(timeout=30) == 0
    assert c.stats()["dropped_samples"] == 0 and c.stats()["rejected_samples"] == 0
    assert points(influx, "power", "t.outage") == list(zip(t.tolist(), np.arange(30.0).tolist()))
    assert "ConnectError" in caplog.text and "delivering again after" in caplog.text


def test_a_full_backlog_drops_the_oldest_samples_counts_them_and_says_so_once(influx, caplog):
    c = consumer(influx.url, max_backlog=100, backoff_min=60.0, backoff_max=60.0)
    t = T0 + 1000 * np.arange(200)
    influx.stop()
    try:
        c.handle(power("t.full", t[:50], np.arange(50.0)))
        wait_for(lambda: c.stats()["failed_attempts"] == 1 and c.stats()["inflight_samples"] == 0,
                 what="a failed attempt")  # the sender now waits 30-60 s
        for lo in (50, 100, 150):
            c.handle(power("t.full", t[lo:lo + 50], np.arange(lo, lo + 50.0)))
        assert c.stats()["dropped_samples"] == 100 and c.stats()["queued_samples"] == 100
    finally:
        influx.start()
    assert c.close(timeout=30) == 0  # close() cuts the back-off short for a last try
    assert c.stats()["sent_samples"] == 100
    assert points(influx, "power", "t.full") == list(zip(t[100:].tolist(), np.arange(100.0, 200.0).tolist()))
    full = [r for r in caplog.records if "backlog full" in r.getMessage() and r.levelno == logging.ERROR]
    assert len(full) == 1


def test_a_partial_write_counts_what_was_refused_with_the_servers_message(influx, caplog):
    assert influx.write(f"conflict,probe=t.pw,provenance=measured,site=t value=1i {T0}", DB).status_code == 204
    c = consumer(influx.url)
    c.handle(Batch.concat([Batch.of_series(Series("t.pw", "conflict", "W"), [T0 + 1000, T0 + 2000], [2.0, 3.0]),
                           power("t.pw", [T0, T0 + 1000, T0 + 2000], [1.0, 2.0, 3.0])]))
    assert c.close(timeout=30) == 0
    stats = c.stats()
    assert stats["rejected_samples"] == 2 and stats["sent_samples"] == 3 and stats["failed_attempts"] == 0
    assert points(influx, "power", "t.pw") == [(T0, 1.0), (T0 + 1000, 2.0), (T0 + 2000, 3.0)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("HTTP 400" in m and "field type conflict" in m for m in errors), errors


def test_a_missing_database_is_refused_not_retried(influx, caplog):
    c = consumer(influx.url, database="nope")
    c.handle(power("t.x", [T0], [1.0]))
    assert c.close(timeout=30) == 0
    assert c.stats()["rejected_samples"] == 1 and c.stats()["failed_attempts"] == 0
    assert 'HTTP 404: database not found: "nope"' in caplog.text


def test_a_wrong_password_is_refused_and_never_logged(influx, caplog):
    caplog.set_level(logging.DEBUG)
    c = consumer(influx.url, password="not-the-pa55word")
    c.handle(power("t.x", [T0], [1.0]))
    assert c.close(timeout=30) == 0
    assert c.stats()["rejected_samples"] == 1
    assert "HTTP 401: authorization failed" in caplog.text
    assert "pa55" not in caplog.text and "pa55" not in str(c.stats()) and "pa55" not in repr(c.config)
    assert "wr1ter" not in caplog.text


def test_through_the_bus_to_influxdb(influx, tmp_path):
    key = b"k" * 32
    endpoint = f"ipc://{tmp_path}/bus"
    pub = Publisher(endpoint, key)
    c = consumer(influx.url)
    inbox = Inbox(Subscriber(endpoint, key), [c])
    wait_for(pub.listening, what="the subscriber joined")
    t = T0 + 1000 * np.arange(20)
    pub.publish(Batch.concat([power("t.bus-1", t, np.arange(20.0)),
                              Batch.of_series(Series("t.bus-1", "energy", "J", "counter"), t, np.arange(20.0))]))
    wait_for(lambda: inbox.acked_samples == 40, what="the inbox got the batches")
    inbox.close()
    pub.close()
    assert c.close(timeout=30) == 0
    assert points(influx, "power", "t.bus-1") == list(zip(t.tolist(), np.arange(20.0).tolist()))
    assert len(points(influx, "energy", "t.bus-1")) == 20


# -- InfluxDB 2.x: the request's shape ---------------------------------------------------------------
def test_the_v2_request_has_org_bucket_precision_and_token(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    token = tmp_path / "token"
    token.write_text("t0ken-s3cret\n")
    with Capture() as cap:
        cfg = InfluxConfig(url=cap.url + "/", api="v2", org="lab", bucket="power", token_file=token, gzip=True,
                           measurement_prefix="ws_", **FAST)
        c = InfluxConsumer(cfg, site="t")
        c.handle(power("t.x", [T0, T0 + 1000], [1.0, 2.5]))
        assert c.close(timeout=10) == 0
        (req,) = cap.requests
    assert req.path == "/api/v2/write"
    assert req.query == {"org": ["lab"], "bucket": ["power"], "precision": ["ms"]}
    assert req.headers["authorization"] == "Token t0ken-s3cret" and req.headers["content-encoding"] == "gzip"
    assert gzip.decompress(req.body).decode() == (
        f"ws_power,probe=t.x,provenance=measured,site=t value=1.0 {T0}\n"
        f"ws_power,probe=t.x,provenance=measured,site=t value=2.5 {T0 + 1000}\n")
    assert "t0ken" not in caplog.text and "t0ken" not in str(c.stats())


def test_v2_errors_are_read_from_the_json_message(caplog):
    with Capture() as cap:
        cap.status, cap.reply = 401, b'{"code":"unauthorized","message":"unauthorized access"}'
        c = InfluxConsumer(InfluxConfig(url=cap.url, api="v2", org="o", bucket="b", token="x", **FAST), site="t")
        c.handle(power("t.x", [T0], [1.0]))
        assert c.close(timeout=10) == 0
    assert c.stats()["rejected_samples"] == 1 and "HTTP 401: unauthorized access" in caplog.text


def test_close_says_what_could_not_be_delivered(caplog):
    c = consumer(f"http://127.0.0.1:{free_port()}")
    c.handle(power("t.x", T0 + 1000 * np.arange(10), np.arange(10.0)))
    wait_for(lambda: c.stats()["failed_attempts"] >= 1, what="a failed attempt")
    assert c.close(timeout=0.2) == 10
    assert "closing with 10 samples not delivered" in caplog.text


# -- configuration ---------------------------------------------------------------------------------
def test_the_sample_validates():
    (name, section), = tomllib.loads(InfluxConsumer.SAMPLE)["consumers"].items()
    cfg = validate_section(name, section, issues := [], classes={"influxdb": InfluxConsumer})
    assert issues == [] and cfg.database == "wattsight" and cfg.api == "v1"


@pytest.mark.parametrize(("section", "key", "words"), [
    ({}, "consumers.ix", 'needs `database`'),
    ({"database": "d", "org": "o"}, "consumers.ix", "`org`: not used with api = 'v1'"),
    ({"api": "v2", "org": "o", "bucket": "b"}, "consumers.ix", "`token` or `token_file`"),
    ({"api": "v3"}, "consumers.ix.api", "not allowed"),
    ({"database": "d", "tags": {"site": "x"}}, "consumers.ix", "set by wattsight"),
    ({"database": "d", "username": "u"}, "consumers.ix", "needs `username` and one of"),
    ({"database": "d", "gzip": "yes"}, "consumers.ix.gzip", "not a boolean"),
])
def test_bad_sections_are_config_errors_naming_the_key(section, key, words):
    with pytest.raises(ConfigError) as err:
        build_consumers({"ix": {"type": "influxdb", "url": "http://127.0.0.1:8086", **section}}, "t",
                        classes={"influxdb": InfluxConsumer})
    assert err.value.errors[0].key == key and words in str(err.value), str(err.value)


def test_an_unreadable_password_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_consumers({"ix": {"type": "influxdb", "url": "http://127.0.0.1:8086", "database": "d",
                                "username": "u", "password_file": str(tmp_path / "missing")}}, "t",
                        classes={"influxdb": InfluxConsumer})
    assert err.value.key == "consumers.ix.password_file"


def test_influxdb_is_registered_as_a_consumer():
    from wattsight import plugins

    assert plugins.load("influxdb", plugins.CONSUMERS) is InfluxConsumer
