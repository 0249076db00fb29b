"""Export and import on real stores and real files: round trips, readers, idempotence, Kwapi dumps."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from wattsight import cli
from wattsight.config import StoreConfig
from wattsight.consumers.store import Store
from wattsight.sample import Batch, Series, wrapping_counter
from wattsight.transfer import export as export_mod
from wattsight.transfer import tables

h5py = pytest.importorskip("h5py")

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
ALL = (0, 2**62)
DOC = Path(__file__).resolve().parents[1] / "docs" / "export-import.md"
DATA = Path(__file__).parent / "data" / "transfer"
POWER7 = Series("lyon.taurus-7", "power", "W")
POWER8 = Series("lyon.taurus-8", "power", "W", provenance="modelled")
ENERGY7 = Series("lyon.taurus-7", "energy", "J", wrapping_counter(2**32))
NET = Series("lyon.gw-1", "network_in", "B", "counter")
KEY = "0123456789abcdef0123456789abcdef"


def ws(*argv: str) -> int:
    """``wattsight`` with these arguments."""
    return cli.main([str(a) for a in argv])


def fill(path: Path, n: int = 3000) -> dict:
    """A store with a gauge at 0.1 W, a wrapping energy counter, a byte counter, a modelled probe and
    a NaN; part in a segment, part in the log.  Returns {series: (t, v)} as written."""
    rng = np.random.default_rng(7)
    t = T0 + np.arange(n, dtype=np.int64) * 1000
    data = {POWER7: np.round(rng.uniform(90, 250, n), 1), POWER8: np.round(rng.uniform(50, 60, n), 1),
            ENERGY7: (np.arange(n) * 170.0 + 2**32 - 100_000) % 2**32, NET: np.cumsum(rng.integers(0, 9000, n)) * 1.0}
    data[POWER8][5] = np.nan
    with Store(StoreConfig(path=path, flush_interval=3600)) as store:
        half = n // 2
        for lo, hi in ((0, half), (half, n)):
            store.handle(Batch.concat([Batch.of_series(s, t[lo:hi], v[lo:hi]) for s, v in data.items()]))
            if lo == 0:
                store.flush()
    return {s: (t, v) for s, v in data.items()}


def contents(path: Path) -> dict:
    with Store(StoreConfig(path=path, flush_interval=3600)) as store:
        infos = store.series()
        got = store.read([i.series.key for i in infos], *ALL)
        return {i.series: got[i.series.key] for i in infos}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[s][0], b[s][0]) and np.array_equal(np.asarray(a[s][1]).view(np.int64),
                                                            np.asarray(b[s][1]).view(np.int64)) for s in a)


@pytest.fixture
def source(tmp_path) -> tuple[Path, dict]:
    return tmp_path / "src", fill(tmp_path / "src")


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "WATTSIGHT_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("suffix", ["parquet", "csv", "h5"])
def test_store_to_file_to_a_new_store_gives_identical_samples(source, tmp_path, suffix):
    src, written = source
    out = tmp_path / f"all.{suffix}"
    assert ws("export", "--all", "--store", src, "-o", out) == 0
    assert ws("import", out, "--store", tmp_path / "dst") == 0
    got = contents(tmp_path / "dst")
    assert same(got, contents(src))
    assert same(got, written)  # the NaN and the wrapping counter's kind included
    assert {s.kind for s in got} == {"gauge", "counter", "counter:4294967296"}


def test_parquet_reads_straight_in_pandas_polars_and_duckdb(source, tmp_path):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    src, written = source
    out = tmp_path / "all.parquet"
    assert ws("export", "--all", "--store", src, "-o", out) == 0
    n = sum(len(t) for t, _ in written.values())
    expect = float(np.nansum(written[POWER7][1]))

    df = pd.read_parquet(out)
    assert list(df.columns) == list(tables.COLUMNS) and len(df) == n
    assert str(df["measured_at"].dtype) == "datetime64[ms, UTC]" and df["probe"].dtype == "category"
    assert df["measured_at"].iloc[0] == pd.Timestamp("2024-05-01T00:00:00Z")
    assert df[df.probe == "lyon.taurus-7"].query("metric == 'power'")["value"].sum() == pytest.approx(expect)

    pf = pl.read_parquet(out)
    assert pf.height == n and str(pf.schema["measured_at"]) == "Datetime(time_unit='ms', time_zone='UTC')"
    total = pf.filter((pl.col("probe") == "lyon.taurus-7") & (pl.col("metric") == "power"))["value"].sum()
    assert total == pytest.approx(expect)

    rows = duckdb.sql(f"SELECT kind, count(*), epoch_ms(min(measured_at)), any_value(typeof(measured_at)) "
                      f"FROM '{out}' WHERE probe = 'lyon.taurus-7' GROUP BY kind ORDER BY kind").fetchall()
    assert rows == [("counter:4294967296", 3000, T0, "TIMESTAMP WITH TIME ZONE"),
                    ("gauge", 3000, T0, "TIMESTAMP WITH TIME ZONE")]


def test_importing_the_same_file_twice_changes_nothing(source, tmp_path, capfd):
    src, _ = source
    out = tmp_path / "all.parquet"
    ws("export", "--all", "--store", src, "-o", out)
    assert ws("import", out, "--store", tmp_path / "dst") == 0
    first = contents(tmp_path / "dst")
    with Store(StoreConfig(path=tmp_path / "dst")) as store:
        stored = store.stats()["samples_total"]
    capfd.readouterr()
    assert ws("import", out, "--store", tmp_path / "dst") == 0
    err = capfd.readouterr().err
    assert "12,000 samples read, 0 imported, 12,000 duplicates skipped" in err and "12,000 already stored" in err
    assert same(contents(tmp_path / "dst"), first)
    with Store(StoreConfig(path=tmp_path / "dst")) as store:
        assert store.stats()["samples_total"] == stored  # nothing written again, not even collapsed copies


def test_duplicates_within_a_file_collapse_to_the_first_and_conflicts_are_counted(tmp_path, capfd):
    csv = tmp_path / "dups.csv"
    csv.write_text("probe,metric,unit,kind,provenance,measured_at,value\n"
                   "lyon.a,power,W,gauge,measured,2024-05-01T00:00:00.000Z,10.5\n"
                   "lyon.a,power,W,gauge,measured,2024-05-01T00:00:01.000Z,11\n"
                   "lyon.a,power,W,gauge,measured,2024-05-01T00:00:00.000Z,99\n")
    assert ws("import", csv, "--store", tmp_path / "dst") == 0
    assert "3 samples read, 2 imported, 1 duplicates skipped (1 within the file" in capfd.readouterr().err
    csv.write_text("probe,metric,measured_at,value\nlyon.a,power,2024-05-01T00:00:01Z,12\n"
                   "lyon.a,power,2024-05-01T00:00:02+02:00,13\n")  # unit and kind from the metric
    assert ws("import", csv, "--store", tmp_path / "dst") == 0
    assert "1 already stored, 1 of them with another value" in capfd.readouterr().err
    (t, v), = contents(tmp_path / "dst").values()
    assert v.tolist() == [13.0, 10.5, 11.0] and t[0] == T0 - 2 * 3600_000 + 2000


def test_selection_and_range_are_honoured(source, tmp_path):
    src, written = source
    out = tmp_path / "sel.csv"
    assert ws("export", "--probes", "lyon.taurus-*", "--metrics", "power", "--from", "2024-05-01T00:10:00Z",
              "--to", "2024-05-01T00:20:00Z", "--store", src, "-o", out) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(tables.COLUMNS) and len(lines) == 1 + 2 * 600  # [from, to): 600 s each
    assert lines[1] == f"lyon.taurus-7,power,W,gauge,measured,2024-05-01T00:10:00.000Z,{float(written[POWER7][1][600])!r}"
    assert lines[-1].startswith("lyon.taurus-8,power,W,gauge,modelled,2024-05-01T00:19:59.000Z,")


def test_export_is_read_in_bounded_chunks(source, tmp_path, monkeypatch):
    src, _ = source
    monkeypatch.setattr(tables, "CHUNK", 1000)
    out = tmp_path / "small.parquet"
    assert ws("export", "--all", "--store", src, "-o", out) == 0
    import pyarrow.parquet as pq

    assert pq.ParquetFile(out).metadata.num_row_groups == 12  # 4 series of 3000 samples, 1000 a read
    ws("import", out, "--store", tmp_path / "dst")
    assert same(contents(tmp_path / "dst"), contents(src))
    chosen = export_mod.select(_snap(src).series(), None, None, True)
    tasks = export_mod.plan(chosen, 0, 2**62, 4500)
    assert max(t.rows for t in tasks) <= 4500 and sum(t.rows for t in tasks) == 12000


def _snap(path):
    from wattsight.transfer.stores import Snapshot

    return Snapshot(path)


HOLDER = """
import sys, time, numpy as np
from wattsight.config import StoreConfig
from wattsight.consumers.store import Store
from wattsight.sample import Batch, Series
store = Store(StoreConfig(path=sys.argv[1], flush_interval=3600))
store.handle(Batch.of_series(Series("lyon.live", "power", "W"), {t0} + np.arange(50) * 1000, np.arange(50.0)))
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_export_reads_a_store_a_running_process_holds_and_import_refuses_it(source, tmp_path, capfd):
    src, _ = source
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(t0=T0), str(src)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        out = tmp_path / "live.parquet"
        assert ws("export", "--probes", "lyon.live,lyon.taurus-7", "--store", src, "-o", out) == 0
        import pyarrow.parquet as pq

        table = pq.read_table(out).to_pandas()
        assert len(table[table.probe == "lyon.live"]) == 50  # only in the holder's write-ahead log
        assert len(table) == 50 + 2 * 3000
        capfd.readouterr()
        assert ws("import", out, "--store", src) == 1
        assert "open in another process" in capfd.readouterr().err
    finally:
        proc.communicate("", timeout=30)
    assert proc.returncode == 0


