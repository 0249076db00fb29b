"""The recorder: one object that measures recordings (scenarios) and their steps, locally or through an API.

A *recording* is one scenario (a test case, a benchmark, a command) with *steps* inside it.
Steps are sequential: a step ends when the next one starts, when it is ended by name, or when the
recording stops.  ``begin(name)`` outside a recording starts one (its scenario is ``name``) and
``end(name)`` stops it; inside a recording they start and end a step.  Every event is stamped with
the caller's clock when it happens, and every figure comes back as a frozen
:class:`~wattsight.recorder.measurement.Measurement`.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable

from ..errors import WattsightError
from .backends import ApiBackend, LocalBackend, Recording, Step
from .measurement import Measurement

log = logging.getLogger("wattsight.recorder")

#: The recorder whose recording runs in this context (set by enable_recording and Recorder.start).
current: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("wattsight_recorder", default=None)


class RecorderUsageError(WattsightError, ValueError):
    """A recorder called out of order (end of a step never begun, two recordings at once)."""


def comma_list(text: str) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``: a comma-separated list, empty items dropped."""
    return [x.strip() for x in text.split(",") if x.strip()]


def environment_from_env() -> dict | None:
    """The environment named by WATTSIGHT_PROBES, WATTSIGHT_NODES or WATTSIGHT_JOB, if one is set."""
    for var, key in (("WATTSIGHT_PROBES", "probes"), ("WATTSIGHT_NODES", "nodes")):
        if os.environ.get(var):
            return {key: comma_list(os.environ[var])}
    job = os.environ.get("WATTSIGHT_JOB")
    return {"job": job} if job else None


