"""The runner: a hung, crashing or failing driver never stops the others, and is retried with back-off."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import ClassVar

import numpy as np

from wattsight.drivers.base import Driver, DriverConfig
from wattsight.errors import MeterUnreachable
from wattsight.runner import Runner
from wattsight.sample import Batch, Series


class Cfg(DriverConfig):
    mode: str = "good"


class Fault(Driver):
    """A driver that behaves as its config says; every attempt is recorded with its time."""

    Config = Cfg
    attempts: ClassVar[dict[str, list[float]]] = {}
    instances: ClassVar[dict[str, int]] = {}
    release = threading.Event()

    def __init__(self, config, *, site, clock):
        super().__init__(config, site=site, clock=clock)
        Fault.instances[config.mode] = Fault.instances.get(config.mode, 0) + 1

    def read(self) -> Batch:
        Fault.attempts.setdefault(self.config.mode, []).append(time.monotonic())
        mode = self.config.mode
        if mode == "crash":
            raise RuntimeError("driver bug")
        if mode == "unreachable":
            raise MeterUnreachable("no route to host", probe="t.pdu")
        if mode == "hang":
            Fault.release.wait(30)
        return Batch.of_series(Series("t.good", "power", "W"), [self.clock()], [1.0])


def run_for(drivers: dict, seconds: float) -> tuple[Runner, list[Batch]]:
    got: list[Batch] = []
    runner = Runner(drivers, site="t", sink=got.append, max_backoff=0.4)

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await runner.run(stop)

    asyncio.run(main())
    return runner, got


def test_bad_drivers_do_not_delay_a_good_one_and_are_retried_with_backoff():
    Fault.attempts.clear()
    Fault.instances.clear()
    Fault.release.clear()
    period = 0.05
    drivers = {m: (Fault, Cfg(type="fault", mode=m, period=period, timeout=0.2))
               for m in ("good", "crash", "unreachable", "hang")}
    runner, got = run_for(drivers, 3.0)
    Fault.release.set()
    state = {s["driver"]: s for s in runner.state()}
    good = state["good"]
    assert sum(len(b) for b in got) == good["samples"] == good["reads"]

    # the good driver kept its pace, counted on its own grid: the ticks it read plus those the
    # runner skipped span its reads (no silent drift), and it read most of them
    t = np.concatenate([b.t for b in got])
    ticks = t[-1] // int(period * 1000) - t[0] // int(period * 1000) + 1
    assert abs(ticks - (good["reads"] + good["skipped_ticks"])) <= 1, (good, ticks)
    assert good["reads"] >= 0.6 * ticks, (good, ticks)
    # ...and it read while each hung read was stuck: between one hung attempt and the next
    # (a timed-out read, then a back-off) it read at least once, never blocked behind the hang
    reads_at = np.array(Fault.attempts["good"])
    hung_at = Fault.attempts["hang"]
    assert len(hung_at) >= 3
    between = [np.count_nonzero((reads_at > a) & (reads_at < b)) for a, b in itertools.pairwise(hung_at)]
    assert min(between) >= 1, between

    # a crash restarts the instance; an unreachable meter is retried with the same instance
    assert state["crash"]["restarts"] >= 2 and Fault.instances["crash"] >= 3
    assert state["unreachable"]["restarts"] == 0 and Fault.instances["unreachable"] == 1
    assert "no route to host" in state["unreachable"]["last_error"]
    assert state["unreachable"]["last_error"].startswith("t.pdu:")  # names the probe
    # a hung read is timed out, abandoned and retried on a fresh instance
    assert state["hang"]["timeouts"] >= 2 and state["hang"]["restarts"] >= 2
    assert state["hang"]["status"] == "stopped"

    # back-off: the waits between failed attempts grow (up to the cap), so a failing driver
    # makes far fewer attempts than the good one makes reads (both counted in this run)
    for mode in ("crash", "unreachable"):
        gaps = np.diff(Fault.attempts[mode])
        assert gaps[-1] > 2.5 * gaps[0], (mode, gaps)
        assert len(Fault.attempts[mode]) < good["reads"] / 2, (mode, len(gaps), good)


def test_reads_stay_on_the_grid_without_drift():
    period = 0.02  # 50 Hz
    runner, got = run_for({"good": (Fault, Cfg(type="fault", mode="good", period=period))}, 2.0)
    t = np.concatenate([b.t for b in got])  # stamped by the driver at each read (wall clock, ms)
    tick = t // int(period * 1000)  # ticks fall on wall-clock multiples of the period
    assert np.all(np.diff(tick) > 0)  # never two reads in one tick, however late the machine is
    # every tick between the first and the last read was either read or counted as skipped:
    # a loop that drifts (sleeping a period after each read) would fall behind silently
    s = runner.state()[0]
    assert abs((tick[-1] - tick[0] + 1) - (s["reads"] + s["skipped_ticks"])) <= 1, s


class Pushing(Driver):
    """A meter that pushes: yields two batches, then its connection breaks."""

    push = True
    opened: ClassVar[list[float]] = []

    async def stream(self):
        Pushing.opened.append(time.monotonic())
        for i in range(2):
            yield Batch.of_series(Series("t.push", "power", "W"), [self.clock()], [float(i)])
            await asyncio.sleep(0.01)
        raise ConnectionResetError("serial port vanished")


def test_a_push_driver_is_restarted_with_backoff_when_its_stream_breaks():
    Pushing.opened = []
    runner, got = run_for({"push": (Pushing, DriverConfig(type="push", period=0.05))}, 2.5)
    state = runner.state()[0]
    streams = len(Pushing.opened)
    assert streams >= 3 and state["restarts"] >= 2
    assert sum(len(b) for b in got) == 2 * streams == state["samples"]
    assert "serial port vanished" in state["last_error"]
    # backed off, not reconnecting in a tight loop: the waits between reconnections grow
    # (each stream lasts the same two sends, so the growth is the back-off's)
    gaps = np.diff(Pushing.opened)
    assert gaps[-1] > 2 * gaps[0], gaps
