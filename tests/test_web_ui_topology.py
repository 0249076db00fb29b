"""The web UI on a configured rack: aliases, a node with two PSUs, a shared outlet, a price.

A real ``wattsight run -c`` with a dummy driver (constant 150 W per probe) and this
topology: ``lab.psu-a`` and ``lab.psu-b`` feed node ``lab.big-1`` (summed); ``lab.pdu-3``
(alias ``rack1-outlet3``) feeds ``lab.small-2`` and ``lab.small-3`` (shared, marked);
``lab.solo-4`` feeds nothing.  Energy costs 0.25 CHF per kWh.  A second driver reads a PDU
that does not answer (``lab.ghost-9``: no sample, errors).
"""

from __future__ import annotations

import re

import pytest
from procs import free_port
from web_helpers import Watch, configured, launch, new_page, ready, shot, wait_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rack(tmp_path_factory):
    with configured(tmp_path_factory.mktemp("webui-rack"), "lab", "d2Vic2lnaHQtd2ViLXVpLXRlc3QtYnVzLXNlY3JldC0wMg==", f"""\
price_per_kwh = 0.25
currency = "CHF"
[drivers.rack]
type = "dummy"
period = 1.0
probes = ["psu-a", "psu-b", "pdu-3", "solo-4"]
metrics = ["power", "energy"]
pattern = "constant"
value = 150.0
[drivers.pdu-json]
type = "http"
period = 1.0
url = "http://127.0.0.1:{free_port()}/outlets"
probes = {{ "ghost-9" = {{ power = "outlets[0].watts" }} }}
[probes."lab.psu-a"]
nodes = ["lab.big-1"]
[probes."lab.psu-b"]
nodes = ["lab.big-1"]
[probes."lab.pdu-3"]
nodes = ["lab.small-2", "lab.small-3"]
aliases = ["rack1-outlet3"]
description = "PDU 1, outlet 3"
""") as ws:
        wait_samples(ws, 5, but="lab.ghost-9")
        ws.wait_for(lambda: ws.get("/api/v1/health")["status"] == "degraded", what="the dead PDU reported")
        yield ws


@pytest.fixture(scope="module")
def page(rack):
    with launch() as browser, new_page(browser) as pg:
        yield pg


def cells(page, table: str, row: str) -> list[str]:
    """The cells of the row whose header is ``row`` in the table after heading ``table``."""
    tr = page.locator(f"{table} tbody tr").filter(has=page.locator("th", has_text=re.compile(rf"^{re.escape(row)}\b")))
    assert tr.count() == 1, (table, row, tr.count())
    return [c.strip() for c in tr.locator("th, td").all_inner_texts()]


def wh(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"mWh": 1e-3, "Wh": 1.0, "kWh": 1e3, "MWh": 1e6}[unit]


def test_nodes_sum_their_psus_and_shared_outlets_are_marked(page, rack):
    watch = Watch(page)
    page.goto(rack.url + "/?period=minute")
    ready(page)
    big = cells(page, "#nodes-h + .table-wrap", "lab.big-1")
    psu_a = cells(page, "table.legend", "lab.psu-a")
    assert big[1] == "2"  # two probes
    assert wh(big[2]) == pytest.approx(2 * wh(psu_a[5]), rel=0.05)  # summed (both 150 W)
    for node in ("lab.small-2", "lab.small-3"):
        assert "shared" in cells(page, "#nodes-h + .table-wrap", node)[0]
    assert "shared" in cells(page, "table.legend", "lab.pdu-3")[0]
    assert "shared" not in cells(page, "table.legend", "lab.solo-4")[0]
    # constant 150 W: min = max = avg = last, and a cost in the configured currency
    assert psu_a[1:5] == ["150 W"] * 4, psu_a
    assert "CHF" in psu_a[6] and re.search(r"[1-9]", psu_a[6]), psu_a
    assert "0.25" in page.inner_text(".legend-area .note")
    shot(page, "overview-topology")
    watch.assert_clean()


def test_a_failing_driver_shows_in_the_header_and_on_its_probe(page, rack):
    page.goto(rack.url + "/")
    page.wait_for_selector("#health-pill:not([hidden])")
    assert page.inner_text("#health-pill") == "degraded"
    assert "pdu-json" in page.get_attribute("#health-pill", "title")
    page.goto(rack.url + "/probe/lab.ghost-9")
    page.wait_for_selector("#errors .error")
    assert "pdu-json" in page.inner_text("#errors")
    assert page.inner_text("#last-age") == "never"
    errors = page.locator(".card", has_text="Errors").locator(".v")
    assert int(errors.inner_text()) >= 1 and "bad" in errors.get_attribute("class")
    shot(page, "probe-failing")


def test_aliases_and_nodes_select_probes(page, rack):
    for path, expected in [
        ("/select?q=rack1-outlet3", ["lab.pdu-3"]),      # search finds aliases
        ("/select?probes=rack1-outlet3", ["lab.pdu-3"]),  # an alias in the shared URL
        ("/select?node=lab.big-1", ["lab.psu-a", "lab.psu-b"]),
        ("/select?q=outlet%203", ["lab.pdu-3"]),          # and descriptions
    ]:
        page.goto(rack.url + path)
        assert ready(page)["ids"] == expected, path


def test_probe_page_shows_nodes_aliases_and_health(page, rack):
    page.goto(rack.url + "/probe/rack1-outlet3")  # by alias
    got = ready(page, legend=False)
    assert got["ids"] == ["lab.pdu-3"] and len(got["charts"]) == 6
    meta = page.inner_text("#meta")
    assert "rack1-outlet3" in meta and "lab.small-2" in meta and "lab.small-3" in meta and "shared" in meta
    page.wait_for_function("document.querySelector('#last-age').textContent.endsWith('ago')")
    assert "ok" in page.inner_text("#health")
