"""The web UI in real headless Chromium against a real ``wattsight run --demo``.

- every page loads with no console error, no failed request, nothing asked of another host;
- period buttons change the plotted range; the selection lives in the URL and survives a reload;
- the job filter picks the job's nodes; live samples extend the graphs;
- Export downloads a zip of what is on screen, PNG downloads a graph;
- at phone width nothing overflows sideways; Tab reaches the controls, with a visible focus.

Screenshots of the main pages go to $WATTSIGHT_SCREENSHOTS (default build/screenshots/).
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from procs import Wattsight, free_port
from web_helpers import Watch, launch, new_page, no_overflow, ready, shot, state, wait_samples

pytestmark = pytest.mark.slow

PAGES = {  # screenshot name -> path (the last minute: the demo has only run for half a minute)
    "overview": "/?period=minute",
    "overview-network": "/?period=minute&metric=network",
    "selection": "/select?regex=node-%5B1-4%5D%24&view=side&period=minute",
    "selection-stacked": "/select?site=demo",
    "probe": "/probe/demo.node-3",
    "network": "/network?period=minute",
    "network-nodes": "/network?group=node",
}


#: Visible controls without an accessible name (label, aria-label, text, title or alt).
UNNAMED = """() => [...document.querySelectorAll('a, button, input, select, [tabindex]')]
  .filter((e) => e.offsetParent !== null)
  .filter((e) => !(e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.title
                   || (e.innerText || '').trim() || (e.labels && e.labels.length) || e.querySelector('img[alt]:not([alt=""])')))
  .map((e) => e.outerHTML.slice(0, 120))"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webui")
    ws = Wattsight(["--demo", "--data-dir", str(tmp / "data")], tmp, listen=f"127.0.0.1:{free_port()}")
    try:
        ws.wait_ready()
        # 30 s of samples: rates need two whole buckets (5 s each on the hour graph); screenshots show lines
        wait_samples(ws, 30)
        yield ws
    finally:
        ws.stop()


@pytest.fixture(scope="module")
def browser():
    with launch() as b:
        yield b


@pytest.fixture
def page(browser):
    with new_page(browser, accept_downloads=True) as pg:
        yield pg


def routes(ws: Wattsight) -> set[str]:
    return set(ws.get("/api/v1/openapi.json")["paths"])


def open_page(page, ws: Wattsight, path: str) -> dict:
    page.goto(ws.url + path)
    return ready(page)


def test_every_page_loads_clean_and_stays_on_127_0_0_1(page, server):
    watch = Watch(page)
    for name, path in PAGES.items():
        got = open_page(page, server, path)
        assert got["charts"], (path, got)
        assert all(c["lastT"] for c in got["charts"]), (path, got["charts"])
        assert page.evaluate(UNNAMED) == [], path  # every control says what it is
        assert page.locator("h1").count() == 1
        shot(page, name)
    watch.assert_clean()
    assert any("/static/vendor/uPlot.iife.js" in u for u in watch.urls)
    assert any("/api/v1/series" in u for u in watch.urls) and any("/api/v1/summary" in u for u in watch.urls)


def test_overview_shows_legend_energy_cost_and_totals(page, server):
    open_page(page, server, "/")
    rows = page.locator("table.legend tbody tr")
    probes = server.get("/api/v1/probes")["probes"]
    assert rows.count() == len(probes)
    first = rows.nth(0).inner_text()
    assert " W" in first and "Wh" in first and "€" in first, first  # readable units, cost in the currency
    assert page.locator("#sites-h").is_visible() and page.locator("#nodes-h").is_visible()
    assert "Modelled, not measured" in page.inner_text(".notice")  # the demo is never passed off as real
    # hovering reads each probe's own (unstacked) value and the total (10 s ago: there is data)
    open_page(page, server, "/?period=minute")
    legend = [r.strip() for r in page.locator("table.legend tbody th").all_inner_texts()]
    box = page.locator(".chart .u-over").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 50 / 60, box["y"] + box["height"] / 2)
    lines = page.inner_text(".chart .readout").splitlines()
    assert [line.rsplit(" ", 2)[0] for line in lines[1:]] == [*legend, "total"], lines
    assert all(line.endswith((" W", " kW")) for line in lines[1:]), lines
    nodes = {n for p in probes for n in p["nodes"]}
    assert page.locator("#nodes-h + .table-wrap tbody tr").count() == len(nodes)


