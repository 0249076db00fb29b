"""What the sending consumers' tests (remote_write, influxdb) share: fast timings, a power batch, a wait."""

from __future__ import annotations

from peers._common import wait_until

from wattsight.sample import Batch, Series, now_ms

FAST = {"flush_interval": 0.02, "backoff_min": 0.05, "backoff_max": 0.3}
#: Recent times: Prometheus refuses samples older than an hour before the newest it holds.
T0 = (now_ms() - 600_000) // 1000 * 1000


def power(probe: str, t, v, provenance: str = "measured") -> Batch:
    return Batch.of_series(Series(probe, "power", "W", provenance=provenance), t, v)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """``predicate()``'s first true value, polled every 20 ms; AssertionError after ``timeout`` s."""
    return wait_until(predicate, timeout, what, error=AssertionError, every=0.02)
