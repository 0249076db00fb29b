"""The SDK through a real ``wattsight run --demo`` server, and with no server at all.

The demo rack's power is a pure function of time (the dummy driver's square pattern), so the
exact energy of a probe over any span is known: the SDK's step figures are checked against it.
"""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest
from procs import Wattsight, free_port
from recorder_helpers import PROBES, analytic, demo_server, interpolation_bound, on_samples, settled

from wattsight.recorder import Recorder, enable_recording, set_step

pytestmark = pytest.mark.slow
#: 1 %, not the issue's 0.5 %: THE acceptance test of "within 0.5 % across a restart" is
#: tests/test_recordings_demo.py (12-s steps over raw REST; -0.05 % to +0.09 % over 8 runs, see README). The SDK's steps here last
#: 2 to 3 s to keep this module short on a shared machine, and on a loaded machine a demo sample is stamped
#: up to ~150 ms after its second (seen: 1485.143): where the square pattern's ramp falls inside such an
#: interval, the server's interpolated counter moves each boundary of a 3-s step by up to ~0.5 %, so two
#: boundaries need 1 %. These tests check that the SDK sends the caller's boundaries and reads the right
#: figures (a wrong boundary by a whole second is off by 30 % or more), not the server's precision.
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from demo_server(tmp_path_factory, "recorder-api")


def test_steps_measured_by_the_server_match_the_demo_patterns_energy(server):
    """Two steps through the SDK match the demo pattern's exact energy within TOLERANCE (see there why
    1 % here and 0.5 % in tests/test_recordings_demo.py), and the demo rack is said to be modelled."""
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
    rec.set_step("only")
    m = rec.stop()
    stored = server.get(f"/api/v1/recordings/{m.recording}")
    # the caller's stamps, kept to the ms; arrival (the server's clock) is ~30 s later
    assert stored["steps"][0]["start"] == pytest.approx(m.steps[0].start, abs=0.001)
    assert stored["start"] == pytest.approx(m.start, abs=0.001)
    assert stored["created"] - stored["start"] > skew / 2  # it arrived (server clock) ~30 s "later"
    assert stored["clock_offset_s"] == pytest.approx(skew, rel=0.1)
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
    settled(server, whole.end)
    later = rec.fetch().step("inner")  # once the last samples are stored: the figure grew, and says so
    assert later.coverage >= max(inner.coverage, 0.95)
    assert later.joules == pytest.approx(analytic(PROBES, later.start, later.end),
                                         abs=interpolation_bound(len(PROBES)))  # its ends fall between samples
    listed = httpx.get(server.url + "/api/v1/recordings", params={"scenario": "window"}, timeout=30).json()
    assert whole.recording in str(listed)


def test_three_steps_through_the_sdk_across_a_restart_of_the_server(tmp_path, caplog):
    """"idle" and "load" on a first process, which then stops; "cool" on a second one, same data and port.
    The recorder goes on through the downtime (its flush fails once: one warning) and every step's
    figure matches the demo pattern's exact energy within TOLERANCE (1 % for these 2.5-s steps; the
    issue's 0.5 % across a restart is tests/test_recordings_demo.py's, with 12-s steps)."""
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