def test_no_progress_bar_unless_a_terminal(source, tmp_path, capfd, monkeypatch):
    src, _ = source
    ws("export", "--all", "--store", src, "-o", tmp_path / "a.csv")
    err = capfd.readouterr().err
    assert "━" not in err and "wattsight: exported 12,000 samples of 4 series" in err
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    ws("export", "--all", "--store", src, "-o", tmp_path / "b.csv")
    assert "━" in capfd.readouterr().err  # the same run on a terminal draws it
    ws("export", "--all", "--store", src, "-o", tmp_path / "c.csv", "--quiet")
    assert capfd.readouterr().err == ""


# -- kwapi-g5k HDF5 ------------------------------------------------------------------------
def write_kwapi_hdf5(path: Path, tables_: dict[str, tuple], links: dict[str, str]) -> None:
    """A file laid out exactly as kwapi-g5k's HDF5_Collector.write_hdf5 wrote it (PyTables):
    group /<site> (TITLE "cluster"), table /<site>/<host: '.'->'__', '-'->'_'> (TITLE "probe") of
    rows (timestamp Float64Col, measure Int64Col), and hard links for the probe's other names.
    Source: openstack-archive/kwapi, kwapi/plugins/hdf5/hdf5_collector.py (commit 0393073b)."""
    row = np.dtype([("timestamp", "<f8"), ("measure", "<i8")])
    with h5py.File(path, "w") as f:
        f.attrs.update(CLASS=np.bytes_("GROUP"), TITLE=np.bytes_("Fine grained measures"), VERSION=np.bytes_("1.0"),
                       PYTABLES_FORMAT_VERSION=np.bytes_("2.1"))
        for node, (ts, ms) in tables_.items():
            site, name = node.strip("/").split("/")
            g = f.require_group(site)
            g.attrs.update(CLASS=np.bytes_("GROUP"), TITLE=np.bytes_("cluster"), VERSION=np.bytes_("1.0"))
            ds = g.create_dataset(name, data=np.array(list(zip(ts, ms)), row), maxshape=(None,), chunks=True)
            ds.attrs.update(CLASS=np.bytes_("TABLE"), TITLE=np.bytes_("probe"), VERSION=np.bytes_("2.7"),
                            FIELD_0_NAME=np.bytes_("measure"), FIELD_1_NAME=np.bytes_("timestamp"), NROWS=len(ts))
        for link, target in links.items():
            f[link] = f[target]


