"""The mqtt (smart plug) driver against a real mosquitto, with plugs publishing as Shelly and Tasmota do."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import stream_collector
from peers.mqtt import Mosquitto, PeerMissing, Publisher, ShellyPlug, TasmotaPlug, free_port
from pydantic import ValidationError

from wattsight import cli
from wattsight.drivers.mqtt import MqttConfig, MqttDriver
from wattsight.errors import MeterAuthError, MeterPermissionError, MeterUnreachable
from wattsight.runner import Runner

NOW_MS = 1_700_000_000_000


def start_broker(folder) -> Mosquitto:
    try:
        return Mosquitto(folder).start()
    except PeerMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


def config(port: int, plugs: list[dict], **kw) -> MqttConfig:
    section = {"type": "mqtt", "host": "127.0.0.1", "port": port, "plugs": plugs, **kw}
    return MqttConfig.model_validate(section)


class Collector(stream_collector.Collector):
    def of(self, probe: str, metric: str) -> list:
        return [s for s in self.samples if s.probe == probe and s.metric == metric]

    def values(self, probe: str, metric: str) -> list[float]:
        return [s.value for s in self.of(probe, metric)]


def in_thread(fn, *args, **kw):
    """Run a blocking publisher call without stopping the driver's event loop."""
    return asyncio.to_thread(fn, *args, **kw)


# -- readings ---------------------------------------------------------------------------------
def test_a_shelly_gives_power_and_an_energy_counter_from_status_and_notifications(broker):
    prefix = "shellyplusplugs-a8032abe54dc"
    plug = ShellyPlug(broker.port, prefix).connect()
    driver = MqttDriver(config(broker.port, [{"probe": "desk-1", "format": "shelly", "topic": prefix}]),
                        site="lab")

    async def scenario():
        c = Collector(driver)
        await c.until(lambda: c.values("lab.desk-1", "up") == [1.0], "its retained online: we listen")
        await in_thread(plug.status, 10.7, 46791.262)
        await c.until(lambda: c.values("lab.desk-1", "power"), "the status")
        ts = time.time() - 1.5  # the Shelly's own clock, a little behind: its timestamp is kept
        await in_thread(plug.notify, {"apower": 12.5}, ts)
        energy = {"aenergy": {"total": 46800.0, "by_minute": [1, 2, 3], "minute_ts": 1}}
        await in_thread(plug.notify, energy, ts + 1)
        await in_thread(plug.notify, {"temperature": {"tC": 41.0}}, ts + 2)   # no reading: nothing published
        await c.until(lambda: len(c.values("lab.desk-1", "energy")) == 2, "the notifications")
        await c.stop()
        return c, ts

    try:
        c, ts = asyncio.run(scenario())
    finally:
        plug.close()
    assert c.values("lab.desk-1", "power") == [10.7, 12.5]
    assert c.values("lab.desk-1", "energy") == pytest.approx([46791.262 * 3600, 46800.0 * 3600])
    assert {(s.unit, s.kind) for s in c.of("lab.desk-1", "energy")} == {("J", "counter")}
    assert {(s.unit, s.kind) for s in c.of("lab.desk-1", "power")} == {("W", "gauge")}
    assert c.of("lab.desk-1", "power")[1].measured_at == pytest.approx(ts, abs=0.001)
    assert c.of("lab.desk-1", "energy")[1].measured_at == pytest.approx(ts + 1, abs=0.001)
    assert driver.rejected == {}


