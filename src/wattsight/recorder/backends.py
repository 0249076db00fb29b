"""Where a recorder's figures come from: this machine's meters (local) or a wattsight server (api).

Both backends see the same events from :class:`~wattsight.recorder.core.Recorder` (a recording
starts, a step starts, a step ends, the recording stops), each at the caller's timestamp, and
answer with :class:`~wattsight.recorder.measurement.Measurement` objects.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .api import Client, Link, Outbox, quote
from .local import LocalMeters
from .measurement import Measurement, combine_provenance, from_report, unavailable


@dataclass
class Step:
    """One step of a recording: asked name, unique name, span, and what the backend keeps for it."""

    asked: str
    name: str
    start: float
    end: float | None = None
    data: Any = None  # local: the counters' reading at the start
    measurement: Measurement | None = None


@dataclass
class Recording:
    """The running recording: scenario, start, steps (sequential), and what the backend keeps."""

    scenario: str
    start: float
    implicit: bool = False  # started by begin(name) outside a recording: end(name) stops it
    metadata: dict = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    data: Any = None
    used: dict[str, int] = field(default_factory=dict)

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps and self.steps[-1].end is None else None

    def unique(self, name: str) -> str:
        """``name``, or ``name#2``, ``name#3``... when the recording already has a step called so."""
        n = self.used[name] = self.used.get(name, 0) + 1
        return name if n == 1 else f"{name}#{n}"

    def find(self, asked: str) -> Step | None:
        return next((s for s in reversed(self.steps) if s.asked == asked or s.name == asked), None)


WHOLE_HOST = ("local meters measure the whole machine (every process on it), not the recorded code alone; "
              "compare with an idle span to see the code's share")


class LocalBackend:
    """Figures from this machine's counters (:class:`LocalMeters`), read at every event."""

    source = "local"

    def __init__(self, meters: LocalMeters, poll_s: float = 20.0) -> None:
        self.meters, self.poll_s = meters, poll_s
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def describe(self) -> str:
        return "local meters"

    def prepare(self) -> None:
        """Find the meters (imports the drivers) before the recording's start is stamped."""
        self.meters.open()

    # Local figures are spans between two readings of the counters: each event's time is that of
    # its reading (a few microseconds after the caller's stamp), so that watts = joules / seconds.
    def start(self, rec: Recording) -> None:
        rec.start, rec.data = self.meters.reading()
        self._stop = threading.Event()  # one per recording: a poller still waking from the last one stops
        if self.poll_s and any(m.provenance == "measured" for m in self.meters.meters):
            # counters that wrap (RAPL) are read often enough that no wrap is missed
            self._poller = threading.Thread(target=self._poll, args=(self._stop,), daemon=True,
                                            name="wattsight-recorder-poll")
            self._poller.start()

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_s):
            self.meters.read()

    def step(self, rec: Recording, step: Step, previous: Step | None) -> None:
        step.start, step.data = self.meters.reading()
        if previous is not None:
            self._close(previous, step.start, step.data)

    def end_step(self, rec: Recording, step: Step, measure: bool) -> Measurement:
        end, after = self.meters.reading()
        self._close(step, end, after)
        return step.measurement

    def measure_step(self, rec: Recording, step: Step) -> Measurement | None:
        return step.measurement

    def stop(self, rec: Recording, end: float) -> Measurement:
        end, after = self.meters.reading()
        self._stop.set()
        last = rec.current
        if last is not None:
            self._close(last, end, after)
        steps = tuple(s.measurement for s in rec.steps if s.measurement is not None)
        return self.window(rec.scenario, rec.start, rec.data, end, after, steps)

    def _close(self, step: Step, end: float, after: dict) -> None:
        step.end = end
        step.measurement = self.window(step.name, step.start, step.data, end, after)

    def window(self, name: str, t0: float, before: dict, t1: float, after: dict,
               steps: tuple[Measurement, ...] = ()) -> Measurement:
        """The measurement between two readings."""
        parts = tuple(self.meters.parts(before, after, t1 - t0))
        counted = [p for p in parts if p.in_total and p.joules is not None]
        joules = sum(p.joules for p in counted) if counted else None
        coverage = min((p.coverage for p in counted), default=0.0)
        return Measurement(name, t0, t1, joules, coverage, combine_provenance(parts), parts,
                           tuple(self.meters.missing), "local", None, None, steps, (WHOLE_HOST,))


