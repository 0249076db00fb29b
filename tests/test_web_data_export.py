"""GET /api/v1/export.zip over a real store of known data: files, columns, values, readers."""

from __future__ import annotations

import io
import zipfile

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest
from PIL import Image
from test_api_helpers import FROM_S, T0, TO_S, client, client_for, open_store, store  # noqa: F401  (fixtures)

from wattsight.web import export

RANGE = f"from={FROM_S}&to={TO_S}"


def archive(client_, query: str) -> zipfile.ZipFile:
    r = client_.get(f"/api/v1/export.zip?{RANGE}&{query}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith('attachment; filename="wattsight-')
    return zipfile.ZipFile(io.BytesIO(r.content))


def frames(z: zipfile.ZipFile, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    csv = pd.read_csv(io.BytesIO(z.read("data.csv")))
    path = tmp_path / "data.parquet"
    path.write_bytes(z.read("data.parquet"))
    return csv, pd.read_parquet(path)


def test_export_holds_data_graphs_and_readme(client, tmp_path):
    z = archive(client, "probes=ramp,lyon.const&resolution=1m")
    assert sorted(z.namelist()) == ["README.txt", "data.csv", "data.parquet", "probe-lyon.const.png",
                                    "probe-lyon.ramp.png", "summary.png"]
    for name in ("summary.png", "probe-lyon.ramp.png"):
        img = Image.open(io.BytesIO(z.read(name)))
        assert img.size == export.PNG_SIZE
    readme = z.read("README.txt").decode()
    assert "probes=ramp,lyon.const" in readme and "buckets of 60 s" in readme
    for column in ("t_ms", "probe", "samples", "min, avg, max, last", "rate"):
        assert column in readme


def test_bucket_rows_equal_the_known_data(client, tmp_path):
    csv, _ = frames(archive(client, "probes=ramp&resolution=1m"), tmp_path)
    assert list(csv.columns) == ["time", "t_ms", "probe", "metric", "unit", "samples", "min", "avg", "max",
                                 "last", "rate"]
    first = T0 - T0 % 60_000
    assert csv["t_ms"].iloc[0] == first and (np.diff(csv["t_ms"]) == 60_000).all()
    s = np.arange(0, 3600)  # buckets take [from, to): the sample at T_END is not in them (as /series)
    v = 100 + 100 * s / 3600
    b = (T0 + s * 1000 - first) // 60_000
    for i, row in csv.iterrows():
        inside = v[b == i]
        assert row["samples"] == len(inside) and row["avg"] == pytest.approx(inside.mean(), rel=1e-12)
        assert (row["min"], row["max"], row["last"]) == (inside.min(), inside.max(), inside[-1])
    assert csv["samples"].sum() == 3600 and csv["rate"].isna().all()  # a gauge has no rate
    assert pd.to_datetime(csv["time"]).iloc[0] == pd.Timestamp(first, unit="ms", tz="UTC")


def test_counter_rates_and_raw_samples(client, tmp_path):
    csv, _ = frames(archive(client, "metric=network_in&resolution=raw"), tmp_path)
    assert list(csv.columns) == ["time", "t_ms", "probe", "metric", "unit", "value", "rate"]
    assert len(csv) == 3601 and set(csv["unit"]) == {"B"}  # raw samples: [from, to], as /series
    assert np.isnan(csv["rate"].iloc[0]) and np.allclose(csv["rate"].iloc[1:], 1000.0)
    assert csv["value"].iloc[-1] == pytest.approx(1e9 + 1000.0 * 3600)


def test_parquet_reads_the_same_in_pandas_polars_and_duckdb(client, tmp_path):
    z = archive(client, "resolution=auto")
    csv, pq = frames(z, tmp_path)
    path = str(tmp_path / "data.parquet")
    assert len(csv) == len(pq) > 0 and list(pq.columns) == list(csv.columns)
    assert str(pq["time"].dtype) == "datetime64[ms, UTC]"
    assert (pq["time"] == pd.to_datetime(csv["time"])).all()
    pd.testing.assert_frame_equal(csv.drop(columns="time"), pq.drop(columns="time"), check_dtype=False)
    polar = pl.read_parquet(path)
    assert polar.height == len(csv)
    assert polar["avg"].to_list() == pytest.approx(csv["avg"].tolist(), nan_ok=True)
    got = duckdb.sql(f"select probe, count(*) as n, sum(samples) as s from '{path}' "
                     "group by probe order by probe")
    expect = csv.groupby("probe").agg(n=("t_ms", "size"), s=("samples", "sum")).reset_index()
    assert got.fetchall() == [tuple(r) for r in expect.itertuples(index=False)]


def test_export_refuses_too_many_rows(client, monkeypatch):
    monkeypatch.setattr(export, "MAX_ROWS", 1000)
    r = client.get(f"/api/v1/export.zip?{RANGE}&probes=ramp&resolution=raw")
    assert r.status_code == 422 and "resolution=auto" in r.json()["detail"]
    z = archive(client, "probes=ramp&resolution=auto")  # auto keeps within the limit
    assert len(pd.read_csv(io.BytesIO(z.read("data.csv")))) <= 1000


def test_export_caps_the_probe_graphs(client, monkeypatch):
    monkeypatch.setattr(export, "MAX_PNGS", 2)
    z = archive(client, "")
    assert sum(n.startswith("probe-") for n in z.namelist()) == 2
    assert "2 more not drawn" in z.read("README.txt").decode()


def test_network_export_holds_both_directions_and_mirror_graphs(client, tmp_path):
    z = archive(client, "metric=network&resolution=1m")
    assert sorted(z.namelist()) == ["README.txt", "data.csv", "data.parquet", "probe-lyon.sw1.png", "summary.png"]
    csv, pq = frames(z, tmp_path)
    assert sorted(set(csv["metric"])) == ["network_in", "network_out"] and set(csv["probe"]) == {"lyon.sw1"}
    assert len(pq) == len(csv)
    rate = csv.dropna(subset=["rate"]).groupby("metric")["rate"].median()
    assert rate["network_in"] == pytest.approx(1000.0) and rate["network_out"] == pytest.approx(500.0)
    alone = {m: frames(archive(client, f"metric={m}&resolution=1m"), tmp_path)[0] for m in ("network_in", "network_out")}
    for m, one in alone.items():  # the same rows as each direction exported alone
        both = csv[csv["metric"] == m].reset_index(drop=True)
        pd.testing.assert_frame_equal(both, one.reset_index(drop=True))
    for name in ("summary.png", "probe-lyon.sw1.png"):
        assert Image.open(io.BytesIO(z.read(name))).size == export.PNG_SIZE
    assert "network_in and network_out" in z.read("README.txt").decode()