def test_a_tasmota_gives_power_and_energy_in_si_units_stamped_with_its_time_when_sensible(broker):
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC).replace(tzinfo=None)
    plugs = [{"probe": "desk-2", "format": "tasmota", "topic": "plug002"},
             {"probe": "desk-3", "format": "tasmota", "topic": "plug003", "channel": 2}]
    driver = MqttDriver(config(broker.port, plugs), site="lab", clock=lambda: NOW_MS)
    p2, p3 = TasmotaPlug(broker.port, "plug002").connect(), TasmotaPlug(broker.port, "plug003").connect()

    async def scenario():
        c = Collector(driver)
        await c.until(lambda: len(c.of("lab.desk-2", "up")) + len(c.of("lab.desk-3", "up")) == 2, "both LWTs")
        await in_thread(p2.sensor, 56, 514.153, (now - timedelta(seconds=3)).isoformat())  # in UTC
        await in_thread(p2.sensor, 60, 514.2, (now + timedelta(hours=2)).isoformat())  # local CEST
        await in_thread(p3.sensor, [52, 5], [1.5, 0.25], now.isoformat() + "+00:00")
        await c.until(lambda: len(c.values("lab.desk-2", "power")) == 2 and c.values("lab.desk-3", "power"),
                      "the SENSOR messages")
        await c.stop()
        return c

    try:
        c = asyncio.run(scenario())
    finally:
        p2.close()
        p3.close()
    assert c.values("lab.desk-2", "power") == [56.0, 60.0]
    assert c.values("lab.desk-2", "energy") == pytest.approx([514.153 * 3.6e6, 514.2 * 3.6e6])
    # its Time within clock_skew of ours is its measurement time; two hours off, the arrival is
    assert [s.measured_at * 1000 for s in c.of("lab.desk-2", "power")] == [NOW_MS - 3000, NOW_MS]
    assert c.values("lab.desk-3", "power") == [5.0]                      # channel 2 of [52, 5]
    assert c.values("lab.desk-3", "energy") == pytest.approx([0.25 * 3.6e6])


def test_any_json_is_read_by_paths_with_its_availability_topic(broker):
    plug = {"probe": "rack-3", "format": "json", "topic": "z2m/rack-3", "power_path": "state.power",
            "energy_path": "state.meter[1]", "energy_scale": 3.6e6,
            "availability_topic": "z2m/rack-3/availability"}
    driver = MqttDriver(config(broker.port, [plug]), site="lab")
    pub = Publisher(broker.port).connect()
    pub.publish("z2m/rack-3/availability", {"state": "online"}, retain=True)

    async def scenario():
        c = Collector(driver)
        await c.until(lambda: c.values("lab.rack-3", "up") == [1.0], "the retained availability")
        await in_thread(pub.publish, "z2m/rack-3", {"state": {"power": "12.5", "meter": [0, 1.5]}})
        await in_thread(pub.publish, "z2m/rack-3/availability", "offline", retain=True)
        await c.until(lambda: c.values("lab.rack-3", "up") == [1.0, 0.0], "offline")
        await c.stop()
        return c

    try:
        c = asyncio.run(scenario())
    finally:
        pub.publish("z2m/rack-3/availability", b"", retain=True)
        pub.close()
    assert c.values("lab.rack-3", "power") == [12.5]
    assert c.values("lab.rack-3", "energy") == [1.5 * 3.6e6]


class BatchCollector(Collector):
    """A Collector that also keeps the size of each batch the stream yields."""

    async def _run(self) -> None:
        self.sizes = []
        stream = self.driver.stream()
        try:
            async for batch in stream:
                self.sizes.append(len(batch))
                self.samples.extend(batch.samples())
        finally:
            await stream.aclose()


def test_messages_arriving_within_linger_go_out_as_one_batch_per_flush(broker):
    n = 40
    driver = MqttDriver(config(broker.port, [{"probe": "desk-12", "format": "tasmota", "topic": "plug012"}],
                               period=5.0, linger=1.0), site="lab")
    pub = Publisher(broker.port).connect()
    pub.publish("tele/plug012/LWT", "Online", retain=True)

    def burst() -> None:  # n SENSOR messages sent back to back, then all acknowledged by the broker
        sent = [pub.client.publish("tele/plug012/SENSOR", json.dumps({"ENERGY": {"Power": w, "Total": 1.0}}),
                                   qos=1) for w in range(n)]
        for info in sent:
            info.wait_for_publish(10)

    async def scenario():
        c = BatchCollector(driver)
        await c.until(lambda: c.values("lab.desk-12", "up") == [1.0], "the retained LWT: we listen")
        before = len(c.sizes)
        await in_thread(burst)
        await c.until(lambda: len(c.values("lab.desk-12", "power")) == n, "every SENSOR message")
        await c.stop()
        return c, c.sizes[before:]

    try:
        c, sizes = asyncio.run(scenario())
    finally:
        pub.publish("tele/plug012/LWT", b"", retain=True)
        pub.close()
    assert c.values("lab.desk-12", "power") == [float(w) for w in range(n)]  # all, in arrival order
    assert sum(sizes) == 2 * n  # power and energy of each message, in...
    assert len(sizes) < n, sizes  # ...fewer batches than messages (one per flush, not one per message)