def test_kwapi_g5k_hdf5_dump_is_imported(tmp_path, capfd):
    ts = 1_451_606_400 + np.arange(100) + 0.25  # 2016-01-01, as kwapi stamped them: float seconds
    write_kwapi_hdf5(tmp_path / "2016_01_01_power_store.h5",
                     {"/lyon/taurus_7": (ts, np.arange(100) + 150), "/nancy/graphene_12__psu_1": (ts[:10], [80] * 10)},
                     {"/lyon/orion_1": "/lyon/taurus_7"})
    write_kwapi_hdf5(tmp_path / "2016_01_01_network_in_store.h5", {"/lyon/gw__port_3": (ts, np.arange(100) * 1500)}, {})
    assert ws("import", tmp_path / "2016_01_01_power_store.h5", tmp_path / "2016_01_01_network_in_store.h5",
              "--store", tmp_path / "dst") == 0
    err = capfd.readouterr().err
    assert "(kwapi-hdf5)" in err and "lyon.orion-1 also named lyon.taurus-7" in err
    got = contents(tmp_path / "dst")
    probe = Series("lyon.orion-1", "power", "W", "gauge", "measured")  # the first name of the linked table
    assert got.keys() == {probe, Series("nancy.graphene-12.psu-1", "power", "W"),
                          Series("lyon.gw.port-3", "network_in", "B", "counter")}
    assert got[probe][0].tolist() == (np.round(ts * 1000)).astype(np.int64).tolist()
    assert got[probe][1].tolist() == list(range(150, 250))
    assert ws("import", tmp_path / "2016_01_01_power_store.h5", "--store", tmp_path / "dst") == 0
    assert "0 imported, 110 duplicates skipped" in capfd.readouterr().err


