"""The SDK through a real ``wattsight run --demo`` server, and with no server at all.

The demo rack's power is a pure function of time (the dummy driver's square pattern), so the
exact energy of a probe over any span is known: the SDK's step figures are checked against it.
"""

from __future__ import annotations

import logging
import math
import socket
import time

import httpx
import pytest
from procs import Wattsight, free_port

from wattsight.config import DEMO_RACK
from wattsight.drivers.base import site_probe
from wattsight.drivers.dummy import DummyConfig, make_power
from wattsight.recorder import Recorder, enable_recording, set_step

pytestmark = pytest.mark.slow
PROBES = ["demo.node-1", "demo.node-2"]
#: The steps here last 2 to 3 s (the issue's 0.5 % is met by recsrv's test with 12-s steps). On a loaded
#: machine a demo sample is stamped up to ~150 ms after its second (seen: 1485.143); where the square
#: pattern jumps inside such an interval, the interpolated counter moves a 3-s step by ~0.5 %.
TOLERANCE = 0.01


def analytic(probes: list[str], start_s: float, end_s: float) -> float:
    """The exact energy of ``probes`` of the demo rack over [start, end], from the pattern's formula."""
    cfg = DummyConfig.model_validate(DEMO_RACK)
    ids = [site_probe(n, "demo") for n in cfg.names()]
    per_probe = make_power(cfg, ids).energy(round(start_s * 1000), round(end_s * 1000))
    return float(sum(e for pid, e in zip(ids, per_probe, strict=True) if pid in probes))


def on_samples() -> float:
    """A clock that reads whole seconds: the demo's sample times, so that step boundaries fall on samples.

    Between two samples the server can only interpolate the energy counter; the demo's square pattern
    jumps by up to 170 W inside a second, so a boundary between samples would be off by tens of joules.
    """
    return float(math.floor(time.time()))


def settled(ws: Wattsight, until_s: float) -> None:
    """Until every demo probe has a sample stored at or after ``until_s`` (epoch s)."""
    def done() -> bool:
        probes = ws.get("/api/v1/probes")["probes"]
        return len(probes) == 8 and all(p["last"] and p["last"]["energy"]["measured_at"] >= until_s + 1
                                        for p in probes)
    ws.wait_for(done, 60, f"samples past {until_s}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recorder-api")
    ws = Wattsight(["--demo", "--data-dir", str(tmp / "data")], tmp, name="demo",
                   listen=f"127.0.0.1:{free_port()}")
    try:
        ws.wait_ready()
        settled(ws, time.time() - 1)
        yield ws
    finally:
        ws.stop()


def test_steps_measured_by_the_server_match_the_demo_patterns_energy(server):
    rec = Recorder(server.url, environment={"probes": PROBES}, clock=on_samples)
    rec.start("sdk-analytic", {"by": "test"})
    rec.set_step("first")
    time.sleep(2.5)
    rec.set_step("second")
    time.sleep(2.5)
    m = rec.stop()
    assert m.source == "api" and m.recording and [s.name for s in m.steps] == ["first", "second"]
    settled(server, m.end)
    m = rec.fetch()  # asked again once the last samples are stored
    for s in m.steps:
        assert s.coverage >= 0.95  # a whole second missing would be 0.67: late-stamped samples cost a little
        assert s.joules == pytest.approx(analytic(PROBES, s.start, s.end), rel=TOLERANCE)
        assert {p.name for p in s.parts if p.domain == "probe"} == set(PROBES)
    assert m.joules == pytest.approx(analytic(PROBES, m.start, m.end), rel=TOLERANCE)
    assert m.provenance == "modelled"  # the demo rack is simulated, and the measurement says so
    before_first = analytic(PROBES, m.start, m.steps[0].start)  # the span before the first step
    assert sum(s.joules for s in m.steps) + before_first == pytest.approx(m.joules, rel=TOLERANCE)


def test_step_times_are_the_callers_and_a_skewed_clock_is_reported(server, caplog):
    skew = 30.0
    rec = Recorder(server.url, environment={"probes": PROBES}, clock=lambda: time.time() - skew)
    caplog.set_level(logging.WARNING, logger="wattsight.recorder")
    rec.start("skewed")
    mark = rec.clock()
    rec.set_step("only")
    m = rec.stop()
    stored = server.get(f"/api/v1/recordings/{m.recording}")
    assert stored["steps"][0]["start"] == pytest.approx(mark, abs=0.05)  # the caller's time, not arrival
    assert stored["start"] == pytest.approx(m.start, abs=0.001)
    assert any("clock" in n for n in m.notes)
    assert len([r for r in caplog.records if "clock" in r.getMessage()]) == 1


class Case:
    case_name = "vping-api"

    def __init__(self, rec):
        self.rec = rec

    def run(self):
        set_step("boot")
        self.ping()
        return "ok"

    @set_step("ping")
    def ping(self):
        time.sleep(0.2)


def test_decorators_send_a_recording_with_its_steps(server):
    rec = Recorder(server.url, environment={"nodes": PROBES})
    run = enable_recording(recorder=rec)(Case.run)
    assert run(Case(rec)) == "ok"
    m = rec.last
    assert m.name == "vping-api" and [s.name for s in m.steps] == ["boot", "ping"]
    stored = server.get(f"/api/v1/recordings/{m.recording}")
    assert [s["name"] for s in stored["steps"]] == ["boot", "ping"] and stored["steps"][1]["end_explicit"]
    assert {p.name for p in m.parts if p.domain == "node"} == set(PROBES)


