"""The prometheus driver against a real prometheus_client exporter (tests/peers/exporter.py): both
exposition formats, kinds, units, labels, the exporter's timestamps, presets and every error."""

from __future__ import annotations

import json

import pytest
from peers.exporter import Exporter

from wattsight import cli
from wattsight.drivers.prometheus import PrometheusConfig, PrometheusScrapeDriver
from wattsight.errors import MeterAuthError, MeterReplyError, MeterUnreachable

NOW = 1_800_000_000_000
T_EXPORTER = 1_700_000_000.5


@pytest.fixture
def exp():
    with Exporter() as e:
        yield e


def pdu(exp: Exporter) -> None:
    power = exp.gauge("pdu_outlet_power_watts", "Outlet active power.", ["pdu", "outlet"])
    power.labels("r12-a", "7").set(183.0)
    power.labels("r12-a", "8").set(90.5)
    power.labels("r12-b", "1").set(40.0)
    exp.counter("pdu_outlet_energy_joules", "Outlet energy.", ["pdu", "outlet"]).labels("r12-a", "7").inc(1.0728e9)


def driver(exp, **settings) -> PrometheusScrapeDriver:
    settings.setdefault("name", "r12-a")
    cfg = PrometheusConfig.model_validate({"type": "prometheus", "url": exp.url, **settings})
    return PrometheusScrapeDriver(cfg, site="lyon", clock=lambda: NOW)


def values(batch) -> dict:
    return {(s.probe, s.metric): (s.value, s.unit, s.kind) for s in batch.samples()}


PDU_METRICS = [{"name": "pdu_outlet_power_watts", "probe": "{name}-{outlet}", "labels": {"pdu": "r12-a"}},
               {"name": "pdu_outlet_energy_joules_total", "probe": "{name}-{outlet}"}]


# -- readings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, asked", [("auto", "application/openmetrics-text"), ("text", "text/plain")])
def test_gauges_and_counters_in_either_format_stamped_when_the_reply_arrived(exp, fmt, asked):
    pdu(exp)
    batch = driver(exp, format=fmt, metrics=PDU_METRICS).read()
    assert exp.last_accept.startswith(asked)
    assert values(batch) == {("lyon.r12-a-7", "power"): (183.0, "W", "gauge"),
                             ("lyon.r12-a-8", "power"): (90.5, "W", "gauge"),
                             ("lyon.r12-a-7", "energy"): (1.0728e9, "J", "counter")}
    assert set(batch.t.tolist()) == {NOW} and {s.provenance for s in batch.series} == {"measured"}


@pytest.mark.parametrize("fmt", ["auto", "text"])
def test_the_exporters_own_timestamps_are_kept(exp, fmt):
    exp.stamped("dev_power_watts", "gauge", [({"dev": "a"}, 250.5, T_EXPORTER), ({"dev": "b"}, 10.0, None)])
    batch = driver(exp, format=fmt, metrics=[{"name": "dev_power_watts", "probe": "dev-{dev}"}]).read()
    assert {s.probe: s.measured_at for s in batch.samples()} == {"lyon.dev-a": T_EXPORTER, "lyon.dev-b": NOW / 1000}


def test_units_come_from_the_name_or_the_settings_and_end_in_si(exp):
    exp.gauge("host_power_microwatts").set(151_250_000)
    exp.gauge("rack_power_kilowatts").set(3.5)
    exp.counter("meter_energy_watthours").inc(2.0)
    exp.gauge("odd_reading").set(7.0)
    got = values(driver(exp, metrics=[{"name": "host_power_microwatts", "probe": "host"},
                                      {"name": "rack_power_kilowatts", "probe": "rack"},
                                      {"name": "meter_energy_watthours_total", "probe": "meter"},
                                      {"name": "odd_reading", "probe": "odd", "unit": "mW", "scale": 2.0}]).read())
    assert got == {("lyon.host", "power"): (pytest.approx(151.25), "W", "gauge"),
                   ("lyon.rack", "power"): (3500.0, "W", "gauge"),
                   ("lyon.meter", "energy"): (7200.0, "J", "counter"),
                   ("lyon.odd", "power"): (pytest.approx(0.014), "W", "gauge")}


