"""How far from the wall-clock grid the runner reads a 24-outlet PDU over SNMP.

The runner (``wattsight.runner.Runner``) reads each polled driver on a fixed grid of wall-clock
multiples of its period.  Here it runs the ``snmp`` driver against a real SNMP agent (snmpsim,
``tests/peers/snmpsim.py``) serving a 24-outlet APC PDU -- 50 OIDs, one GET per read -- and
each read's measurement time (taken by the driver when the reply arrives) is compared with the
grid instant of its tick:

- ``snmp_poll_jitter_p50`` / ``_p99`` / ``_max`` (ms): measured_at minus the grid instant, i.e.
  the scheduling delay plus the SNMP round trip;
- ``snmp_poll_start_late_p99`` (ms): when ``read()`` started, after the grid instant (the
  runner's part), and ``snmp_read_p50`` (ms): from ``read()`` to the reply (the driver's);
- ``snmp_poll_skipped_ticks``: grid instants without a read once the first read is done
  (the runner's own count, which includes the ticks the first read overran while it set up
  the SNMP engine, is given too).

At 1 Hz (the usual PDU period) and at 10 Hz.  Run: ``python bench/poll_jitter.py [--quick]``
(``--quick``: 10 ticks at 1 Hz and 50 at 10 Hz, about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from figures import emit_json
from peers.snmpsim import SnmpSim, pdu_records

from wattsight.drivers.snmp import SnmpPduConfig, SnmpPduDriver
from wattsight.runner import Runner
from wattsight.sample import now_ms

STARTS: list[int] = []


class TimedDriver(SnmpPduDriver):
    """The snmp driver, noting when each read starts (to split scheduling from the SNMP round trip)."""

    def read(self):
        STARTS.append(now_ms())
        return super().read()


async def poll(port: int, period: float, ticks: int) -> tuple[np.ndarray, dict]:
    """Run the runner for ``ticks`` periods; the measurement times (ms) of the reads, and its state."""
    cfg = SnmpPduConfig.model_validate({"type": "snmp", "host": "127.0.0.1", "port": port, "community": "pdu",
                                        "preset": "apc", "outlets": 24, "probe": "node-{outlet}",
                                        "total": "pdu-1", "period": period})
    times: list[int] = []
    STARTS.clear()
    runner = Runner({"pdu-1": (TimedDriver, cfg)}, site="bench", sink=lambda b: times.append(int(b.t[0])))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    # one tick more than asked for: the first read also sets up the SNMP engine (left out below)
    await asyncio.sleep((ticks + 1.5) * period + 0.5)
    stop.set()
    await task
    return np.asarray(times, np.int64), runner.state()[0]


def split(times: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Of the reads after the first: how late each started on the grid, and how long it took (ms)."""
    starts = np.asarray(STARTS[1:len(times)], np.int64)
    return starts - (starts // step) * step, times[1:len(starts) + 1] - starts


def figures(times: np.ndarray, state: dict, period: float) -> None:
    step = round(period * 1000)
    t = times[1:]  # the first read pays the engine set-up: not the steady state
    grid = (t // step) * step
    late = (t - grid).astype(np.float64)
    slots = int((grid[-1] - grid[0]) // step) + 1
    rate = f"{1 / period:g} Hz"
    extra = {"rate": rate, "outlets": 24, "oids_per_read": 50, "reads": len(t)}
    emit_json("snmp_poll_jitter_p50", float(np.percentile(late, 50)), "ms", **extra)
    emit_json("snmp_poll_jitter_p99", float(np.percentile(late, 99)), "ms", **extra)
    emit_json("snmp_poll_jitter_max", float(late.max()), "ms", **extra)
    start_late, took = split(times, step)
    emit_json("snmp_poll_start_late_p99", float(np.percentile(start_late, 99)), "ms", **extra,
              note="the runner's part: when read() started, after the grid instant")
    emit_json("snmp_read_p50", float(np.percentile(took, 50)), "ms", **extra,
              note="the driver's part: one GET of 50 OIDs, from read() to the reply")
    emit_json("snmp_poll_skipped_ticks", slots - len(np.unique(grid)), "ticks", rate=rate, reads=len(t),
              runner_skipped_ticks=int(state["skipped_ticks"]), errors=state["errors"], timeouts=state["timeouts"],
              note="grid instants without a read after the first read; runner_skipped_ticks also counts "
                   "the ticks the first read (SNMP engine set-up) overran")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="10 ticks at 1 Hz and 50 at 10 Hz (about 20 s)")
    ap.add_argument("--ticks", type=int, help="ticks at 1 Hz (default 120; 10 with --quick)")
    args = ap.parse_args()
    slow = args.ticks or (10 if args.quick else 120)
    fast = 50 if args.quick else 600
    with tempfile.TemporaryDirectory() as tmp:
        agent = SnmpSim(Path(tmp))
        agent.write("pdu", pdu_records("apc", 24))
        with agent:
            for period, ticks in ((1.0, slow), (0.1, fast)):
                times, state = asyncio.run(poll(agent.port, period, ticks))
                figures(times, state, period)


if __name__ == "__main__":
    main()
