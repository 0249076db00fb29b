"""The decorators and the context manager: a few lines each on top of :class:`Recorder`, no options.

``@enable_recording(scenario)`` records a test case's run method (OPNFV's energy recorder
interface); ``@set_step("name")`` makes a method a step, and ``set_step("name")`` called in
the code starts a step (the one before ends there).  Each works on ``async def`` functions too;
the recorder's HTTP calls then run in a worker thread, never blocking the event loop.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Self

from . import core
from .measurement import Measurement


class StepContext:
    """``with`` / ``async with`` a step (or a recording, outside one); ``measurement`` once it ended."""

    def __init__(self, recorder: core.Recorder, name: str) -> None:
        self.recorder, self.name = recorder, name
        self.measurement: Measurement | None = None

    def __enter__(self) -> Self:
        self.recorder.begin(self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        self.measurement = self.recorder.end(self.name)

    async def __aenter__(self) -> Self:
        import asyncio

        await asyncio.to_thread(self.recorder.begin, self.name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        self.measurement = await asyncio.to_thread(self.recorder.end, self.name)


def enable_recording(scenario: str | Callable | None = None, *, recorder: core.Recorder | None = None):
    """Record every call of the decorated function as one recording of ``scenario``.

    Without a scenario (``@enable_recording`` alone, as in OPNFV), a method's ``self.case_name``
    names it, else the function's qualified name.  The recording stops when the function returns
    or raises; ``recorder.last`` then holds its measurement.  Inside a recording already running
    on the same recorder, the call is a step of it instead.
    """
    if callable(scenario):
        return enable_recording(None, recorder=recorder)(scenario)

    def decorate(fn: Callable) -> Callable:
        def name_of(args: tuple) -> str:
            if scenario:
                return scenario
            return str(getattr(args[0], "case_name", "") or fn.__qualname__) if args else fn.__qualname__

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def arun(*args, **kwargs):
                import asyncio

                rec = recorder or core.get_recorder()
                if rec.recording is not None:  # inside another recording: a step of it
                    async with rec.step(name_of(args)):
                        return await fn(*args, **kwargs)
                token = core.current.set(rec)
                await asyncio.to_thread(rec.start, name_of(args))
                try:
                    return await fn(*args, **kwargs)
                finally:
                    await asyncio.to_thread(rec.stop)
                    core.current.reset(token)
            return arun

        @functools.wraps(fn)
        def run(*args, **kwargs):
            rec = recorder or core.get_recorder()
            if rec.recording is not None:  # inside another recording: a step of it
                with rec.step(name_of(args)):
                    return fn(*args, **kwargs)
            token = core.current.set(rec)
            rec.start(name_of(args))
            try:
                return fn(*args, **kwargs)
            finally:
                rec.stop()
                core.current.reset(token)
        return run

    return decorate


class _StepMark:
    """What ``set_step(name)`` returns: already a step mark when called, a decorator when applied."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, fn: Callable) -> Callable:
        name = self.name
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def astep(*args, **kwargs):
                rec = core.active_recorder()
                if rec is None:
                    return await fn(*args, **kwargs)
                async with rec.step(name):
                    return await fn(*args, **kwargs)
            return astep

        @functools.wraps(fn)
        def step(*args, **kwargs):
            rec = core.active_recorder()
            if rec is None:
                return fn(*args, **kwargs)
            with rec.step(name):
                return fn(*args, **kwargs)
        return step


def set_step(name: str) -> _StepMark:
    """Start step ``name`` of the running recording now; or, as ``@set_step(name)``, make a function a step.

    Called in code, the step lasts until the next one starts or the recording stops; as a
    decorator, the step lasts while the function runs.  With no recording running, nothing happens
    (so the decorator, applied when its module is imported, marks nothing).
    """
    rec = core.active_recorder()
    if rec is not None:
        rec.set_step(name)
    return _StepMark(name)