def test_label_matchers_take_exact_values_and_regexes(exp):
    pdu(exp)
    got = values(driver(exp, metrics=[{"name": "pdu_outlet_power_watts", "probe": "{pdu}-{outlet}",
                                       "labels": {"outlet": "~[78]", "pdu": "~r12-.*"}}]).read())
    assert sorted(got) == [("lyon.r12-a-7", "power"), ("lyon.r12-a-8", "power")]


def test_bytes_counters_feed_network_metrics(exp):
    exp.counter("node_network_receive_bytes", "", ["device"]).labels("eth0").inc(12345)
    got = values(driver(exp, metrics=[{"name": "node_network_receive_bytes_total", "probe": "{name}",
                                       "metric": "network_in", "labels": {"device": "eth0"}}]).read())
    assert got == {("lyon.r12-a", "network_in"): (12345.0, "B", "counter")}


def test_a_total_declared_as_a_gauge_is_refused_unless_said_to_be_a_counter(exp):
    exp.gauge("battery_energy_joules").set(5000.0)
    with pytest.raises(MeterReplyError, match="declared a gauge.*counter = true"):
        driver(exp, metrics=[{"name": "battery_energy_joules"}]).read()
    got = values(driver(exp, metrics=[{"name": "battery_energy_joules", "counter": True}]).read())
    assert got == {("lyon.r12-a", "energy"): (5000.0, "J", "counter")}


def test_probes_without_label_placeholders_are_known_without_a_scrape(exp):
    d = driver(exp, preset=["scaphandre"], metrics=PDU_METRICS)
    assert [p.id for p in d.probes()] == ["lyon.r12-a"] and exp.requests == 0


# -- presets ----------------------------------------------------------------------------------
# A DCGM exporter's page as it writes it: counters without _total, no timestamps (protocols.md §8.4).
DCGM_PAGE = b"""\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-5fd2",modelName="NVIDIA A100-SXM4-40GB",Hostname="gpu-1"} 61.2
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-a1c3",modelName="NVIDIA A100-SXM4-40GB",Hostname="gpu-1"} 243.7
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-5fd2",modelName="NVIDIA A100-SXM4-40GB",Hostname="gpu-1"} 8123456789
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-a1c3",modelName="NVIDIA A100-SXM4-40GB",Hostname="gpu-1"} 9000000000
"""


def test_the_dcgm_preset_reads_a_dcgm_page_in_si_units(exp):
    exp.raw = DCGM_PAGE
    got = values(driver(exp, name="gpu-1", preset=["dcgm"]).read())
    assert got == {("lyon.gpu-1-gpu-0", "power"): (61.2, "W", "gauge"),
                   ("lyon.gpu-1-gpu-1", "power"): (243.7, "W", "gauge"),
                   ("lyon.gpu-1-gpu-0", "energy"): (8123456.789, "J", "counter"),
                   ("lyon.gpu-1-gpu-1", "energy"): (9000000.0, "J", "counter")}


def test_the_node_rapl_preset_reads_either_naming(exp):
    package = exp.counter("node_rapl_package_joules", "", ["index", "path"])
    package.labels("0", "/sys/class/powercap/intel-rapl:0").inc(9000.5)
    package.labels("1", "/sys/class/powercap/intel-rapl:1").inc(8000.0)
    exp.counter("node_rapl_joules", "", ["index", "path", "rapl_zone"]).labels(
        "0", "/sys/class/powercap/intel-rapl:0:2", "dram").inc(100.0)
    got = values(driver(exp, name="node-1", preset=["node-rapl"]).read())
    assert got == {("lyon.node-1-package-0", "energy"): (9000.5, "J", "counter"),
                   ("lyon.node-1-package-1", "energy"): (8000.0, "J", "counter"),
                   ("lyon.node-1-dram-0", "energy"): (100.0, "J", "counter")}


