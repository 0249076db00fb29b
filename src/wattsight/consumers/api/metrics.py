"""``/metrics``: the store's last values and wattsight's own health, for Prometheus.

One :class:`StoreCollector` per app, registered in a registry of its own (never the
global one), reads everything at scrape time: nothing is updated in the background.

Power is a gauge (``wattsight_power_watts``) and energy a counter
(``wattsight_energy_joules_total``: the meter's own energy counter when the probe has
one, else power integrated since the probe's first sample).  A power value older than
:data:`STALE_S` (or ten periods of its probe) is left out, so that a dead meter shows as
a gap in Prometheus rather than as its last reading forever; counters stay.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from ...sample import site_of
from .app import ApiContext
from .catalog import ENERGY, NET_IN, NET_OUT, POWER, Catalog
from .totals import EnergyTotals

router = APIRouter(tags=["prometheus"])

#: Seconds after which a power reading is too old to be shown as the current power.
STALE_S = 300.0
_PROBE = ["probe", "site"]


def _finite(x) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


class StoreCollector:
    """Yields wattsight's metric families from the store, the runner and the bus (``collect()``)."""

    def __init__(self, ctx: ApiContext, totals: EnergyTotals) -> None:
        self.ctx = ctx
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        yield from self._probes()
        if self.ctx.runner_state is not None:
            yield from self._drivers(self.ctx.runner_state())
        if self.ctx.bus_stats is not None:
            stats = self.ctx.bus_stats()
            yield from self._bus(stats)
            yield from self._consumers(stats.get("consumers") or {})
        yield from self._store(self.ctx.store.stats())

    def _probes(self) -> Iterator[Metric]:
        catalog = Catalog(self.ctx.store, self.ctx.topology)
        now = self.ctx.clock()
        power = GaugeMetricFamily("wattsight_power_watts", "Last power reading of a probe, in watts.",
                                  labels=_PROBE)
        joules = CounterMetricFamily("wattsight_energy_joules", "Energy of a probe, in joules: the meter's "
                                     "counter if it has one, else power integrated since the first sample.",
                                     labels=_PROBE)
        rx = CounterMetricFamily("wattsight_network_receive_bytes", "Bytes received (network_in counter).",
                                 labels=_PROBE)
        tx = CounterMetricFamily("wattsight_network_transmit_bytes", "Bytes sent (network_out counter).",
                                 labels=_PROBE)
        when = GaugeMetricFamily("wattsight_sample_timestamp_seconds", "Measurement time of the last "
                                 "sample of each series, in epoch seconds.", labels=[*_PROBE, "metric"])
        for view in catalog.probes.values():
            labels = [view.id, site_of(view.id)]
            for metric, info in sorted(view.metrics.items()):
                when.add_metric([*labels, metric], info.last_t / 1000.0)
            info = view.metrics.get(POWER)
            stale_ms = 1000 * max(STALE_S, 10 * (view.probe.period or 0))
            if info is not None and now - info.last_t <= stale_ms and _finite(info.last_v):
                power.add_metric(labels, float(info.last_v))
            if view.has_counter(ENERGY) and _finite(view.metrics[ENERGY].last_v):
                joules.add_metric(labels, float(view.metrics[ENERGY].last_v))
            elif POWER in view.metrics:
                joules.add_metric(labels, self.totals.get(self.ctx.store, view).energy.joules)
            for family, metric in ((rx, NET_IN), (tx, NET_OUT)):
                if view.has_counter(metric) and _finite(view.metrics[metric].last_v):
                    family.add_metric(labels, float(view.metrics[metric].last_v))
        yield from (power, joules, rx, tx, when)

    @staticmethod
    def _drivers(state: list[dict]) -> Iterator[Metric]:
        families = {
            key: CounterMetricFamily(f"wattsight_driver_{key}",
                                     f"{text} per driver since the runner started.", labels=["driver"])
            for key, text in (("reads", "Reads"), ("errors", "Failed reads"), ("restarts", "Restarts"))
        }
        up = GaugeMetricFamily("wattsight_driver_up", "1 when the driver's last read succeeded, else 0.",
                               labels=["driver"])
        for d in state:
            name = str(d.get("driver"))
            for key, family in families.items():
                family.add_metric([name], float(d.get(key) or 0))
            up.add_metric([name], 1.0 if d.get("status") == "ok" else 0.0)
        yield from (*families.values(), up)

    @staticmethod
    def _bus(stats: dict) -> Iterator[Metric]:
        # Subscriber.stats() itself, or the process's {"inbox": ..., "outbox": ...} view of the bus.
        outbox = stats.get("outbox")
        if outbox is not None:
            yield CounterMetricFamily("wattsight_bus_dropped_samples", "Samples the publisher dropped "
                                      "because its backlog was full (no subscriber for too long).",
                                      value=float(outbox.get("dropped_samples") or 0))
        if "inbox" not in stats and outbox is not None:
            return
        stats = stats.get("inbox", stats)
        yield CounterMetricFamily("wattsight_bus_batches", "Bus messages (batches) accepted.",
                                  value=float(stats.get("accepted") or 0))
        yield CounterMetricFamily("wattsight_bus_samples", "Samples in accepted bus messages.",
                                  value=float(stats.get("samples") or 0))
        refused = CounterMetricFamily("wattsight_bus_refused", "Bus messages refused, by cause.",
                                      labels=["cause"])
        for cause, n in sorted((stats.get("refused") or {}).items()):
            refused.add_metric([str(cause)], float(n))
        yield refused
        yield CounterMetricFamily("wattsight_bus_lost_batches",
                                  "Bus messages lost (gaps in sequence numbers).",
                                  value=float(stats.get("lost") or 0))

    @staticmethod
    def _consumers(stats: dict[str, dict]) -> Iterator[Metric]:
        """Delivery counters of the consumers that send samples on (remote_write, InfluxDB)."""
        if not stats:
            return
        counters = {key: CounterMetricFamily(f"wattsight_consumer_{key}", text, labels=["consumer"])
                    for key, text in (("sent_samples", "Samples a consumer delivered."),
                                      ("dropped_samples", "Samples a consumer dropped: its backlog was full."),
                                      ("rejected_samples", "Samples the receiving server refused."))}
        queued = GaugeMetricFamily("wattsight_consumer_queued_samples", "Samples waiting to be sent.",
                                   labels=["consumer"])
        for name, s in sorted(stats.items()):
            for key, family in counters.items():
                family.add_metric([name], float(s.get(key) or 0))
            queued.add_metric([name], float(s.get("queued_samples") or 0))
        yield from (*counters.values(), queued)

    @staticmethod
    def _store(stats: dict) -> Iterator[Metric]:
        yield CounterMetricFamily("wattsight_store_samples", "Samples written to the store.",
                                  value=float(stats.get("samples_total") or 0))
        size = float(stats.get("bytes_on_disk") or 0)
        yield GaugeMetricFamily("wattsight_store_bytes", "Size of the store on disk, in bytes.", value=size)


def registry_for(ctx: ApiContext, totals: EnergyTotals) -> CollectorRegistry:
    """A registry holding only this app's collector (the global one stays untouched)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx, totals))
    return registry


def _registry(request: Request) -> CollectorRegistry:
    return request.app.state.registry


@router.get("/metrics", summary="Prometheus text exposition (OpenMetrics when asked for)",
            response_class=Response, include_in_schema=True)
def metrics(request: Request, registry: CollectorRegistry = Depends(_registry)) -> Response:
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), media_type=None, headers={"Content-Type": content_type})
