"""``[store.postgresql]``: where and how the PostgreSQL store writes (pydantic only, no psycopg).

Kept apart from the store so that the configuration can be validated on a host without psycopg.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")

SAMPLE = """\
[store]
backend = "postgresql"

[store.postgresql]
# libpq connection string or URI; keep the password out of it (~/.pgpass, PGPASSWORD or password_file)
dsn = "postgresql://wattsight@db.example.org/metrics"
schema = "wattsight"        # one schema per store: several stores can share one database
ack = "commit"              # "commit": handle() returns once the batch is committed; "queued": once queued
partition = "month"         # native range partitions (or TimescaleDB chunks) of one "day" or "month"
rollups = true              # 1 min / 1 h / 1 day min/avg/max/last/count tables
"""


class PgStoreConfig(BaseModel):
    """[store.postgresql]: the PostgreSQL store (see docs/consumers/postgresql.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    dsn: str = Field("postgresql://localhost/wattsight",
                     description="libpq connection string or URI of the database (no password in it: "
                                 "use ~/.pgpass, PGPASSWORD or password_file)")
    password_file: Annotated[Path, Strict(False)] | None = Field(
        None, description="a file holding the database password (mode 0600)")
    schema_name: str = Field("wattsight", alias="schema",
                         description="the PostgreSQL schema of this store's tables and views (created if "
                                     "missing); give each store sharing a database its own")
    ack: Literal["commit", "queued"] = Field(
        "commit", description="'commit': handle() returns once the batch is committed in PostgreSQL; "
                              "'queued': once it is in the writer's bounded backlog (faster, but a crash "
                              "of the process loses the backlog)")
    batch_rows: int = Field(500_000, ge=1_000,
                            description="the most samples written in one transaction ('queued' mode "
                                        "gathers queued batches up to this)")
    backlog_rows: int = Field(4_000_000, ge=1_000,
                              description="'queued' mode: handle() waits when this many samples are "
                                          "waiting to be written")
    partition: Literal["day", "month"] = Field(
        "month", description="the time span of one partition of the samples table (UTC); 'day' above "
                             "~100 M samples a day")
    rollups: bool = Field(True, description="keep 1 min, 1 h and 1 day rollup tables up to date")
    timescaledb: Literal["auto", "off"] = Field(
        "auto", description="'auto': use TimescaleDB (hypertable, compression, continuous aggregates) "
                            "when the extension is available; 'off': native partitions and rollup tables")
    compress_after_days: int = Field(7, ge=1, description="TimescaleDB only: compress chunks older than this")
    write_timeout: float = Field(30.0, gt=0,
                                 description="seconds handle() keeps retrying a lost connection ('commit') "
                                             "or waits for room in the backlog ('queued') before it raises")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for a connection to the server")

    @field_validator("schema_name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not _IDENT.fullmatch(v):
            raise ValueError(f"{v!r} is not a plain schema name (lower-case letters, digits and '_', "
                             "not starting with a digit, at most 63 characters)")
        return v