class Recorder:
    """Energy of recordings and steps, from a wattsight server (``url``) or this machine's meters.

    ``url``: the server (``http://host:8080``); None reads ``$WATTSIGHT_URL``; "" or no URL at all
    means local mode.  ``token``: the bearer token for writes (default ``$WATTSIGHT_TOKEN``).
    ``environment``: what to measure on the server: ``{"probes": [...]}``, ``{"nodes": [...]}`` or
    ``{"job": id}`` (default from ``$WATTSIGHT_PROBES``/``NODES``/``JOB``; none: every probe).
    ``timeout``: seconds per HTTP request.  ``sys_root``, ``proc_root``, ``nvml``: where local mode
    reads (tests give fake trees and a fake NVML).  ``clock``: epoch seconds (the caller's clock).
    """

    def __init__(self, url: str | None = None, token: str | None = None, environment: dict | None = None,
                 timeout: float = 2.0, *, sys_root: str = "/sys", proc_root: str = "/proc", nvml=None,
                 poll_s: float = 20.0, clock: Callable[[], float] = time.time) -> None:
        url = os.environ.get("WATTSIGHT_URL", "") if url is None else url
        self.clock = clock
        self._lock = threading.RLock()
        self._rec: Recording | None = None
        self._context_token = None
        self.last: Measurement | None = None  # the last recording's measurement
        if url:
            from .api import Client

            client = Client(url, token if token is not None else os.environ.get("WATTSIGHT_TOKEN"), timeout)
            env = environment if environment is not None else environment_from_env()
            self.backend: ApiBackend | LocalBackend = ApiBackend(client, env, clock)
        else:
            from .local import LocalMeters

            self.backend = LocalBackend(LocalMeters(sys_root, proc_root, nvml), poll_s)

    @property
    def mode(self) -> str:
        """``"api"`` or ``"local"``."""
        return self.backend.source

    @property
    def recording(self) -> str | None:
        """The running recording's scenario, or None."""
        return self._rec.scenario if self._rec else None

    def __repr__(self) -> str:
        return f"<Recorder {self.backend.describe()}, recording={self.recording!r}>"

    # -- recordings ------------------------------------------------------------------------------
    def start(self, scenario: str, metadata: dict | None = None) -> None:
        """Start a recording of ``scenario`` now (one at a time per recorder)."""
        self._start(scenario, metadata, implicit=False)

    def _start(self, scenario: str, metadata: dict | None, implicit: bool) -> None:
        with self._lock:
            if self._rec is not None:
                raise RecorderUsageError(f"a recording of {self._rec.scenario!r} is running: stop() it "
                                         f"before starting {scenario!r} (or use a second Recorder)")
            self.backend.prepare()
            rec = Recording(scenario, self.clock(), implicit, dict(metadata or {}))
            self._rec = rec
            _running.append(self)
            self.backend.start(rec)

    def stop(self) -> Measurement:
        """Stop the recording; its measurement, with each step's in ``steps``."""
        with self._lock:
            rec = self._require("stop()")
            end = self.clock()
            try:
                self.last = self.backend.stop(rec, end)
            finally:
                self._rec = None
                if self in _running:
                    _running.remove(self)
            return self.last

    # -- steps -----------------------------------------------------------------------------------
    def set_step(self, name: str) -> None:
        """Start step ``name`` now; the step before it ends here.  Outside a recording: nothing."""
        with self._lock:
            rec = self._rec
            if rec is None:
                log.debug("set_step(%r) outside a recording: ignored", name)
                return
            step = Step(name, rec.unique(name), self.clock())
            previous = rec.current
            rec.steps.append(step)
            self.backend.step(rec, step, previous)

    def begin(self, name: str) -> None:
        """Start a window: a recording called ``name`` if none runs, else a step of the running one."""
        with self._lock:
            if self._rec is None:
                self._start(name, None, implicit=True)
            else:
                self.set_step(name)

    def end(self, name: str, *, measure: bool = True) -> Measurement | None:
        """End the window ``name`` begun by :meth:`begin` and return its measurement.

        ``measure=False`` only marks the end (through an API, the figures come with :meth:`stop`).
        """
        with self._lock:
            rec = self._require(f"end({name!r})")
            if rec.implicit and name == rec.scenario and rec.find(name) is None:
                return self.stop()
            step = rec.find(name)
            if step is None:
                known = ", ".join(s.name for s in rec.steps) or "none"
                raise RecorderUsageError(f"end({name!r}): no step {name!r} in the recording of "
                                         f"{rec.scenario!r} (steps: {known}); call begin({name!r}) first")
            if step is rec.current:
                step.end = self.clock()
                return self.backend.end_step(rec, step, measure)
            return self.backend.measure_step(rec, step) if measure else None  # ended by a later step

    def step(self, name: str):
        """``with recorder.step(name) as s:`` (or ``async with``): begin, end, and ``s.measurement``."""
        from .decorators import StepContext

        return StepContext(self, name)

    def fetch(self) -> Measurement | None:
        """The last recording's measurement asked again (through an API, figures settle as late samples
        arrive; locally, the same measurement); None before any recording stopped."""
        with self._lock:
            if isinstance(self.backend, ApiBackend) and self.backend.last is not None:
                self.flush()
                self.last = self.backend.measure_recording(*self.backend.last)
            return self.last

    def flush(self) -> bool:
        """Send the writes that wait for an API that did not answer; True when none waits (local: True)."""
        return self.backend.flush(force=True) if isinstance(self.backend, ApiBackend) else True

    def _require(self, what: str) -> Recording:
        if self._rec is None:
            raise RecorderUsageError(f"{what} with no recording running: call start(scenario) or begin(name) "
                                     "first")
        return self._rec


#: Recorders with a running recording, the latest last (for set_step() outside enable_recording).
_running: list[Recorder] = []
_default: Recorder | None = None
_default_lock = threading.Lock()


def get_recorder() -> Recorder:
    """The recorder running in this context, else the process's default one (made from the environment)."""
    rec = current.get()
    if rec is not None:
        return rec
    global _default
    with _default_lock:
        if _default is None:
            _default = Recorder()
        return _default


def active_recorder() -> Recorder | None:
    """The recorder whose recording runs here: this context's, else the latest started, else None."""
    rec = current.get()
    if rec is not None and rec.recording is not None:
        return rec
    return _running[-1] if _running else None