# -- Kwapi RRD -----------------------------------------------------------------------------
RRA = [(1, 300), (10, 360), (900, 96), (7200, 84), (21600, 124), (604800, 52)]  # kwapi/plugins/rrd/rrd.py scales


def make_kwapi_rrd(path: Path, start: int, values: list[int]) -> None:
    """An RRD as Kwapi's rrd plugin created and fed it: step 1, DS:w:GAUGE:600:0:U, six AVERAGE
    archives, then one update per second '<int t>:<int W>' (update_rrd)."""
    subprocess.run(["rrdtool", "create", str(path), "--start", str(start - 1), "--step", "1", "DS:w:GAUGE:600:0:U",
                    *[f"RRA:AVERAGE:0.5:{res}:{rows}" for res, rows in RRA]], check=True)
    updates = [f"{start + i}:{w}" for i, w in enumerate(values)]
    for lo in range(0, len(updates), 2000):
        subprocess.run(["rrdtool", "update", str(path), *updates[lo:lo + 2000]], check=True)


@pytest.mark.skipif(shutil.which("rrdtool") is None, reason="rrdtool is not installed (apt install rrdtool)")
def test_kwapi_rrd_is_imported_as_what_rrd_kept(tmp_path, capfd):
    start = 1_451_606_400  # on a 15 min boundary
    values = [100 + (i % 60) for i in range(3600)]  # one hour at 1 Hz
    folder = tmp_path / "rrd"
    folder.mkdir()
    make_kwapi_rrd(folder / f"{uuid.uuid5(uuid.NAMESPACE_DNS, 'lyon.taurus-7')}.rrd", start, values)
    assert ws("import", folder, "--store", tmp_path / "dst") == 2
    assert "uuid5(probe id)" in capfd.readouterr().err  # names are needed to undo the hashed file name
    assert ws("import", folder, "--names", "lyon.taurus-6,lyon.taurus-7", "--store", tmp_path / "dst") == 0
    (series, (t, v)), = contents(tmp_path / "dst").items()
    assert series == Series("lyon.taurus-7", "power", "W", "gauge", "derived")  # RRD kept averages
    last = start + 3599
    assert t[-300:].tolist() == [(last - 299 + i) * 1000 for i in range(300)]  # the 1 s archive: 300 rows
    assert v[-300:].tolist() == values[-300:]  # exactly the values Kwapi wrote
    t10 = t[:-300] // 1000
    assert t10.max() <= last - 300 and set(np.diff(t10)) == {10}  # coarser rows only before the fine ones
    i = int(np.flatnonzero(t10 == start + 2000)[0])  # a 10 s row: the average of its 10 seconds
    assert v[i] == pytest.approx(np.mean(values[1991:2001]))


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, text, message", [
    ("bad-time.csv", None, "bad-time.csv:3: measured_at 'yesterday' is not an ISO 8601 time"),
    ("no-value.csv", "probe,metric,measured_at\nlyon.a,power,2024-05-01T00:00:00Z\n",
     "no-value.csv:1: the header has no column value"),
    ("bad-probe.csv", ("probe,metric,measured_at,value\nlyon.a,power,2024-05-01T00:00:00Z,1\n"
                       "taurus 7,power,2024-05-01T00:00:01Z,2\n"), "bad-probe.csv:3: probe id 'taurus 7' is not of"),
    ("short.csv", "probe,metric,measured_at,value\nlyon.a,power,2024-05-01T00:00:00Z\n",
     "short.csv:2: 3 fields, the header has 4"),
    ("junk.bin", "\x00\x01 not a known format", "junk.bin: cannot tell the format of this file"),
])
def test_bad_files_name_the_file_and_row(tmp_path, capfd, name, text, message):
    path = tmp_path / name
    if text is None:
        shutil.copy(DATA / name, path)
    else:
        path.write_text(text)
    assert ws("import", path, "--store", tmp_path / "dst") == 2
    assert message in capfd.readouterr().err


