"""What one poll of an IPMI BMC costs with pyghmi and with ipmitool, side by side.

The ``ipmi`` driver's ``read()`` against one real simulated BMC (OpenIPMI's ``ipmi_sim``,
``tests/peers/ipmi_sim.py``: DCMI through its C plugin, one power sensor in Watts), with each
client, for each source (``dcmi``: one DCMI Get Power Reading; ``sdr``: one Get Sensor Reading
of the Watts sensor).  The clients take turns in blocks of reads, so both see the same machine
load; the power is changed on the BMC between blocks and every read is checked against it.
The login (pyghmi) and the sensor discovery happen in a first read, not timed.

Figures, per source and client (``ipmi_<source>_<client>_...``):

- ``read_p50`` / ``read_p99`` (ms): one ``read()``, from call to Batch;
- ``reads_per_s``: reads done per second of reading, one after the other;
- ``slow_reads``: reads over 100 ms (pyghmi, now and then: it waits for its retransmission
  timer, 0.5-1.5 s, although the local simulator answered at once; see docs/drivers/ipmi.md);

and ``ipmi_<source>_pyghmi_vs_ipmitool``: pyghmi's reads/s over ipmitool's (and the p50 ratio).

Run: ``python bench/ipmi_clients.py [--quick]`` (``--quick``: 100 pyghmi and 20 ipmitool reads
per source, a few seconds; full: 2000 and 200).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from figures import emit_json
from peers import ipmi_sim
from peers.ipmi_sim import IpmiSim

from wattsight.drivers.ipmi import IpmiConfig, IpmiDriver

CLIENTS = ("pyghmi", "ipmitool")


def driver(bmc: IpmiSim, client: str, source: str) -> IpmiDriver:
    cfg = IpmiConfig(type="ipmi", host=bmc.host, port=bmc.port, username=bmc.username, password=bmc.password,
                     client=client, source=source, name="bench", timeout=5.0)
    return IpmiDriver(cfg, site="bench")


def measure(bmc: IpmiSim, source: str, reads: dict[str, int], blocks: int = 10) -> dict[str, np.ndarray]:
    """Per-read seconds of each client, taking turns in ``blocks`` blocks; values checked."""
    drivers = {c: driver(bmc, c, source) for c in CLIENTS}
    took: dict[str, list[float]] = {c: [] for c in CLIENTS}
    try:
        for d in drivers.values():
            d.read()  # login, discovery: not timed
        for block in range(blocks):
            watts = 100 + 4 * block  # a multiple of the sensor's 4 W step
            bmc.set_power(watts)
            for client, d in drivers.items():
                for _ in range(reads[client] // blocks):
                    t0 = time.perf_counter()
                    batch = d.read()
                    took[client].append(time.perf_counter() - t0)
                    assert batch.v.tolist() == [watts], (client, source, batch.v, watts)
    finally:
        for d in drivers.values():
            d.close()
    return {c: np.asarray(t) for c, t in took.items()}


def report(source: str, took: dict[str, np.ndarray]) -> None:
    rate = {}
    p50 = {}
    for client, t in took.items():
        ms = t * 1000
        p50[client] = float(np.percentile(ms, 50))
        rate[client] = len(t) / float(t.sum())
        extra = {"client": client, "source": source, "reads": len(t)}
        emit_json(f"ipmi_{source}_{client}_read_p50", p50[client], "ms", **extra)
        emit_json(f"ipmi_{source}_{client}_read_p99", float(np.percentile(ms, 99)), "ms", **extra)
        emit_json(f"ipmi_{source}_{client}_reads_per_s", rate[client], "reads/s", **extra)
        emit_json(f"ipmi_{source}_{client}_slow_reads", int((ms > 100).sum()), "reads", **extra,
                  max_ms=round(float(ms.max()), 1))
    emit_json(f"ipmi_{source}_pyghmi_vs_ipmitool", rate["pyghmi"] / rate["ipmitool"], "x",
              what="reads/s of pyghmi over ipmitool", p50_ratio=round(p50["ipmitool"] / p50["pyghmi"], 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer reads (a smoke run)")
    args = ap.parse_args()
    why = ipmi_sim.missing()
    if why:
        emit_json("ipmi_clients_skipped", 0, "", reason=why)
        return
    reads = {"pyghmi": 100, "ipmitool": 20} if args.quick else {"pyghmi": 2000, "ipmitool": 200}
    dcmi = ipmi_sim.dcmi_missing() is None
    with tempfile.TemporaryDirectory() as tmp, IpmiSim(Path(tmp), dcmi=dcmi) as bmc:
        for source in ("dcmi", "sdr") if dcmi else ("sdr",):
            report(source, measure(bmc, source, reads))


if __name__ == "__main__":
    main()