# -- online and offline --------------------------------------------------------------------------
def test_a_plug_that_loses_power_is_shown_offline_then_online_again(broker, caplog):
    driver = MqttDriver(config(broker.port, [{"probe": "desk-4", "format": "tasmota", "topic": "plug004"},
                                             {"probe": "desk-5", "format": "shelly", "topic": "shelly-5"}]),
                        site="lab")
    tasmota = TasmotaPlug(broker.port, "plug004").connect()
    shelly = ShellyPlug(broker.port, "shelly-5").connect()

    async def scenario():
        c = Collector(driver)
        await c.until(lambda: c.values("lab.desk-4", "up") == [1.0] and c.values("lab.desk-5", "up") == [1.0],
                      "both online")
        await in_thread(tasmota.crash)   # no goodbye: the broker publishes its last will
        await in_thread(shelly.crash)
        await c.until(lambda: c.values("lab.desk-4", "up")[-1:] == [0.0] == c.values("lab.desk-5", "up")[-1:],
                      "both offline")
        await in_thread(tasmota.connect)  # back: it says Online again
        await c.until(lambda: c.values("lab.desk-4", "up")[-1] == 1.0, "online again")
        await c.stop()
        return c

    with caplog.at_level(logging.WARNING, logger="wattsight.drivers.mqtt"):
        try:
            c = asyncio.run(scenario())
        finally:
            tasmota.close()
    assert c.values("lab.desk-4", "up")[:2] == [1.0, 0.0] and c.values("lab.desk-4", "up")[-1] == 1.0
    assert c.values("lab.desk-5", "up") == [1.0, 0.0]
    said = [r.getMessage() for r in caplog.records]
    assert sum("lab.desk-4 is OFFLINE" in m for m in said) == 1
    assert sum("lab.desk-5 is OFFLINE" in m for m in said) == 1
    assert sum("lab.desk-4 is online again" in m for m in said) == 1


def test_unreadable_payloads_are_counted_and_logged_once_per_plug(broker, caplog):
    plugs = [{"probe": "desk-6", "format": "tasmota", "topic": "plug006"},
             {"probe": "rack-7", "format": "json", "topic": "json/rack-7", "power_path": "ENERGY.Power"}]
    driver = MqttDriver(config(broker.port, plugs), site="lab")
    pub = Publisher(broker.port).connect()
    pub.publish("tele/plug006/LWT", "Online", retain=True)

    async def scenario():
        c = Collector(driver)
        await c.until(lambda: c.values("lab.desk-6", "up") == [1.0], "the driver listening")
        for payload in (b"not json", {"Time": "2024-01-01T00:00:00", "DS18B20": {"Temperature": 21}},
                        {"ENERGY": {"Power": "lots", "Total": 1.0}}):
            await in_thread(pub.publish, "tele/plug006/SENSOR", payload)
        await in_thread(pub.publish, "json/rack-7", {"ENERGY": {"Voltage": 230}})
        await in_thread(pub.publish, "json/rack-7", {"ENERGY": {"Power": 1e9}})
        await in_thread(pub.publish, "tele/plug006/SENSOR", {"ENERGY": {"Power": 33, "Total": 2.0}})
        await c.until(lambda: c.values("lab.desk-6", "power") == [33.0], "a good payload after bad ones")
        await c.stop()
        driver.close()  # as the runner does: says how many were skipped

    with caplog.at_level(logging.WARNING, logger="wattsight.drivers.mqtt"):
        try:
            asyncio.run(scenario())
        finally:
            pub.publish("tele/plug006/LWT", b"", retain=True)
            pub.close()
    assert driver.rejected == {"lab.desk-6": 3, "lab.rack-7": 2}
    said = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    desk = [m for m in said if "plug lab.desk-6: payload" in m]
    rack = [m for m in said if "plug lab.rack-7: payload" in m]
    assert len(desk) == 1 and "'tele/plug006/SENSOR'" in desk[0] and "not JSON" in desk[0]
    assert len(rack) == 1 and "'json/rack-7'" in rack[0] and "no 'ENERGY.Power'" in rack[0]
    totals = [r.getMessage() for r in caplog.records if "unreadable payloads skipped" in r.getMessage()]
    assert any("lab.desk-6: 3 unreadable" in m for m in totals), totals


