"""The store contract (tests/store_contract.py) on every backend: the embedded store and PostgreSQL."""

from __future__ import annotations

import pytest
from store_contract import CHECKS, EmbeddedBackend, PgBackend


@pytest.fixture(params=["embedded", "postgresql"])
def backend(request, tmp_path):
    made = EmbeddedBackend(tmp_path / "store") if request.param == "embedded" else PgBackend()
    yield made
    made.cleanup()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_contract(backend, check):
    check(backend)
