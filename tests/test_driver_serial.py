"""The serial (Watts Up? Pro) driver against a simulated meter behind a real socat pty pair."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import pytest
import stream_collector
from peers.wattsup import PeerMissing, WattsUpMeter

from wattsight import cli
from wattsight.drivers.serial import WattsUpConfig, WattsUpDriver, parse_record, split_packets
from wattsight.errors import MeterPermissionError, MeterReplyError, MeterUnreachable
from wattsight.runner import Runner

EVERY = 0.05  # s between the simulator's records (the driver still asks the meter for `interval`)


@pytest.fixture
def meter(tmp_path):
    m = WattsUpMeter(tmp_path, power=123.4, record_every=EVERY)
    try:
        m.start()
    except PeerMissing as exc:
        pytest.skip(str(exc))
    yield m
    m.stop()


def make(device, **kw) -> WattsUpDriver:
    cfg = WattsUpConfig(type="serial", device=str(device), probe=kw.pop("probe", "desk"), **kw)
    return WattsUpDriver(cfg, site="lab")


class Collector(stream_collector.Collector):
    def values(self, metric: str) -> list[float]:
        return [s.value for s in self.samples if s.metric == metric]


async def until(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        await asyncio.sleep(0.02)


# -- parsing: the protocol's own example ---------------------------------------------------------
def test_the_protocol_example_record_reads_in_si_units():
    fields = parse_record("#d,-,18,124,1191,97,0,_,_,_,_,_,_,_,_,_,_,_,_,_,_;")
    assert fields == pytest.approx({"W": 12.4, "V": 119.1, "A": 0.097, "WH": 0.0})


@pytest.mark.parametrize("record, why", [
    ("#d,-,18,124,1191;", "announces 18 fields but has 2"),
    ("#d,-,3,12x,1,2;", "not an integer"),
    ("#d,-,1,_;", "no power field"),
    ("#d,-,2,-5,1;", "negative"),
])
def test_malformed_records_say_why(record, why):
    with pytest.raises(ValueError, match=why):
        parse_record(record)


def test_packets_are_resynchronised_on_hash_and_noise_is_ignored():
    packets, rest = split_packets("noise#d,-,1,5#d,-,1,7;xx#h,-,1,W;#d,-")
    assert packets == [("#d,-,1,5", False), ("#d,-,1,7;", True), ("#h,-,1,W;", True)]
    assert rest == "#d,-"


# -- against the simulated meter ---------------------------------------------------------------
def test_records_become_power_and_an_energy_counter_stamped_on_arrival(meter):
    meter.energy_wh = 1000.0
    driver = make(meter.device, interval=2)

    async def scenario():
        c = Collector(driver)
        before = driver.clock()
        await c.until(lambda: len(c.values("power")) >= 3, "three records")
        after = driver.clock()
        await c.stop()
        return c, before, after

    c, before, after = asyncio.run(scenario())
    assert meter.requested_interval == 2 and "#L,W,3,E,,2;" in meter.commands
    by = {(s.metric, s.unit, s.kind) for s in c.samples}
    assert {("power", "W", "gauge"), ("energy", "J", "counter"), ("voltage", "V", "gauge"),
            ("current", "A", "gauge"), ("power_factor", "1", "gauge"), ("frequency", "Hz", "gauge"),
            ("apparent_power", "VA", "gauge")} == by
    assert set(c.values("power")) == {123.4}
    assert set(c.values("voltage")) == {230.0} and set(c.values("frequency")) == {50.0}
    assert c.values("current")[0] == pytest.approx(123.4 / 0.95 / 230, abs=0.001)
    energy = c.values("energy")
    # tenths of Wh -> J: 1000 Wh and a little more, in steps of 360 J, never going down
    assert energy == sorted(energy) and 1000 * 3600 <= energy[0] < 1001 * 3600
    assert all(round(e / 360) * 360 == pytest.approx(e) for e in energy)
    assert {s.probe for s in c.samples} == {"lab.desk"}
    assert all(before / 1000 <= s.measured_at <= after / 1000 for s in c.samples)
    assert all(s.provenance == "measured" for s in c.samples)


def test_power_set_at_run_time_is_read(meter):
    async def scenario():
        c = Collector(make(meter.device))
        await c.until(lambda: 123.4 in c.values("power"), "the first power")
        meter.power = 250.5
        await c.until(lambda: c.values("power")[-1] == 250.5, "the new power")
        await c.stop()

    asyncio.run(scenario())


def test_malformed_records_are_counted_logged_once_and_too_many_end_the_stream(meter, caplog):
    driver = make(meter.device, max_bad_records=3)

    async def scenario():
        c = Collector(driver)
        await c.until(lambda: c.values("power"), "a first record")
        meter.inject(b"#d,-,18,1,2,3;#d,-,18,garbage;")       # two bad ones, then good records again
        await c.until(lambda: driver.bad_records == 2, "two bad records counted")
        n = len(c.values("power"))
        await c.until(lambda: len(c.values("power")) > n, "good records after the bad ones")
        # one write: a good record (66.6 W, which the simulator never sends), then three bad ones in a row
        meter.inject(b"#d,-,18,666,2300,290,0,_,_,_,_,_,_,_,_,_,_,_,_,_,_;" + b"#d,-,18,x;" * 3)
        await asyncio.wait_for(c.task, 10)
        return c

    with caplog.at_level(logging.WARNING, logger="wattsight.drivers.serial"):
        c = asyncio.run(scenario())
    assert isinstance(c.error, MeterReplyError)
    assert c.values("power")[-1] == 66.6  # what came before the failure was still published
    text = str(c.error)
    assert str(meter.device) in text and "lab.desk" in text and "3 malformed records in a row" in text
    assert "baud" in text
    assert driver.bad_records == 5
    logged = [r.getMessage() for r in caplog.records if "malformed record" in r.getMessage()]
    assert len(logged) == 2, logged  # the first bad record, and the count when the port is closed
    assert "'#d,-,18,1,2,3;' (announces 18 fields but has 3)" in logged[0]
    assert "5 malformed records skipped" in logged[1]


def test_the_port_vanishing_ends_the_stream_and_the_runner_reopens_it(meter):
    cfg = WattsUpConfig(type="serial", device=str(meter.device), probe="desk", period=0.1)
    got = []
    runner = Runner({"wattsup": (WattsUpDriver, cfg)}, site="lab", sink=got.append, max_backoff=0.3)

    def powers():
        return [s.value for b in got for s in b.samples() if s.metric == "power"]

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await until(lambda: len(powers()) >= 2, "records before the unplug")
        meter.stop()  # unplugged: socat ends, the links vanish
        await until(lambda: runner.state()[0]["status"] == "error", "the runner to see the failure")
        failed = dict(runner.state()[0])
        meter.power = 77.7
        meter.start()
        await until(lambda: 77.7 in powers(), "records after the meter is back")
        stop.set()
        await task
        return failed

    failed = asyncio.run(scenario())
    assert str(meter.device) in failed["last_error"] and "lab.desk" in failed["last_error"]
    assert "vanished" in failed["last_error"] or "no such device" in failed["last_error"]
    state = runner.state()[0]
    assert state["errors"] >= 1 and state["restarts"] >= 1 and state["last_success"] is not None


def test_a_missing_device_is_unreachable_naming_device_and_probe(tmp_path):
    with pytest.raises(MeterUnreachable, match=r"ttyNOPE \(lab.desk\): no such device"):
        asyncio.run(anext(make(tmp_path / "ttyNOPE").stream()))


def test_a_meter_that_never_answers_is_unreachable_after_the_timeout(tmp_path):
    try:
        mute = WattsUpMeter(tmp_path, respond=False).start()
    except PeerMissing as exc:
        pytest.skip(str(exc))
    try:
        with pytest.raises(MeterUnreachable, match="no record for 0.5 s"):
            asyncio.run(anext(make(mute.device, timeout=0.5).stream()))
        assert "#L,W,3,E,,1;" in mute.commands
    finally:
        mute.stop()


def test_a_port_held_by_another_program_is_reported(meter):
    import serial

    with serial.Serial(str(meter.device), exclusive=True), \
            pytest.raises(MeterUnreachable, match="in use by another program"):
        asyncio.run(anext(make(meter.device).stream()))


def test_permission_denied_says_to_join_the_dialout_group(meter):
    # A real EACCES: a child process opens the pty (root:tty, mode 620) as an unprivileged user.
    device = os.path.realpath(meter.device)
    if os.geteuid() != 0:
        os.chmod(device, 0)
    driver = make(device)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, try to open the port, say what happened
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                asyncio.run(anext(driver.stream()))
                said = "opened"
            except Exception as exc:  # the child reports whatever happened to the parent
                said = f"{type(exc).__name__}: {exc}"
            os.write(w, said.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    assert said.startswith(f"{MeterPermissionError.__name__}: "), said
    assert device in said and "lab.desk" in said and "dialout" in said and "(owned by root:" in said


def test_wattsight_probe_once_prints_the_meter(meter, capsys):
    code = cli.main(["probe", "serial", "--device", str(meter.device), "--probe", "desk", "--once", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    samples = [json.loads(line) for line in out.splitlines()]
    want = {"probe": "local.desk", "metric": "power", "value": 123.4, "unit": "W"}
    assert want.items() <= samples[0].items()


def test_wattsight_probe_reports_a_missing_device(tmp_path, capsys):
    code = cli.main(["probe", "serial", "--device", str(tmp_path / "ttyUSB9"), "--probe", "desk", "--once"])
    assert code == 1
    assert "no such device" in capsys.readouterr().err


def test_probes_come_from_the_config_without_opening_the_port():
    driver = make("/dev/ttyUSB-not-there", probe="lyon.desk-3", interval=5)
    assert [(p.id, p.period) for p in driver.probes()] == [("lyon.desk-3", 5.0)]
