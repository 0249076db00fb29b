"""The energy recorder's Python SDK: the energy of a scenario and of each step, locally or through a server.

::

    from wattsight.recorder import Recorder

    rec = Recorder()                 # local meters; Recorder("http://host:8080", token=...) for a server
    rec.begin("training")
    train()
    m = rec.end("training")          # a frozen Measurement
    print(m.joules, m.provenance, m.not_available)

``@enable_recording(scenario)`` records a test case's run method, ``set_step("name")`` (a call or
a decorator) marks its steps, ``with rec.step("name"):`` measures a block (``async with`` too).
Only the standard library is imported here; the meters' drivers are imported when first read.
See docs/recorder.md.
"""

from .core import Recorder, RecorderUsageError, get_recorder
from .decorators import StepContext, enable_recording, set_step
from .measurement import Measurement, Part

__all__ = ["Measurement", "Part", "Recorder", "RecorderUsageError", "StepContext", "enable_recording",
           "get_recorder", "set_step"]