# -- errors --------------------------------------------------------------------------------------
PLUG = [{"probe": "desk-9", "format": "tasmota", "topic": "plug009"}]


def first(driver):
    """The first batch of the driver's stream, which is then closed."""
    async def go():
        stream = driver.stream()
        try:
            return await anext(stream)
        finally:
            await stream.aclose()

    return asyncio.run(go())


def test_a_wrong_password_is_an_auth_error_that_does_not_show_it(broker):
    cfg = config(broker.auth_port, PLUG, username="meter", password="wrong-horse")
    with pytest.raises(MeterAuthError) as caught:
        first(MqttDriver(cfg, site="lab"))
    text = str(caught.value)
    assert f"127.0.0.1:{broker.auth_port}" in text and "'meter'" in text and "password" in text
    assert "wrong-horse" not in text and "wrong-horse" not in repr(cfg)


def test_no_credentials_on_a_listener_that_wants_them_is_an_auth_error(broker):
    with pytest.raises(MeterAuthError, match="anonymous"):
        first(MqttDriver(config(broker.auth_port, PLUG), site="lab"))


def test_the_right_password_reads(broker):
    with Publisher(broker.port) as pub:
        pub.publish("tele/plug009/LWT", "Online", retain=True)
        try:
            batch = first(MqttDriver(config(broker.auth_port, PLUG, username="meter", password="s3cret"),
                                     site="lab"))
        finally:
            pub.publish("tele/plug009/LWT", b"", retain=True)
    assert [(s.probe, s.metric, s.value) for s in batch.samples()] == [("lab.desk-9", "up", 1.0)]


def test_no_broker_is_unreachable_naming_it():
    port = free_port()
    with pytest.raises(MeterUnreachable, match=f"mqtt://127.0.0.1:{port}: cannot reach the broker"):
        first(MqttDriver(config(port, PLUG), site="lab"))


def test_a_stopped_broker_breaks_the_stream_and_the_runner_reconnects_when_it_is_back(tmp_path):
    broker = start_broker(tmp_path)
    cfg = config(broker.port, [{"probe": "desk-8", "format": "shelly", "topic": "shelly-8"}], period=0.1)
    got = []
    runner = Runner({"plugs": (MqttDriver, cfg)}, site="lab", sink=got.append, max_backoff=0.3)

    def powers():
        return [s.value for b in got for s in b.samples() if s.metric == "power"]

    def publish_until_seen(watts: float) -> None:
        """A Shelly that (re)connects and publishes until the driver has the reading."""
        with ShellyPlug(broker.port, "shelly-8") as plug:
            deadline = time.monotonic() + 15
            while watts not in powers():
                assert time.monotonic() < deadline, f"{watts} W never arrived: {runner.state()}"
                plug.status(watts, 100.0)
                time.sleep(0.1)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await in_thread(publish_until_seen, 20.0)
        broker.stop()
        deadline = time.monotonic() + 15
        while runner.state()[0]["status"] != "error":
            assert time.monotonic() < deadline, runner.state()
            await asyncio.sleep(0.02)
        failed = dict(runner.state()[0])
        broker.start()
        await in_thread(publish_until_seen, 30.0)
        stop.set()
        await task
        return failed

    try:
        failed = asyncio.run(scenario())
    finally:
        broker.stop()
    assert f"mqtt://127.0.0.1:{broker.port}" in failed["last_error"]
    state = runner.state()[0]
    assert state["restarts"] >= 1 and state["errors"] >= 1
    assert powers()[-1] == 30.0