def work_with_steps(rec: Recorder) -> list[int]:
    """The code under test: it must run to the end whatever the recorder meets."""
    done = []

    @enable_recording("unreachable", recorder=rec)
    def run():
        for i in range(5):
            set_step(f"s{i}")
            with rec.step(f"block{i}"):
                done.append(i)
        return done

    return run()


def test_an_unreachable_api_leaves_the_code_running_with_one_warning(caplog):
    rec = Recorder(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    caplog.set_level(logging.DEBUG, logger="wattsight.recorder")
    assert work_with_steps(rec) == [0, 1, 2, 3, 4]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    m = rec.last
    assert m.joules is None and m.provenance == "unavailable" and "did not answer" in m.not_available[0][1]
    assert rec.flush() is False  # the writes are kept for when it answers


def test_a_server_that_never_answers_times_out_once_then_backs_off(caplog):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        rec = Recorder(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        caplog.set_level(logging.WARNING, logger="wattsight.recorder")
        assert work_with_steps(rec) == [0, 1, 2, 3, 4]
    assert len(caplog.records) == 1 and rec.last.provenance == "unavailable"


def test_writes_wait_for_a_server_that_comes_up_later_and_keep_the_callers_times(tmp_path, caplog):
    listen = f"127.0.0.1:{free_port()}"
    rec = Recorder(f"http://{listen}", environment={"probes": PROBES}, timeout=0.5)
    caplog.set_level(logging.INFO, logger="wattsight.recorder")
    rec.start("late-server")
    marks = {}
    for name in ("one", "two"):
        marks[name] = rec.clock()
        rec.set_step(name)
    ws = Wattsight(["--demo", "--data-dir", str(tmp_path / "data")], tmp_path, name="late", listen=listen)
    try:
        ws.wait_ready()
        m = rec.stop()  # sends the recording, both steps and the stop, in order
        stored = ws.get(f"/api/v1/recordings/{m.recording}")
    finally:
        ws.stop()
    assert [s["name"] for s in stored["steps"]] == ["one", "two"]
    for s in stored["steps"]:
        assert s["start"] == pytest.approx(marks[s["name"]], abs=0.002)
    assert stored["start"] == pytest.approx(m.start, abs=0.002) and not stored["running"]
    assert [r.levelname for r in caplog.records if "answers again after" in r.getMessage()] == ["INFO"]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_a_refused_request_is_logged_once_and_not_retried(server, caplog):
    rec = Recorder(server.url, environment={"probes": ["demo.no-such-probe"]})
    caplog.set_level(logging.WARNING, logger="wattsight.recorder")
    rec.start("refused")
    rec.set_step("a")
    m = rec.stop()
    assert m.provenance == "unavailable" and "no-such-probe" in m.not_available[0][1]
    assert len(caplog.records) == 1 and "refused" in caplog.records[0].getMessage()
    assert rec.flush() is True  # nothing left waiting: a refused request is dropped


def test_a_step_measured_right_at_its_end_says_its_coverage(server):
    rec = Recorder(server.url, environment={"probes": PROBES})
    rec.begin("window")  # outside a recording: a recording called "window"
    rec.begin("inner")
    time.sleep(1.2)
    inner = rec.end("inner")
    whole = rec.end("window")
    assert inner.name == "inner" and inner.source == "api" and 0 <= inner.coverage <= 1
    assert whole.name == "window" and [s.name for s in whole.steps] == ["inner"]
    listed = httpx.get(server.url + "/api/v1/recordings", params={"scenario": "window"}, timeout=30).json()
    assert whole.recording in str(listed)


def test_three_steps_through_the_sdk_across_a_restart_of_the_server(tmp_path, caplog):
    """"idle" and "load" on a first process, which then stops; "cool" on a second one, same data and port.
    The recorder goes on through the downtime (its flush fails once: one warning) and every step's
    figure matches the demo pattern's exact energy."""
    listen, data = f"127.0.0.1:{free_port()}", str(tmp_path / "data")
    caplog.set_level(logging.WARNING, logger="wattsight.recorder")
    first = Wattsight(["--demo", "--data-dir", data], tmp_path, name="first", listen=listen)
    try:
        first.wait_ready()
        settled(first, time.time())
        rec = Recorder(first.url, environment={"probes": PROBES}, timeout=1.0, clock=on_samples)
        rec.start("restart")
        rec.set_step("idle")
        time.sleep(2.5)
        rec.set_step("load")
        time.sleep(2.5)
        rec.end("load", measure=False)
        settled(first, rec.clock())
    finally:
        first.stop()
    assert rec.flush() is True  # nothing waits...
    rec.backend.link.attempt(lambda: rec.backend.client.call("GET", "/api/v1/health"))  # ...but it is down
    second = Wattsight(["--demo", "--data-dir", data], tmp_path, name="second", listen=listen)
    try:
        second.wait_ready()
        settled(second, time.time())
        rec.set_step("cool")
        time.sleep(2.5)
        m = rec.stop()
        settled(second, m.end)
        m = rec.fetch()
    finally:
        second.stop()
    assert [s.name for s in m.steps] == ["idle", "load", "cool"]
    for s in m.steps:
        assert s.coverage >= 0.95, s.name
        assert s.joules == pytest.approx(analytic(PROBES, s.start, s.end), rel=TOLERANCE), s.name
    assert m.joules >= sum(s.joules for s in m.steps)  # the downtime before "cool" is in the total
    assert len(caplog.records) == 1 and "unreachable" in caplog.records[0].getMessage()