def test_top_n_stacks_the_rest_as_others_with_the_same_total(page, server):
    to = int(time.time()) - 10  # a past range: every sample of it is stored, both loads see the same
    base = f"/?period=custom&from={to - 20}&to={to}"
    all_ = open_page(page, server, base)["charts"][0]
    top3 = open_page(page, server, base + "&top=3")["charts"][0]
    n = len(server.get("/api/v1/probes")["probes"])
    assert len(all_["layers"]) == n and "others" not in " ".join(all_["layers"])
    assert len(top3["layers"]) == 4 and f"others ({n - 3})" in top3["layers"]
    assert any(v is not None for v in all_["total"])
    assert len(top3["total"]) == len(all_["total"])
    for a, b in zip(top3["total"], all_["total"]):  # the same sum, added in another order
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9), (top3["total"], all_["total"])
    assert page.locator("table.legend tbody tr").count() == n  # the legend still lists every probe


def test_period_buttons_change_the_plotted_range(page, server):
    asked = []
    page.on("request", lambda r: "/api/v1/series" in r.url and asked.append(parse_qs(urlsplit(r.url).query)))
    open_page(page, server, "/")
    spans = {}
    for period in ("minute", "day", "hour"):
        before = state(page)["run"]
        page.click(f"[data-period={period}]")
        page.wait_for_function(f"window.wattsight.run > {before}")  # the new period's data is drawn
        page.wait_for_function("!document.querySelector('.legend-area .loading')")
        c = state(page)["charts"][0]
        spans[period] = c["to"] - c["from"]
        assert parse_qs(urlsplit(page.url).query).get("period", ["hour"]) == [period]
        assert page.locator(f"[data-period={period}]").get_attribute("aria-pressed") == "true"
        # downsampled on the server to about one bucket per pixel of the graph (nice steps: within 2.5x;
        # never finer than the demo's 1 s sampling period)
        step_ms = int(asked[-1]["resolution"][0].removesuffix("ms"))
        width = page.locator(".chart .plot").first.bounding_box()["width"]
        buckets = spans[period] / step_ms
        assert buckets <= width and (step_ms == 1000 or buckets >= width / 2.5), (period, step_ms, width)
    assert spans["hour"] / spans["minute"] == pytest.approx(60, rel=0.01)
    assert spans["day"] / spans["hour"] == pytest.approx(24, rel=0.01)


def test_metric_switch_and_back_button(page, server):
    got = open_page(page, server, "/?period=minute")
    assert not any(label.endswith(" in") for label in got["charts"][0]["layers"])
    page.select_option("select[name=metric]", "network")
    page.wait_for_function(f"window.wattsight.run > {got['run']}")
    net = state(page)
    labels = net["charts"][0]["layers"]
    assert sum(x.endswith(" in") for x in labels) == sum(x.endswith(" out") for x in labels) == len(net["ids"])
    assert "B/s" in page.inner_text("table.legend")
    page.go_back()  # the previous view, from the URL
    page.wait_for_function(f"window.wattsight.run > {net['run']}")
    assert not any(label.endswith(" in") for label in state(page)["charts"][0]["layers"])
    assert page.input_value("select[name=metric]") == "power"


def test_custom_range_is_plotted_and_shared_in_the_url(page, server):
    now = time.time()
    frm, to = int(now - 600), int(now - 60)
    got = open_page(page, server, f"/?period=custom&from={frm}&to={to}")
    c = got["charts"][0]
    assert (c["from"], c["to"]) == (frm * 1000, to * 1000)
    assert page.locator("form.custom").is_visible()
    # typed in the form (local time, to the minute): the same range in the URL
    open_page(page, server, "/")
    page.click("[data-period=custom]")
    local = page.evaluate("(ms) => [ms].map(t => new Date(t - new Date(t).getTimezoneOffset() * 60e3)"
                          ".toISOString().slice(0, 16))[0]", (to - 3600) * 1000)
    page.fill("form.custom input[name=from]", local)
    page.click("form.custom button[type=submit]")
    page.wait_for_function("new URL(location).searchParams.get('period') === 'custom'")
    query = parse_qs(urlsplit(page.url).query)
    assert float(query["from"][0]) == (to - 3600) // 60 * 60, query