def test_the_scaphandre_and_kepler_presets(exp):
    exp.gauge("scaph_host_power_microwatts").set(95_000_000)
    exp.gauge("scaph_host_energy_microjoules").set(4_000_000_000)  # scaphandre's total, whatever its TYPE
    exp.gauge("scaph_socket_power_microwatts", "", ["socket_id"]).labels("0").set(60_000_000)
    exp.counter("kepler_node_cpu_joules", "", ["zone"]).labels("package").inc(321.0)
    exp.gauge("kepler_node_cpu_watts", "", ["zone"]).labels("package").set(42.0)
    got = values(driver(exp, name="n1", preset=["scaphandre", "kepler"]).read())
    assert got == {("lyon.n1", "power"): (95.0, "W", "gauge"), ("lyon.n1", "energy"): (4000.0, "J", "counter"),
                   ("lyon.n1-socket-0", "power"): (60.0, "W", "gauge"),
                   ("lyon.n1-cpu-package", "energy"): (321.0, "J", "counter"),
                   ("lyon.n1-cpu-package", "power"): (42.0, "W", "gauge")}


def test_a_preset_finding_nothing_says_what_is_there(exp):
    exp.gauge("node_hwmon_temp_celsius").set(40.0)
    with pytest.raises(MeterReplyError, match=r"none of the selected metrics \(DCGM_FI_DEV_POWER_USAGE"):
        driver(exp, preset=["dcgm"]).read()


# -- errors -----------------------------------------------------------------------------------
def test_an_absent_metric_is_a_reply_error_listing_similar_names(exp):
    pdu(exp)
    with pytest.raises(MeterReplyError, match="no metric 'pdu_outlet_power_watt' in the scrape; similar names "
                                              "present: pdu_outlet_power_watts"):
        driver(exp, metrics=[{"name": "pdu_outlet_power_watt"}]).read()


def test_labels_that_match_nothing_show_the_label_sets_there(exp):
    pdu(exp)
    with pytest.raises(MeterReplyError, match=r"no sample matches labels \{'pdu': 'r13'\}.*'outlet': '7'"):
        driver(exp, metrics=[{"name": "pdu_outlet_power_watts", "labels": {"pdu": "r13"}}]).read()


def test_two_samples_for_one_probe_are_an_error_rather_than_a_silent_choice(exp):
    pdu(exp)
    with pytest.raises(MeterReplyError, match="two samples feed lyon.r12-a power"):
        driver(exp, metrics=[{"name": "pdu_outlet_power_watts"}]).read()


def test_a_template_naming_a_missing_label_is_a_reply_error(exp):
    pdu(exp)
    with pytest.raises(MeterReplyError, match="wants label 'socket'"):
        driver(exp, metrics=[{"name": "pdu_outlet_power_watts", "probe": "{socket}"}]).read()


@pytest.mark.parametrize("value, says", [(-5.0, "-5.0, out of range"), (float("nan"), "nan, out of range")])
def test_a_negative_or_nan_reading_is_a_reply_error(exp, value, says):
    exp.gauge("x_power_watts").set(value)
    with pytest.raises(MeterReplyError, match=f"lyon.r12-a: x_power_watts{{}} is {says}"):
        driver(exp, metrics=[{"name": "x_power_watts"}]).read()


def test_a_stopped_exporter_is_unreachable_and_read_again_when_back_on_the_same_port(exp):
    pdu(exp)
    d = driver(exp, metrics=PDU_METRICS)
    d.read()
    exp.stop()
    with pytest.raises(MeterUnreachable, match="cannot connect"):
        d.read()
    exp.start()
    assert len(d.read()) == 3


def test_a_hung_exporter_is_unreachable_after_the_timeout(exp):
    pdu(exp)
    exp.delay = 1.0
    with pytest.raises(MeterUnreachable, match="no answer within 0.2 s"):
        driver(exp, metrics=PDU_METRICS, timeout=0.2).read()


