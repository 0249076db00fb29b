"""/metrics: Prometheus exposition of the store's last values and wattsight's health.

The text is checked by the real ``promtool check metrics`` (Debian package
``prometheus``), parsed back with prometheus_client's parser, and compared with the
energies known from test_api_helpers.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_api_helpers import (
    BUS_STATS,
    RAMP_J,
    RAPL_J,
    RUNNER_STATE,
    RX_B,
    T_END,
    TX_B,
    client_for,
    open_store,
)

from wattsight.config import StoreConfig
from wattsight.consumers.store import Store
from wattsight.sample import Batch, Series, Topology


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    yield s
    s.close()


def scrape(client, accept: str | None = None) -> str:
    r = client.get("/metrics", headers={"Accept": accept} if accept else {})
    assert r.status_code == 200
    return r.text


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label pairs): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def probe(pid: str) -> tuple:
    return (("probe", pid), ("site", "lyon"))


def promtool_check(text: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool is required by this test: apt-get install prometheus (/usr/bin/promtool)"
    return subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_exposition(store):
    client = client_for(store, runner_state=lambda: RUNNER_STATE, bus_stats=lambda: BUS_STATS)
    text = scrape(client)
    done = promtool_check(text)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done
    # A broken exposition is caught: the check can fail.
    assert promtool_check(text.replace("# TYPE wattsight_power_watts gauge", "# TYPE x y")).returncode != 0


def test_content_type_is_the_text_format(store):
    r = client_for(store).get("/metrics")
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_probe_values(store):
    got = samples(scrape(client_for(store)))
    assert got[("wattsight_power_watts", probe("lyon.ramp"))] == 200.0
    assert got[("wattsight_power_watts", probe("lyon.const"))] == 50.0
    # Integrated since the first sample when there is no counter...
    assert got[("wattsight_energy_joules_total", probe("lyon.ramp"))] == pytest.approx(RAMP_J, rel=1e-12)
    # ...the meter's own counter value when there is one.
    assert got[("wattsight_energy_joules_total", probe("lyon.const"))] == pytest.approx(5e6 + 60.0 * 3600)
    assert got[("wattsight_energy_joules_total", probe("lyon.rapl"))] == pytest.approx(RAPL_J)
    assert got[("wattsight_network_receive_bytes_total", probe("lyon.sw1"))] == pytest.approx(1e9 + RX_B)
    assert got[("wattsight_network_transmit_bytes_total", probe("lyon.sw1"))] == pytest.approx(TX_B)
    assert ("wattsight_power_watts", probe("lyon.sw1")) not in got
    stamp = ("wattsight_sample_timestamp_seconds", (("metric", "power"), *probe("lyon.ramp")))
    assert got[stamp] == T_END / 1000


def test_health_values(store):
    client = client_for(store, runner_state=lambda: RUNNER_STATE, bus_stats=lambda: BUS_STATS)
    got = samples(scrape(client))
    pdu, bmc = (("driver", "pdu"),), (("driver", "bmc"),)
    assert got[("wattsight_driver_reads_total", pdu)] == 3600
    assert got[("wattsight_driver_errors_total", bmc)] == 7
    assert got[("wattsight_driver_restarts_total", pdu)] == 1
    assert got[("wattsight_driver_up", pdu)] == 1 and got[("wattsight_driver_up", bmc)] == 0
    assert got[("wattsight_bus_batches_total", ())] == 120
    assert got[("wattsight_bus_samples_total", ())] == 25207
    assert got[("wattsight_bus_refused_total", (("cause", "bad-signature"),))] == 2
    assert got[("wattsight_bus_refused_total", (("cause", "replayed"),))] == 1
    assert got[("wattsight_bus_lost_batches_total", ())] == 3
    stats = store.stats()
    assert got[("wattsight_store_samples_total", ())] == stats["samples_total"] > 0
    assert got[("wattsight_store_bytes", ())] == stats["bytes_on_disk"] > 0


def test_process_bus_view_with_inbox_and_outbox(store):
    stats = {"inbox": {**BUS_STATS, "acked_samples": 1}, "outbox": {"dropped_samples": 4}}
    text = scrape(client_for(store, bus_stats=lambda: stats))
    got = samples(text)
    assert got[("wattsight_bus_batches_total", ())] == 120
    assert got[("wattsight_bus_dropped_samples_total", ())] == 4
    assert promtool_check(text).returncode == 0


def test_consumers_delivery_counters(store):
    consumers = {"prom": {"sent_samples": 1000, "dropped_samples": 3, "rejected_samples": 2, "queued_samples": 50},
                 "influx": {"sent_samples": 7, "queued_samples": 0}}
    stats = {"inbox": {**BUS_STATS, "acked_samples": 1}, "consumers": consumers}
    text = scrape(client_for(store, bus_stats=lambda: stats))
    got = samples(text)
    assert got[("wattsight_consumer_sent_samples_total", (("consumer", "prom"),))] == 1000
    assert got[("wattsight_consumer_dropped_samples_total", (("consumer", "prom"),))] == 3
    assert got[("wattsight_consumer_rejected_samples_total", (("consumer", "influx"),))] == 0
    assert got[("wattsight_consumer_queued_samples", (("consumer", "prom"),))] == 50
    assert promtool_check(text).returncode == 0


def test_without_runner_or_bus_their_families_are_absent(store):
    text = scrape(client_for(store))
    assert "wattsight_driver_" not in text and "wattsight_bus_" not in text
    assert "wattsight_store_samples_total" in text


def test_stale_power_is_left_out_but_counters_stay(store):
    got = samples(scrape(client_for(store, clock=lambda: T_END + 3_600_000)))
    assert not [k for k in got if k[0] == "wattsight_power_watts"]
    assert got[("wattsight_energy_joules_total", probe("lyon.ramp"))] == pytest.approx(RAMP_J)


def test_integrated_energy_is_a_monotonic_running_total(store):
    client = client_for(store, clock=lambda: T_END + 60_000)
    key = ("wattsight_energy_joules_total", probe("lyon.ramp"))
    first = samples(scrape(client))[key]
    t = T_END + np.arange(1, 61, dtype=np.int64) * 1000
    store.handle(Batch.of_series(Series("lyon.ramp", "power", "W"), t, np.full(len(t), 200.0)))
    second = samples(scrape(client))[key]
    assert second - first == pytest.approx(200.0 * 60, rel=1e-9)
    assert samples(scrape(client))[key] == second  # nothing new: unchanged


def test_openmetrics_when_asked(store):
    r = client_for(store).get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    assert "wattsight_energy_joules_total{" in r.text


def test_each_app_has_its_own_registry(store, tmp_path):
    other = Store(StoreConfig(path=tmp_path / "other"))
    try:
        other.handle(Batch.of_series(Series("nancy.x", "power", "W"), [T_END], [7.0]))
        a, b = scrape(client_for(store)), scrape(client_for(other, topo=Topology()))
        assert "nancy.x" in b and "nancy.x" not in a and "lyon.ramp" not in b
        assert "wattsight_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    finally:
        other.close()