def test_selection_lands_in_the_url_and_survives_reload(page, server):
    open_page(page, server, "/select")
    page.fill("input[name=regex]", "node-[12]$")
    page.click("form.filters button[type=submit]")
    page.wait_for_function("window.wattsight.ids && window.wattsight.ids.length === 2")
    assert parse_qs(urlsplit(page.url).query)["regex"] == ["node-[12]$"]
    page.reload()
    got = ready(page)
    assert got["ids"] == ["demo.node-1", "demo.node-2"]
    assert page.input_value("input[name=regex]") == "node-[12]$"

    # untick one probe: the explicit list goes to the URL too
    page.uncheck(".checklist input[value='demo.node-2']")
    page.wait_for_function("window.wattsight.ids.length === 1")
    assert parse_qs(urlsplit(page.url).query)["probes"] == ["demo.node-1"]
    page.reload()
    assert ready(page)["ids"] == ["demo.node-1"]

    # side by side: one graph per probe; stacked: one graph
    page.click("[data-view=side]")
    page.wait_for_function("window.wattsight.ready && new URL(location).searchParams.get('view') === 'side'")
    page.goto(server.url + "/select?site=demo&view=side")
    got = ready(page)
    assert len(got["charts"]) == len(got["ids"]) == len(server.get("/api/v1/probes")["probes"])


def test_search_by_node_and_site(page, server):
    got = open_page(page, server, "/select?node=demo.node-5")
    assert got["ids"] == ["demo.node-5"]
    got = open_page(page, server, "/select?q=node-7")
    assert got["ids"] == ["demo.node-7"]
    got = open_page(page, server, "/?site=nowhere")
    assert got["ids"] == [] and page.locator(".graphs .empty").is_visible()


