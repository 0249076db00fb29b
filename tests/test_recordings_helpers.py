"""The real API app over a real store (test_api_helpers) with a real recordings database.

Imported by the recordings and jobs tests (it holds no test itself).  ``lyon.ramp`` draws
``100 + 100 * s / 3600`` W at ``s`` seconds after T0, so the exact energy of any range is
:func:`ramp_joules`; the clock is fixed at T_END unless a test moves it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_api_helpers
from fastapi.testclient import TestClient
from test_api_helpers import CONFIG, T0, T_END, topology

from wattsight.config.models import RecorderConfig
from wattsight.consumers.api import ApiContext, create_app
from wattsight.recordings.db import RecordingsDB
from wattsight.recordings.service import Recorder

store = test_api_helpers.store  # the fixture: a real store of one stored hour, closed after the test
TOKEN = "s3cr3t-t0ken-for-tests"
S0 = T0 / 1000  # epoch seconds of the store's first sample


def ramp_joules(a_s: float, b_s: float) -> float:
    """The exact energy of lyon.ramp between two epoch-second times inside the stored hour."""
    a, b = a_s - S0, b_s - S0
    return 100.0 * (b - a) + 100.0 / 3600 * (b * b - a * a) / 2


class Clock:
    """A settable clock (int ms), the app's ``ctx.clock``."""

    def __init__(self, ms: int = T_END) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def make_client(store, db_path: Path, *, clock=None, **recorder) -> TestClient:
    """The app over ``store`` with a recorder on ``db_path``; ``recorder``: [recorder] keys."""
    cfg = RecorderConfig.model_validate(recorder)
    rec = Recorder(RecordingsDB(db_path), cfg, cfg.read_token())
    ctx = ApiContext(store=store, topology=topology(), config=CONFIG, clock=clock or Clock(), recorder=rec)
    return TestClient(create_app(ctx))


def detail(r, status: int) -> str:
    """The detail of an error answer, after checking its status and shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    return body["detail"]


@pytest.fixture
def client(store, tmp_path):
    """Writes open (no token configured), clock at T_END."""
    return make_client(store, tmp_path / "recordings.sqlite")


@pytest.fixture
def auth_client(store, tmp_path):
    """Writes need TOKEN; reads open."""
    return make_client(store, tmp_path / "recordings.sqlite", token=TOKEN)


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}