class ApiBackend:
    """Figures from a wattsight server's recordings API; writes wait in an :class:`Outbox` when it is down."""

    source = "api"

    def __init__(self, client: Client, environment: dict | None, clock=time.time) -> None:
        self.client, self.environment, self.clock = client, environment or {}, clock
        self.link = Link(client)
        self.box: Outbox | None = None
        self.unsent: list[Outbox] = []  # earlier recordings with writes still waiting
        self.last: tuple[Recording, float] | None = None  # the last recording stopped, and its end

    def describe(self) -> str:
        return f"the wattsight API at {self.client.url}"

    def prepare(self) -> None:
        """Nothing to prepare: the server stamps nothing, the caller's times are sent."""

    def start(self, rec: Recording) -> None:
        body = {"scenario": rec.scenario, "environment": self.environment, "start": rec.start,
                "metadata": rec.metadata}
        self.box = Outbox(self.client, self.clock, create=body)
        rec.data = self.box
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Send every waiting write (older recordings' first); True when nothing waits any more."""
        boxes = [*self.unsent, *([self.box] if self.box else [])]
        for box in boxes:
            if self.link.attempt(box.flush, force=force) is None and box.waiting:
                break
            for w in box.warnings:
                self.link.warn_once(f"warning:{w}", "the wattsight server says: %s", w)
        self.unsent = [b for b in self.unsent if b.waiting]
        return not any(b.waiting for b in boxes)

    def step(self, rec: Recording, step: Step, previous: Step | None) -> None:
        if previous is not None:
            previous.end = step.start
        rec.data.send("/steps", {"name": step.name, "time": step.start})
        self.flush()

    def end_step(self, rec: Recording, step: Step, measure: bool) -> Measurement | None:
        rec.data.send(f"/steps/{quote(step.name)}/end", {"time": step.end})
        self.flush()
        return self.measure_step(rec, step) if measure else None

    def measure_step(self, rec: Recording, step: Step) -> Measurement:
        report = self._report(rec.data)
        end = step.end if step.end is not None else time.time()
        if isinstance(report, str):
            return unavailable(step.name, step.start, end, report, source="api", recording=rec.data.recording)
        return self._step_measurement(report, step.name, step.start, end, rec.data.recording)

    def stop(self, rec: Recording, end: float) -> Measurement:
        box: Outbox = rec.data
        last = rec.current
        if last is not None:
            last.end = end
        box.send("/stop", {"time": end})
        self.flush(force=True)
        self.box = None
        if box.waiting:
            self.unsent.append(box)
        self.last = (rec, end)
        return self.measure_recording(rec, end)

    def measure_recording(self, rec: Recording, end: float) -> Measurement:
        """The recording's measurement as the server reports it now (figures settle as samples arrive)."""
        box: Outbox = rec.data
        report = self._report(box)
        if isinstance(report, str):
            return unavailable(rec.scenario, rec.start, end, report, source="api", recording=box.recording)
        steps = tuple(self._step_measurement(report, s.name, s.start, s.end or end, box.recording)
                      for s in rec.steps)
        return from_report(rec.scenario, report.get("total") or {}, start=rec.start, end=end,
                           recording=box.recording, steps=steps, notes=tuple(box.warnings))

    def _report(self, box: Outbox) -> dict | str:
        """The recording's report, or why there is none."""
        if box.recording is None:
            why = "; ".join(box.refused) or f"the wattsight API at {self.client.url} did not answer"
            return f"no recording on the server ({why})"
        if box.pending:
            return (f"{len(box.pending)} write(s) not yet sent: the wattsight API at {self.client.url} "
                    "did not answer")
        path = f"/api/v1/recordings/{box.recording}/report"
        answer = self.link.attempt(lambda: self.client.call("GET", path), force=True)
        return f"the report of {box.recording} could not be fetched" if answer is None else answer

    @staticmethod
    def _step_measurement(report: dict, name: str, start: float, end: float, recording: str) -> Measurement:
        for s in report.get("steps") or []:
            if s.get("name") == name:
                return from_report(name, s, start=start, end=end, recording=recording)
        return unavailable(name, start, end, f"the server's report has no step {name!r}", source="api",
                           recording=recording)
