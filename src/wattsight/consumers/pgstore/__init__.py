"""The PostgreSQL store: the embedded store's interface over a schema of a PostgreSQL database.

``PgStore`` (store.py) writes and reads; ``PgStoreConfig`` (config.py) is its ``[store.postgresql]``
section.  Both are imported from here; ``PgStore`` only when first asked for, so that the
configuration models can import ``PgStoreConfig`` without pulling in psycopg or the store (and
without an import cycle through ``wattsight.config``).  docs/consumers/postgresql.md tells the
whole story.
"""

from __future__ import annotations

from .config import PgStoreConfig

__all__ = ["PgStore", "PgStoreConfig", "SeriesInfo"]


def __getattr__(name: str):
    if name in ("PgStore", "SeriesInfo"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