def test_credentials_wrong_missing_or_refused_are_auth_errors(exp):
    pdu(exp)
    exp.auth = ("prom", "scrape-pw")
    assert len(driver(exp, metrics=PDU_METRICS, username="prom", password="scrape-pw").read()) == 3
    with pytest.raises(MeterAuthError, match="401.*refused") as err:
        driver(exp, metrics=PDU_METRICS, username="prom", password="bad-pw").read()
    assert "bad-pw" not in str(err.value)
    with pytest.raises(MeterAuthError, match="needs credentials"):
        driver(exp, metrics=PDU_METRICS).read()
    exp.auth, exp.status = None, 403
    with pytest.raises(MeterAuthError, match="403"):
        driver(exp, metrics=PDU_METRICS).read()


def test_a_wrong_path_is_a_reply_error(exp):
    cfg = PrometheusConfig.model_validate({"type": "prometheus", "url": exp.url.replace("/metrics", "/metric"),
                                           "metrics": PDU_METRICS})
    with pytest.raises(MeterReplyError, match="HTTP 404"):
        PrometheusScrapeDriver(cfg, site="lyon").read()


@pytest.mark.parametrize("body, ctype, says", [
    (b"this is { not metrics\n", "text/plain; version=0.0.4", "not in the Prometheus text format"),
    (b"<html>login</html>", "text/html; charset=utf-8", "HTML page"),
    (b"# TYPE a gauge\na 1\n", "application/openmetrics-text; version=1.0.0", "not in the Prometheus text format")])
def test_a_page_that_is_not_metrics_is_a_reply_error(exp, body, ctype, says):
    exp.raw, exp.raw_type = body, ctype
    with pytest.raises(MeterReplyError, match=says):
        driver(exp, metrics=PDU_METRICS).read()


@pytest.mark.parametrize("bad, says", [({"metrics": []}, "select something"),
                                       ({"metrics": [{"name": "foo"}]}, "no unit in the name"),
                                       ({"metrics": [{"name": "foo_watts", "metric": "energy"}]}, "not measured in W"),
                                       ({"metrics": [{"name": "foo_bytes_total"}]}, "network_in"),
                                       ({"metrics": [{"name": "foo_watts", "labels": {"a": "~("}}]}, "not a regex"),
                                       ({"preset": ["nvidia"]}, "dcgm"),
                                       ({"preset": ["dcgm"], "name": "bad name"}, "not of the form")])
def test_bad_settings_are_refused_at_configuration_time(bad, says):
    with pytest.raises(ValueError, match=says):
        PrometheusConfig.model_validate({"type": "prometheus", "url": "http://127.0.0.1:1/metrics", **bad})


# -- the command line -------------------------------------------------------------------------
def test_wattsight_probe_once_scrapes_the_real_exporter(exp, capsys):
    pdu(exp)
    code = cli.main(["probe", "prometheus", "--once", "--json", "--site", "lyon", "--url", exp.url,
                     "--name", "r12-a", "--metrics",
                     '[{name = "pdu_outlet_power_watts", probe = "{name}-{outlet}", labels = {pdu = "r12-a"}}]'])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = sorted((s["probe"], s["metric"], s["value"]) for s in map(json.loads, out.splitlines()))
    assert got == [("lyon.r12-a-7", "power", 183.0), ("lyon.r12-a-8", "power", 90.5)]


def test_wattsight_probe_with_a_preset_prints_the_missing_metric_error(exp, capsys):
    code = cli.main(["probe", "prometheus", "--once", "--url", exp.url, "--preset", "node-rapl"])
    assert code == 1 and "none of the selected metrics" in capsys.readouterr().err


def test_an_exporter_restarted_between_two_reads_is_read_at_once(exp):
    pdu(exp)
    d = driver(exp, metrics=PDU_METRICS)
    d.read()
    exp.stop()
    exp.start()
    assert len(d.read()) == 3
