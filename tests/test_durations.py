"""One duration parser (wattsight.durations) for the retention rules and the API, each with its units."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from wattsight.consumers.api.params import parse_duration_ms
from wattsight.consumers.store.retention import RetentionConfig, duration_ms
from wattsight.errors import QueryError

DAY = 86_400_000


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("10s", 10_000), ("1m", 60_000), ("1.5h", 5_400_000),
                                          (" 90d ", 90 * DAY), ("2w", 14 * DAY), ("1.5 d", 1.5 * DAY)])
def test_retention_and_api_read_a_duration_alike(text, ms):
    assert duration_ms(text) == parse_duration_ms(text) == ms


@pytest.mark.parametrize(("text", "ms"), [("2y", 730 * DAY), ("1min", 60_000), ("forever", None),
                                          (" Forever ", None), ("inf", None), ("never", None)])
def test_retention_also_takes_years_minutes_and_forever(text, ms):
    assert duration_ms(text) == ms
    with pytest.raises(QueryError, match="is not a duration: use a number and a unit among ms, s, m, h, d, w"):
        parse_duration_ms(text)  # a year is no query step; `forever` no range


@pytest.mark.parametrize("text", ["7x", "", "-5d", "d", "1e3s", "5 days", "2Y"])
def test_what_neither_takes_is_refused_by_both(text):
    with pytest.raises(ValueError, match=r"not a duration such as .* \(units: ms, s, m or min, h, d, w, y\)"):
        duration_ms(text)
    with pytest.raises(QueryError, match="is not a duration"):
        parse_duration_ms(text)
    with pytest.raises(ValidationError, match="not a duration"):
        RetentionConfig.model_validate({"raw": {"power": text}})


def test_zero_is_refused_by_both():
    with pytest.raises(ValueError, match="must be positive"):
        duration_ms("0d")
    with pytest.raises(QueryError, match="not a positive duration"):
        parse_duration_ms("0s")


def test_the_store_reads_durations_without_loading_the_api():
    code = "import sys, wattsight.consumers.store.retention; assert 'fastapi' not in sys.modules, 'fastapi'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