def test_tls_with_the_brokers_ca_reads_and_an_unknown_ca_or_a_missing_file_is_refused(tmp_path):
    try:
        broker = Mosquitto(tmp_path, tls=True).start()
    except PeerMissing as exc:
        pytest.skip(str(exc))
    plug = [{"probe": "desk-11", "format": "tasmota", "topic": "plug011"}]
    try:
        with Publisher(broker.port) as pub:
            pub.publish("tele/plug011/LWT", "Online", retain=True)
        trusted = config(broker.tls_port, plug, tls=True, ca_file=str(broker.ca_file))
        batch = first(MqttDriver(trusted, site="lab"))
        assert [(s.metric, s.value) for s in batch.samples()] == [("up", 1.0)]
        with pytest.raises(MeterUnreachable, match="certificate is not trusted"):
            first(MqttDriver(config(broker.tls_port, plug, tls=True), site="lab"))  # the system's CAs
        with pytest.raises(MeterPermissionError, match="cannot read ca_file .*nope.pem: no such file"):
            first(MqttDriver(config(broker.tls_port, plug, tls=True, ca_file=str(tmp_path / "nope.pem")),
                             site="lab"))
    finally:
        broker.stop()


# -- the command line, the config ---------------------------------------------------------------
def test_wattsight_probe_once_prints_the_first_readings(broker, capsys):
    with Publisher(broker.port) as pub:
        pub.publish("tele/plug010/LWT", "Online", retain=True)
        try:
            code = cli.main(["probe", "mqtt", "--host", "127.0.0.1", "--port", str(broker.port),
                             "--plugs", '[{probe = "desk-10", format = "tasmota", topic = "plug010"}]',
                             "--once", "--json"])
        finally:
            pub.publish("tele/plug010/LWT", b"", retain=True)
    out, err = capsys.readouterr()
    assert code == 0, err
    samples = [json.loads(line) for line in out.splitlines()]
    got = [(s["probe"], s["metric"], s["value"], s["unit"]) for s in samples]
    assert got == [("local.desk-10", "up", 1.0, "1")]


def test_wattsight_probe_says_when_the_broker_is_not_there(capsys):
    port = free_port()
    code = cli.main(["probe", "mqtt", "--host", "127.0.0.1", "--port", str(port),
                     "--plugs", '[{probe = "p", format = "shelly", topic = "s"}]', "--once"])
    assert code == 1
    assert "cannot reach the broker" in capsys.readouterr().err


def test_probes_come_from_the_config_without_a_connection():
    cfg = config(1, [{"probe": "desk-1", "format": "shelly", "topic": "shelly-1"},
                     {"probe": "paris.rack-2", "format": "json", "topic": "a/+/power", "power_path": "w"}])
    cfg = cfg.model_copy(update={"host": "broker.invalid"})
    probes = MqttDriver(cfg, site="lab").probes()
    assert [p.id for p in probes] == ["lab.desk-1", "paris.rack-2"]
    assert "shelly plug shelly-1 on mqtt://broker.invalid:1" in probes[0].description


def test_a_wildcard_json_topic_feeds_its_plug():
    cfg = config(1, [{"probe": "rack", "format": "json", "topic": "site/+/rack", "power_path": "w"}])
    batch = MqttDriver(cfg, site="lab").handle("site/room-1/rack", b'{"w": 7}', NOW_MS)
    assert [(s.probe, s.value, s.measured_at) for s in batch.samples()] == [("lab.rack", 7.0, NOW_MS / 1000)]


@pytest.mark.parametrize("plug, problem", [
    ({"probe": "p", "format": "json", "topic": "t"}, "needs power_path or energy_path"),
    ({"probe": "p", "format": "shelly", "topic": "t", "power_path": "x"}, "power_path do not apply"),
    ({"probe": "p", "format": "tasmota", "topic": "t/#"}, "no + or # wildcards"),
    ({"probe": "p", "format": "tasmota", "topic": "t", "full_topic": "%topic%/"}, "must contain %prefix%"),
    ({"probe": "p", "format": "zigbee", "topic": "t"}, "format"),
])
def test_bad_plug_settings_are_refused(plug, problem):
    with pytest.raises(ValidationError, match=re.escape(problem)):
        config(1883, [plug])


def test_a_probe_given_twice_is_refused():
    with pytest.raises(ValidationError, match="probe p given twice"):
        config(1883, [{"probe": "p", "format": "shelly", "topic": "a"},
                      {"probe": "p", "format": "shelly", "topic": "b"}])