def test_bad_parquet_and_hdf5_files(tmp_path, capfd):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"probe": ["lyon.a"], "metric": ["power"], "measured_at": [1], "value": [1.0]}),
                   tmp_path / "int-time.parquet")
    assert ws("import", tmp_path / "int-time.parquet", "--store", tmp_path / "dst") == 2
    assert "measured_at is int64, not a timestamp" in capfd.readouterr().err
    (tmp_path / "cut.parquet").write_bytes(b"PAR1" + b"\0" * 20)
    assert ws("import", tmp_path / "cut.parquet", "--store", tmp_path / "dst") == 2
    assert "cut.parquet: not a readable Parquet file" in capfd.readouterr().err
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    assert ws("import", tmp_path / "other.h5", "--store", tmp_path / "dst") == 2
    assert "neither wattsight's export layout nor kwapi-g5k's" in capfd.readouterr().err
    assert ws("export", "--probes", "lyon.nope", "--store", tmp_path / "dst", "-o", tmp_path / "x.csv") == 2
    assert not (tmp_path / "x.csv").exists()


# -- PostgreSQL ----------------------------------------------------------------------------
def test_postgresql_store_round_trip(source, tmp_path):
    from store_contract import PG_DSN, PgBackend

    pytest.importorskip("psycopg")
    backend = PgBackend()  # skips without a server
    try:
        cfg = tmp_path / "pg.toml"
        cfg.write_text(f'[bus]\nsecret = "{KEY}"\n[store]\nbackend = "postgresql"\n'
                       f'[store.postgresql]\ndsn = "{PG_DSN}"\nschema = "{backend.schema}"\n')
        src, _ = source
        ws("export", "--all", "--store", src, "-o", tmp_path / "a.parquet")
        assert ws("import", tmp_path / "a.parquet", "-c", cfg) == 0
        assert ws("import", tmp_path / "a.parquet", "-c", cfg) == 0  # idempotent there too
        assert ws("export", "--all", "-c", cfg, "-o", tmp_path / "b.parquet") == 0
        assert ws("import", tmp_path / "b.parquet", "--store", tmp_path / "dst") == 0
        assert same(contents(tmp_path / "dst"), contents(src))
    finally:
        backend.cleanup()


# -- the documented commands ---------------------------------------------------------------
def test_the_documented_examples_run(tmp_path, monkeypatch):
    fill(tmp_path / "store")
    for name in ("site.toml", "new.toml"):
        store = "store" if name == "site.toml" else "new-store"
        (tmp_path / name).write_text(f'[bus]\nsecret = "{KEY}"\n[store]\npath = "{store}"\n')
    (tmp_path / "kwapi" / "rrd").mkdir(parents=True)
    ts = 1_451_606_400 + np.arange(10.0)
    write_kwapi_hdf5(tmp_path / "kwapi" / "2016_01_01_power_store.h5", {"/lyon/taurus_7": (ts, [120] * 10)}, {})
    if shutil.which("rrdtool"):
        make_kwapi_rrd(tmp_path / "kwapi" / "rrd" / f"{uuid.uuid5(uuid.NAMESPACE_DNS, 'taurus-8')}.rrd",
                       1_451_606_400, [130] * 600)
    monkeypatch.chdir(tmp_path)
    block = re.search(r"<!-- tested -->\s*```sh\n(.*?)```", DOC.read_text(), re.DOTALL).group(1)
    commands = [shlex.split(line, comments=True) for line in textwrap.dedent(block).splitlines()]
    commands = [c for c in commands if c]
    assert len(commands) >= 6
    for argv in commands:
        assert argv[0] == "wattsight"
        if "rrd" in argv and not shutil.which("rrdtool"):
            continue
        assert ws(*argv[1:]) == 0, argv
    assert Path("may-1.parquet").exists() and Path("hour.csv").exists() and Path("taurus-7.h5").exists()
    names = {s.probe for s in contents(tmp_path / "new-store")}
    assert {"lyon.taurus-7", "lyon.taurus-8", "lyon.gw-1"} <= names
    assert os.path.getsize("hour.csv") > 0
