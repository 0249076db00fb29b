"""pytest plugin: the energy of each test, to a JSON report and a summary table, and optionally to a server.

Inactive unless asked for:

* ``--wattsight-energy[=PATH]``: measure each test's call phase on this machine's meters (or on
  the server given by ``--wattsight-api``), write ``PATH`` (default ``wattsight-energy.json``) and
  print the tests that used the most energy;
* ``--wattsight-api URL``: the whole session is one recording on that wattsight server and each
  test a step of it (``--wattsight-token``, ``--wattsight-scenario``; the environment comes from
  ``$WATTSIGHT_PROBES``/``NODES``/``JOB``).

Enable it with ``-p wattsight.recorder.pytest_plugin`` (or the ``pytest11`` entry point).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DEFAULT_PATH = "wattsight-energy.json"
TOP = 10


def pytest_addoption(parser) -> None:
    group = parser.getgroup("wattsight", "energy of each test (wattsight)")
    group.addoption("--wattsight-energy", nargs="?", const=DEFAULT_PATH, default=None, metavar="PATH",
                    help=f"measure each test's energy; write it to PATH (default {DEFAULT_PATH})")
    group.addoption("--wattsight-api", default=None, metavar="URL",
                    help="send the session as a recording, each test a step, to this wattsight server")
    group.addoption("--wattsight-token", default=None, help="bearer token for --wattsight-api")
    group.addoption("--wattsight-scenario", default=None,
                    help="the recording's scenario (default: pytest <dir>)")


def pytest_configure(config) -> None:
    opt = config.option
    if opt.wattsight_energy or opt.wattsight_api:
        config.pluginmanager.register(EnergyPlugin(config), "wattsight-energy")


class EnergyPlugin:
    """One recorder for the session; one step per test's call phase."""

    def __init__(self, config) -> None:
        from . import Recorder

        opt = config.option
        self.config = config
        self.path = Path(opt.wattsight_energy or DEFAULT_PATH)
        self.recorder = Recorder(opt.wattsight_api or "", opt.wattsight_token)
        self.scenario = opt.wattsight_scenario or f"pytest {Path(str(config.rootpath)).name}"
        self.outcomes: dict[str, str] = {}
        self.measurement = None

    def pytest_sessionstart(self, session) -> None:
        self.recorder.start(self.scenario, {"args": list(self.config.invocation_params.args)})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        self.recorder.begin(item.nodeid)
        try:
            yield
        finally:
            self.recorder.end(item.nodeid, measure=False)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.outcomes.setdefault(report.nodeid, report.outcome)

    def pytest_sessionfinish(self, session) -> None:
        if self.recorder.recording is None:
            return
        m = self.measurement = self.recorder.stop()
        tests = [{**s.to_json(), "nodeid": s.name, "outcome": self.outcomes.get(s.name)} for s in m.steps]
        doc = {**m.to_json(), "tests": tests}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(doc, indent=2))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        m = self.measurement
        if m is None:
            return
        tr = terminalreporter
        tr.section("wattsight energy")
        where = f"recording {m.recording} on {self.config.option.wattsight_api}" if m.source == "api" else \
            "local meters (the whole machine, every process)"
        total = "unavailable" if m.joules is None else f"{m.joules:,.3f} J"
        tr.write_line(f"session: {total} over {m.duration_s:,.2f} s, {m.provenance}, from {where}")
        ranked = sorted(m.steps, key=lambda s: -1.0 if s.joules is None else s.joules, reverse=True)[:TOP]
        tr.write_line(f"{'energy':>14} {'duration':>10} {'mean power':>11} {'coverage':>9}  test")
        for s in ranked:
            joules = "unavailable" if s.joules is None else f"{s.joules:,.3f} J"
            power = "-" if s.mean_power_w is None else f"{s.mean_power_w:,.2f} W"
            tr.write_line(f"{joules:>14} {s.duration_s:>8,.3f} s {power:>11} {s.coverage:>9.0%}  {s.name}")
        covered = {p.domain for p in m.parts} | {p.name for p in m.parts}
        missing = sorted({part for part, _ in m.not_available} - covered)
        tr.write_line(f"provenance: {m.provenance}; not available: {', '.join(missing) or 'nothing'}; "
                      f"per test: {self.path}")