def test_job_filter_shows_the_jobs_nodes(page, server):
    if not any(p.startswith("/api/v1/jobs") for p in routes(server)):
        pytest.skip("the jobs API (/api/v1/jobs, recordings) is not in this build yet")
    start = time.time() - 120
    r = httpx.post(server.url + "/api/v1/jobs", json={"id": "ui-job-1", "nodes": ["demo.node-3", "demo.node-4"],
                                                       "start": start, "name": "web ui test"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    got = open_page(page, server, "/select")
    page.fill("input[name=job]", "ui-job-1")
    page.click("form.filters button[type=submit]")
    page.wait_for_function("window.wattsight.ids && window.wattsight.ids.length === 2 && window.wattsight.ready")
    got = state(page)
    assert got["ids"] == ["demo.node-3", "demo.node-4"]
    assert parse_qs(urlsplit(page.url).query)["job"] == ["ui-job-1"]
    job = server.get("/api/v1/jobs/ui-job-1")
    assert got["charts"][0]["from"] == pytest.approx(job["start"] * 1000, abs=1)  # the job's range
    assert "ui-job-1" in page.locator(".job").inner_text()
    shot(page, "selection-job")
    # a hand-written link with the job alone shows the job's range too
    got = open_page(page, server, "/?job=ui-job-1")
    assert got["ids"] == ["demo.node-3", "demo.node-4"]
    assert got["charts"][0]["from"] == pytest.approx(job["start"] * 1000, abs=1)


def test_live_samples_extend_the_graph(page, server):
    if "/api/v1/live" not in routes(server):
        pytest.skip("/api/v1/live (webdata) is not in this build yet")
    for path in ("/?period=minute", "/probe/demo.node-1", "/network?period=minute"):
        first = open_page(page, server, path)["lastT"]
        page.wait_for_function(f"window.wattsight.lastT > {first}")
        assert page.locator("#status").inner_text() == "live"


def test_export_downloads_a_zip_of_what_is_on_screen(page, server):
    if "/api/v1/export.zip" not in routes(server):
        pytest.skip("/api/v1/export.zip (webdata) is not in this build yet")
    open_page(page, server, "/select?regex=node-%5B12%5D%24&period=minute")
    href = page.get_attribute("a.export", "href")
    query = parse_qs(urlsplit(href).query)
    assert query["probes"] == ["demo.node-1,demo.node-2"] and query["metric"] == ["power"]
    with page.expect_download() as info:
        page.click("a.export")
    data = info.value.path().read_bytes()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {"data.csv", "data.parquet", "README.txt"} <= set(names), names
    assert any(n.endswith(".png") for n in names), names
    table = zipfile.ZipFile(io.BytesIO(data)).read("data.csv").decode()
    assert "demo.node-1" in table and "demo.node-2" in table and "demo.node-3" not in table


def test_network_export_has_both_directions(page, server):
    if "/api/v1/export.zip" not in routes(server):
        pytest.skip("/api/v1/export.zip (webdata) is not in this build yet")
    open_page(page, server, "/network?period=minute&probes=demo.node-4")
    assert page.locator("a.export").count() == 1  # one button, one archive with both directions
    with page.expect_download() as info:
        page.click("a.export[data-metric=network]")
    archive = zipfile.ZipFile(io.BytesIO(info.value.path().read_bytes()))
    rows = list(csv.DictReader(io.StringIO(archive.read("data.csv").decode())))
    assert {(r["probe"], r["metric"]) for r in rows} == {("demo.node-4", m) for m in ("network_in", "network_out")}
    assert "probe-demo.node-4.png" in archive.namelist()


def test_png_button_downloads_the_graph(page, server):
    open_page(page, server, "/")
    # the server-side PNG of the same view, for wikis and reports
    embed = httpx.get(server.url + page.get_attribute("a.embed", "href"), timeout=30)
    assert embed.status_code == 200 and embed.content[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as info:
        page.locator(".chart .png").first.click()
    assert info.value.suggested_filename.endswith(".png")
    assert info.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_phone_width_has_no_horizontal_overflow(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pg = context.new_page()
    watch = Watch(pg)
    try:
        for name, path in PAGES.items():
            pg.goto(server.url + path)
            ready(pg)
            width, viewport = no_overflow(pg)
            assert width <= viewport, (path, width, viewport)
            if name in ("overview", "probe", "network", "selection"):
                shot(pg, f"phone-{name}")
        watch.assert_clean()
    finally:
        context.close()


def test_dark_scheme_follows_the_system(browser, server):
    with new_page(browser, color_scheme="dark") as pg:
        watch = Watch(pg)
        for scheme in ("dark", "light"):
            pg.emulate_media(color_scheme=scheme)
            pg.goto(server.url + "/?period=minute")
            ready(pg)
            rgb = pg.evaluate("getComputedStyle(document.body).backgroundColor")
            level = sum(int(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]) / 3
            assert (level < 64) if scheme == "dark" else (level > 192), (scheme, rgb)
            if scheme == "dark":
                shot(pg, "overview-dark")
        watch.assert_clean()


def test_tab_reaches_the_controls_with_a_visible_focus(page, server):
    open_page(page, server, "/")
    seen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("""() => { const e = document.activeElement;
            const s = getComputedStyle(e);
            return {tag: e.tagName, text: (e.innerText || e.getAttribute('aria-label') || e.name || '').trim(),
                    cls: e.className || '', period: e.dataset.period || null, outline: s.outlineStyle,
                    width: s.outlineWidth}; }"""))
    periods = {s["period"] for s in seen if s["period"]}
    assert periods >= {"minute", "hour", "day", "week", "month", "year", "custom"}, seen
    assert any(s["tag"] == "SELECT" for s in seen), seen
    assert any("export" in s["cls"] for s in seen), seen
    assert any(s["text"] == "PNG" or "PNG" in s["text"] for s in seen), seen
    assert seen[0]["text"] == "Skip to content"
    # every focused control shows a focus ring (focus-visible after keyboard use)
    bare = [s for s in seen if s["tag"] != "BODY" and (s["outline"] == "none" or s["width"] == "0px")]
    assert not bare, bare
    # a graph takes the focus; arrow keys read its values
    page.focus(".chart .plot")
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    assert "total" in page.inner_text(".chart .readout")
    # the Live button pauses following new samples, in the URL too
    page.click("[data-live]")
    page.wait_for_function("new URL(location).searchParams.get('live') === '0'")
    assert page.get_attribute("[data-live]", "aria-pressed") == "false"
    # Enter on a period button switches the period
    page.focus("[data-period=minute]")
    page.keyboard.press("Enter")
    page.wait_for_function("new URL(location).searchParams.get('period') === 'minute'")
