"""The web UI's empty, error and "API down" states, and where its files come from.

- a server with no probe shows how to add a driver (and the demo), with no console error;
- an unknown probe's page says so and where the list is;
- when the API stops answering, the page says so instead of drawing nothing;
- uPlot is served from the installed uplot-python package; no file of the UI names another host.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import httpx
import pytest
from web_helpers import Watch, configured, launch, new_page, shot

import wattsight.web

pytestmark = pytest.mark.slow

WEB = Path(wattsight.web.__file__).parent
#: The only http(s) text allowed in the UI's files: the SVG namespace (an identifier, never fetched).
ALLOWED = {"http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    """``wattsight run`` with a configuration that has no driver: no probe at all."""
    with configured(tmp_path_factory.mktemp("webui-empty"), "empty",
                    "d2Vic2lnaHQtd2ViLXVpLXRlc3QtYnVzLXNlY3JldC0wMQ==") as ws:
        assert ws.get("/api/v1/probes")["count"] == 0
        yield ws


@pytest.fixture(scope="module")
def browser():
    with launch() as b:
        yield b


@pytest.fixture
def page(browser):
    with new_page(browser) as pg:
        yield pg


def test_no_probes_says_how_to_add_a_driver(page, empty_server):
    watch = Watch(page)
    for path in ("/", "/select", "/network"):
        page.goto(empty_server.url + path)
        page.wait_for_selector(".empty-state")
        text = page.inner_text(".empty-state")
        assert "wattsight config sample" in text and "wattsight run --demo" in text, text
        assert page.get_attribute("#app", "aria-busy") == "false"
    shot(page, "empty")
    watch.assert_clean()


def test_unknown_probe_says_so(page, empty_server):
    watch = Watch(page)
    page.goto(empty_server.url + "/probe/nowhere.nothing")
    page.wait_for_selector(".error-state")
    text = page.inner_text(".error-state")
    assert "nowhere.nothing" in text and "lists every probe" in text, text
    assert not watch.errors
    # the one failed request is the 404 that the page explains
    assert all("/api/v1/probes/nowhere.nothing" in c or "404" in c for c in watch.console), watch.console


def test_api_down_is_reported(page, empty_server):
    page.goto(empty_server.url + "/")
    page.wait_for_selector(".empty-state")
    # from now on the API does not answer (as when `wattsight run` has stopped)
    page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    page.reload()
    page.wait_for_selector("#banner:not([hidden])")
    assert "does not answer" in page.inner_text("#banner")
    assert "wattsight run" in page.inner_text(".error-state")
    page.focus("[data-retry]")  # a way out, reachable by keyboard
    shot(page, "api-down")


def test_ui_files_name_no_other_host():
    texts = [p for p in (WEB / "static").rglob("*") if p.is_file()] + list((WEB / "templates").rglob("*.html"))
    assert texts
    for path in texts:
        found = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", path.read_text(errors="replace")))
        assert found <= ALLOWED, (path, found - ALLOWED)
    assert not list((WEB / "static").rglob("uPlot*")), "uPlot must come from the uplot-python package, not a copy"


def test_uplot_is_served_from_the_installed_package(empty_server):
    for name, kind in (("uPlot.iife.js", "javascript"), ("uPlot.min.css", "css")):
        r = httpx.get(f"{empty_server.url}/static/vendor/{name}", timeout=30)
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert r.content == (importlib.resources.files("uplot.static") / name).read_bytes()
    assert httpx.get(f"{empty_server.url}/static/vendor/other.js", timeout=30).status_code == 404
    assert httpx.get(f"{empty_server.url}/static/..%2F..%2Fpages.py", timeout=30).status_code == 404
    page = httpx.get(empty_server.url + "/", timeout=30)
    assert page.status_code == 200 and 'type="module"' in page.text


def test_docs_list_every_url_parameter_and_show_existing_screenshots():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "web-ui.md").read_text()
    state_js = (WEB / "static" / "js" / "state.js").read_text()
    defaults = re.search(r"const DEFAULTS = \{(.*?)\};", state_js, re.DOTALL).group(1)
    keys = set(re.findall(r"(\w+):", defaults))
    table = doc.split("## Sharing a view")[1].split("\n\n")[2]
    documented = {k for row in table.splitlines()[2:] for k in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == keys, (documented ^ keys)
    images = re.findall(r"\]\((img/[^)]+)\)", doc)
    assert images
    for image in images:  # copied from the screenshots the browser tests take
        assert (Path(__file__).resolve().parents[1] / "docs" / image).exists(), image


def test_browser_counter_rates_follow_the_servers_rule(page, empty_server):
    """The page's rates (series.js) count a wrap or a reset exactly as energy.wrap_deltas does."""
    from wattsight.energy import wrap_deltas

    page.goto(empty_server.url + "/")
    page.wait_for_selector(".empty-state")
    readings = [90.0, 98.0, 5.0, 40.0]
    got = page.evaluate("""async (readings) => {
      const { Buckets, grid } = await import('/static/js/series.js');
      const rates = (wrap) => {
        const b = new Buckets(1000);
        b.wrap = wrap;
        readings.forEach((v, i) => b.add(i * 1000, v));
        return b.rateOn(grid(0, (readings.length - 1) * 1000, 1000));
      };
      return { wrapped: rates(100), reset: rates(null) };
    }""", readings)
    assert got["wrapped"] == [None, *wrap_deltas(readings, 100.0).tolist()]
    assert got["reset"] == [None, *wrap_deltas(readings).tolist()]


def test_browser_step_is_the_smallest_nice_one_within_the_pixels(page, empty_server):
    page.goto(empty_server.url + "/")
    page.wait_for_selector(".empty-state")
    got = page.evaluate("""async () => {
      const { chooseStep, NICE_STEPS } = await import('/static/js/series.js');
      const cases = [[60e3, 1200], [3600e3, 1200], [86400e3, 1000], [365 * 86400e3, 390]];
      return { nice: NICE_STEPS, steps: cases.map(([span, px]) => [span, px, chooseStep(span, px)]) };
    }""")
    for span, px, step in got["steps"]:
        assert span / step <= px  # at most one bucket per pixel...
        smaller = [s for s in got["nice"] if s < step]
        assert not smaller or span / smaller[-1] > px  # ...and the next finer step would give more
