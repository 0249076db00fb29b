"""The overview with 1,000 probes: what the browser asks of the server stays bounded.

A real ``wattsight run -c`` with a dummy driver of 1,000 probes.  The page must ask for about one
bucket per pixel for the top probes and fold the rest into "others" within a fixed budget of
points, whatever the range: counted on the requests it makes, not timed.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from web_helpers import Watch, configured, launch, new_page, ready, wait_samples

pytestmark = pytest.mark.slow

PROBES = 1000
#: The page's budget (dashboard.js POINTS) and its default number of probes with their own colour.
BUDGET, TOP = 200_000, 8
SPANS = {"hour": 3600, "day": 86400, "week": 7 * 86400}


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    with configured(tmp_path_factory.mktemp("webui-big"), "big", "d2Vic2lnaHQtd2ViLXVpLXRlc3QtYnVzLXNlY3JldC0wMw==", f"""\
[drivers.rack]
type = "dummy"
period = 1.0
count = {PROBES}
metrics = ["power"]
pattern = "square"
min = 90.0
max = 260.0
""") as ws:
        wait_samples(ws, 3)
        yield ws


def test_a_thousand_probes_stay_within_the_points_budget(big):
    with launch() as browser, new_page(browser) as page:
        watch = Watch(page)
        for period, span in SPANS.items():
            asked = []
            page.on("request", lambda r, asked=asked: "/api/v1/series" in r.url and asked.append(r.url))
            page.goto(f"{big.url}/?period={period}")
            got = ready(page)
            width = page.locator(".chart .plot").first.bounding_box()["width"]
            points, probes = 0, set()
            for u in asked:
                q = parse_qs(urlsplit(u).query)
                ids = q["probes"][0].split(",")
                probes |= set(ids)
                points += len(ids) * span * 1000 / int(q["resolution"][0].removesuffix("ms"))
            assert len(probes) == PROBES, period  # every probe is in the graph...
            assert points <= BUDGET + TOP * width, (period, points)  # ...within the budget
            layers = got["charts"][0]["layers"]
            assert len(layers) == TOP + 1 and f"others ({PROBES - TOP})" in layers, layers
            assert page.locator("table.legend tbody tr").count() == PROBES
        watch.assert_clean()
