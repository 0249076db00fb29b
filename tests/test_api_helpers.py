"""A real store filled with series whose energies are known exactly, and the app over it.

Imported by the API, Kwapi and /metrics tests (it holds no test itself).  One hour of
1 Hz samples, from T0 to T_END:

=============  ====================================================  ======================
probe          samples                                               energy over the hour
=============  ====================================================  ======================
lyon.ramp      power 100 -> 200 W, linear                            150 W x 3600 s = 540 kJ
lyon.const     power 50 W, *and* an energy counter rising 60 J/s     counter: 216 kJ (power
                                                                     would say 180 kJ)
lyon.gappy     power 100 W, no sample for the middle 30 min          180 kJ, coverage 0.5
lyon.rapl      energy counter only, 30 J/s (not in the topology)     108 kJ
lyon.sw1       network_in 1000 B/s, network_out 500 B/s              3.6 MB in, 1.8 MB out
lyon.waiting   in the topology only, no sample yet                   -
=============  ====================================================  ======================

Nodes: lyon.node-1 = ramp + const; lyon.node-2 = const + gappy (+ sw1, a network probe);
lyon.const feeds both, so both nodes are *shared*.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from procs import free_port

from wattsight.config import ApiConfig, StoreConfig
from wattsight.consumers.api import ApiContext, create_app
from wattsight.consumers.store import Store
from wattsight.sample import Batch, Probe, Series, Topology

T0 = 1_700_000_000_000  # ms
HOUR = 3_600_000
T_END = T0 + HOUR
TIMES = T0 + np.arange(0, 3601, dtype=np.int64) * 1000
#: Seconds of the range, for from=/to= parameters.
FROM_S, TO_S = T0 // 1000, T_END // 1000

RAMP_J = 150.0 * 3600
CONST_COUNTER_J = 60.0 * 3600
CONST_POWER_J = 50.0 * 3600
GAPPY_J = 100.0 * 1800
RAPL_J = 30.0 * 3600
RX_B, TX_B = 1000.0 * 3600, 500.0 * 3600

CONFIG = ApiConfig(max_points=1000, max_gap=5.0, price_per_kwh=0.25, currency="EUR")


def topology() -> Topology:
    return Topology([
        Probe("lyon.ramp", driver="dummy", aliases=("ramp", "taurus-1-psu"), nodes=("lyon.node-1",),
              period=1.0, description="PSU of node-1"),
        Probe("lyon.const", driver="dummy", nodes=("lyon.node-1", "lyon.node-2"), period=1.0),
        Probe("lyon.gappy", driver="dummy", nodes=("lyon.node-2",), period=1.0),
        Probe("lyon.sw1", driver="snmp", nodes=("lyon.node-2",), period=1.0),
        Probe("lyon.waiting", driver="ipmi", description="not read yet"),
    ])


def batches() -> list[Batch]:
    s = (TIMES - T0) / 1000.0  # seconds since T0
    gappy = (s <= 900) | (s >= 2700)
    return [
        Batch.of_series(Series("lyon.ramp", "power", "W"), TIMES, 100.0 + 100.0 * s / 3600),
        Batch.of_series(Series("lyon.const", "power", "W"), TIMES, np.full(len(s), 50.0)),
        Batch.of_series(Series("lyon.const", "energy", "J", "counter"), TIMES, 5e6 + 60.0 * s),
        Batch.of_series(Series("lyon.gappy", "power", "W"), TIMES[gappy], np.full(int(gappy.sum()), 100.0)),
        Batch.of_series(Series("lyon.rapl", "energy", "J", "counter"), TIMES, 30.0 * s),
        Batch.of_series(Series("lyon.sw1", "network_in", "B", "counter"), TIMES, 1e9 + 1000.0 * s),
        Batch.of_series(Series("lyon.sw1", "network_out", "B", "counter"), TIMES, 500.0 * s),
    ]


def open_store(path, clock: Callable[[], int] = lambda: T_END) -> Store:
    store = Store(StoreConfig(path=path), clock=clock)
    for b in batches():
        store.handle(b)
    return store


def client_for(store, *, config: ApiConfig = CONFIG, topo: Topology | None = None, clock=lambda: T_END,
               runner_state=None, bus_stats=None) -> TestClient:
    ctx = ApiContext(store=store, topology=topo if topo is not None else topology(), config=config,
                     runner_state=runner_state, bus_stats=bus_stats, clock=clock)
    return TestClient(create_app(ctx))


RUNNER_STATE = [
    {"driver": "pdu", "type": "dummy", "period": 1.0, "status": "ok", "last_success": T_END,
     "last_error": None, "last_error_at": None, "errors": 2, "timeouts": 0, "restarts": 1, "reads": 3600,
     "samples": 7200, "next_retry": None},
    {"driver": "bmc", "type": "dummy", "period": 5.0, "status": "backoff", "last_success": None,
     "last_error": "lyon.bmc: connection refused", "last_error_at": T_END, "errors": 7, "timeouts": 3,
     "restarts": 0, "reads": 0, "samples": 0, "next_retry": T_END + 4000},
]
BUS_STATS = {"accepted": 120, "samples": 25207, "refused": {"bad-signature": 2, "replayed": 1}, "lost": 3,
             "duplicates": 1, "reordered": 0, "sources": {}}


# Fixtures shared by the API test modules (imported there by name).

@contextmanager
def served_app(app) -> Iterator[str]:
    """The base URL of uvicorn serving ``app`` on 127.0.0.1, in a thread of this process (stopped after)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def client(store):
    return client_for(store)
