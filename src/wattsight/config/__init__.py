"""Load and validate the TOML file; errors name file:line and key.

The package, by concern: :mod:`.models` (the sections and :class:`Config`), :mod:`.locate`
(TOML key -> line), :mod:`.explain` (pydantic errors in plain words), :mod:`.load`
(:func:`load`, :func:`loads`, :func:`default`) and :mod:`.sample` (the commented sample file).
Everything public is re-exported here: ``from wattsight.config import load`` and
``config.load(...)`` are the ways to use it.
"""

from __future__ import annotations

from .explain import Issue
from .load import DEMO_RACK, default, ensure_key, load, loads
from .locate import key_lines, locate
from .models import (ENDPOINT_FORMS, KEY_HINT, ApiConfig, BusConfig, Config, ProbeConfig, StoreConfig,
                     check_endpoint, runtime_dir, user_data_dir)
from .sample import sample_text

__all__ = [
    "ApiConfig", "BusConfig", "Config", "DEMO_RACK", "ENDPOINT_FORMS", "Issue", "KEY_HINT", "ProbeConfig",
    "SAMPLE", "StoreConfig", "check_endpoint", "default", "ensure_key", "key_lines", "load", "loads",
    "locate", "runtime_dir", "sample_text", "user_data_dir",
]


def __getattr__(name: str):
    # SAMPLE is built on first use: it asks every installed driver for its own sample section.
    if name == "SAMPLE":
        return sample_text()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
