"""The replay driver: CSV and Parquet traces, pacing, loops, rewrites and file errors."""

from __future__ import annotations

import csv
import gzip
import os
import tomllib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest

from wattsight.drivers.replay import ReplayConfig, ReplayDriver, load_trace, open_trace, rename_probe
from wattsight.errors import MeterPermissionError, MeterReplyError, MeterUnreachable
from wattsight.sample import Batch

DATA = Path(__file__).parent / "data" / "replay"
T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z in ms
NOW = 1_800_000_000_000


class Clock:
    def __init__(self, t: int = NOW) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def rows(n: int = 30) -> list[dict]:
    """A small trace: two probes' power every second, and an energy counter, in file order."""
    out = []
    for i in range(n // 3):
        t = T0 + 1000 * i
        out.append({"probe": "lyon.taurus-7", "metric": "power", "measured_at": t, "value": 200.0 + i,
                    "unit": "W"})
        out.append({"probe": "taurus-8", "metric": "power", "measured_at": t, "value": 150.0 + i,
                    "unit": "W"})
        out.append({"probe": "lyon.taurus-7", "metric": "energy", "measured_at": t, "value": 1e6 + 200.0 * i,
                        "unit": "J", "kind": "counter"})
    return out


def write_csv(path: Path, records: list[dict], columns=None) -> Path:
    columns = columns or ["probe", "metric", "measured_at", "value", "unit", "kind", "provenance"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns, restval="")
        w.writeheader()
        w.writerows(records)
    return path


def write_parquet(path: Path, records: list[dict]) -> Path:
    table = pa.table({
        "probe": [r["probe"] for r in records],
        "metric": pa.array([r["metric"] for r in records]).dictionary_encode(),
        "measured_at": [r["measured_at"] / 1000.0 for r in records],  # float seconds
        "value": [r["value"] for r in records],
        "unit": [r["unit"] for r in records],
        "kind": [r.get("kind") for r in records],
    })
    pq.write_table(table, path)
    return path


def driver(path, clock=None, opener=open_trace, **settings) -> ReplayDriver:
    return ReplayDriver(ReplayConfig(path=path, **settings), site="lyon", clock=clock or Clock(),
                        opener=opener)


def play(d: ReplayDriver, clock: Clock, reads: int, step_ms: int) -> list[Batch]:
    out = []
    for _ in range(reads):
        out.append(d.read())
        clock.t += step_ms
    return out


def as_rows(batches) -> list[tuple]:
    return [(s.probe, s.metric, s.value, s.unit, s.kind) for b in batches for s in b.samples()]


def expected(records) -> list[tuple]:
    kinds = {"power": "gauge", "energy": "counter"}
    return [(r["probe"] if "." in r["probe"] else "lyon." + r["probe"], r["metric"], r["value"], r["unit"],
             kinds[r["metric"]]) for r in records]


@pytest.fixture(params=["csv", "parquet"])
def trace(request, tmp_path):
    write = write_csv if request.param == "csv" else write_parquet
    return write(tmp_path / f"trace.{request.param}", rows())


def test_sample_validates():
    section = tomllib.loads(ReplayDriver.SAMPLE)["drivers"]["replay"]
    cfg = ReplayDriver.Config.model_validate(section)
    assert cfg.speed == 10.0 and cfg.loop


def test_unknown_setting_is_refused():
    with pytest.raises(pydantic.ValidationError, match="colour"):
        ReplayConfig(path="x.csv", colour="red")
    with pytest.raises(pydantic.ValidationError, match="speed"):
        ReplayConfig(path="x.csv", speed=0)


def test_every_row_exactly_once_in_order_at_speed_1000(trace):
    clock = Clock()
    d = driver(trace, clock, speed=1000)
    batches = play(d, clock, 12, 1)  # 1 ms of wall time = 1 s of trace
    assert as_rows(batches) == expected(rows())
    assert d.done
    t = np.concatenate([b.t for b in batches])
    assert t[0] == NOW and np.all(np.diff(t) >= 0) and t[-1] == NOW + 9  # 9 s of trace in 9 ms
    assert len(d.read()) == 0


def test_real_time_pacing_returns_the_rows_come_due(trace):
    clock = Clock()
    d = driver(trace, clock)
    first = d.read()
    assert len(first) == 3 and set(first.t.tolist()) == {NOW}
    clock.t += 999
    assert len(d.read()) == 0
    clock.t += 1
    again = d.read()
    assert len(again) == 3 and set(again.t.tolist()) == {NOW + 1000}
    clock.t += 3500
    assert len(d.read()) == 9  # three seconds of trace at once


def test_keep_time_keeps_the_recorded_timestamps(trace):
    clock = Clock()
    d = driver(trace, clock, speed=1000, keep_time=True)
    t = np.concatenate([b.t for b in play(d, clock, 12, 1)])
    assert t.tolist() == [r["measured_at"] for r in rows()]


def test_loop_starts_over_with_increasing_times(trace):
    clock = Clock()
    d = driver(trace, clock, speed=1000, loop=True)
    batches = play(d, clock, 35, 1)  # 35 s of a 10 s lap: three laps and a half
    got = as_rows(batches)
    assert got[: 3 * 30] == expected(rows()) * 3
    assert got[90:] == expected(rows())[: len(got) - 90]
    t = np.concatenate([b.t for b in batches])
    assert np.all(np.diff(t) >= 0)
    assert t[30] == NOW + 10  # lap = 9 s of trace + the 1 s sample interval
    assert not d.done


def test_loop_with_keep_time_shifts_each_lap(trace):
    clock = Clock()
    d = driver(trace, clock, speed=1000, loop=True, keep_time=True)
    t = np.concatenate([b.t for b in play(d, clock, 25, 1)])
    assert t[30] == T0 + 10_000 and t[60] == T0 + 20_000


def test_site_and_prefix_rewrite(trace):
    d = driver(trace, rewrite_site="lab", prefix="replay-")
    assert [p.id for p in d.probes()] == ["lab.replay-taurus-7", "lab.replay-taurus-8"]
    assert all(p.driver == "replay" and p.description.startswith("replayed from") for p in d.probes())
    assert rename_probe("taurus-9", "lyon") == "lyon.taurus-9"


def test_recorded_csv_with_iso_times(tmp_path):
    trace = load_trace(DATA / "rack.csv")
    assert len(trace) == 13
    assert trace.t[0] == T0 and trace.t[-1] == T0 + 3000
    assert sorted({s.probe for s in trace.series}) == ["lyon.pdu-1", "lyon.taurus-7", "lyon.taurus-8"]
    pdu = next(s for s in trace.series if s.probe == "lyon.pdu-1")
    assert pdu.provenance == "derived"
    # The pdu row (12:00:02.5) sits between the 12:00:02 and 12:00:03 rows once sorted.
    assert trace.t.tolist()[9] == T0 + 2500


def test_time_formats(tmp_path):
    def first_time(text, **kw):
        path = tmp_path / "t.csv"
        path.write_text(f"probe,metric,measured_at,value,unit\nlyon.a,power,{text},1,W\n")
        return int(load_trace(path, **kw).t[0])

    assert first_time("1714564800000") == T0  # integers: ms
    assert first_time("1714564800.25") == T0 + 250  # decimals: s
    assert first_time("1714564800", time_unit="s") == T0
    assert first_time("2024-05-01T14:00:00+02:00") == T0
    assert first_time("2024-05-01 12:00:00") == T0  # no zone: UTC


def test_zoned_and_unzoned_times_mix(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("probe,metric,measured_at,value,unit\n"
                    "lyon.a,power,2024-05-01T12:00:00Z,1,W\nlyon.a,power,2024-05-01T12:00:01,2,W\n")
    assert load_trace(path).t.tolist() == [T0, T0 + 1000]


def test_parquet_timestamps(tmp_path):
    path = tmp_path / "ts.parquet"
    pq.write_table(pa.table({
        "probe": ["lyon.a"], "metric": ["power"], "value": [5.0], "unit": ["W"],
        "measured_at": pa.array([T0 * 1000], pa.timestamp("us", tz="UTC"))}), path)
    assert load_trace(path).t.tolist() == [T0]


# -- errors ---------------------------------------------------------------------------------
def test_missing_file_is_unreachable_and_names_it(tmp_path):
    d = driver(tmp_path / "nope.csv")
    with pytest.raises(MeterUnreachable, match=r"nope\.csv.*no such trace file.*path"):
        d.read()


def bad_csv(tmp_path, body: str, header: str = "probe,metric,measured_at,value,unit") -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n" + body)
    return path


@pytest.mark.parametrize("body, words", [
    ("lyon.a,power,1000,1,W\nlyon.a,power,2000,abc,W\n", r"line 3: value 'abc' is not a number"),
    ("lyon.a,power,1000,1,W\nlyon.a,power,2000,,W\n", r"line 3: value is empty"),
    ("lyon.a,power,1000,1,W\nlyon.a,power,2000,nan,W\n", r"line 3: value is empty, NaN"),
    ("lyon.a,power,1000,1,W\nlyon.a,power,yesterday,1,W\n", r"line 3: measured_at 'yesterday'"),
    ("lyon.a,power,2024-05-01T12:00:00Z,1,W\nlyon.a,power,soon,1,W\n", r"line 3: measured_at 'soon'"),
    ("lyon.a,power,1000,1,W\nlyon.a,power,2000,1\n", r"line 3: 4 fields where the header has 5"),
    ("lyon.a,power,1000,1,kW\n", r"line 2: power must be a gauge in W"),
    ("lyon.a,power,1000,1,W\nbad probe,power,1000,1,W\n", r"line 3: probe id 'lyon.bad probe'"),
    ("", r"no rows"),
])
def test_malformed_csv_names_file_and_line(tmp_path, body, words):
    with pytest.raises(MeterReplyError, match=r"bad\.csv: .*" + words):
        driver(bad_csv(tmp_path, body)).read()


def test_bad_kind_and_columns(tmp_path):
    path = bad_csv(tmp_path, "lyon.a,temp,1,1,C,level\n", header="probe,metric,measured_at,value,unit,kind")
    with pytest.raises(MeterReplyError, match=r"line 2: kind 'level'"):
        load_trace(path)
    path = bad_csv(tmp_path, "lyon.a,1,1,W,x\n", header="probe,measured_at,value,unit,colour")
    with pytest.raises(MeterReplyError, match=r"missing column\(s\) metric; unknown column\(s\) colour"):
        load_trace(path)


def test_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "trace.parquet"
    path.write_text("probe,metric\n")
    with pytest.raises(MeterReplyError, match=r"trace\.parquet: cannot be read as parquet"):
        load_trace(path)


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"probe": ["lyon.a", "lyon.a"], "metric": ["power", "power"],
                             "measured_at": [1.0, None], "value": [1.0, 2.0], "unit": ["W", "W"]}), path)
    with pytest.raises(MeterReplyError, match=r"row 2: measured_at is empty"):
        load_trace(path)


def test_unknown_suffix_asks_for_a_format(tmp_path):
    path = write_csv(tmp_path / "trace.txt", rows(3))
    with pytest.raises(MeterReplyError, match="format"):
        load_trace(path)
    assert len(load_trace(path, "csv")) == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read any file: the injected opener's twin covers it")
def test_unreadable_file(tmp_path):
    path = write_csv(tmp_path / "secret.csv", rows(3))
    path.chmod(0)
    with pytest.raises(MeterPermissionError, match="secret.csv"):
        load_trace(path)


def refuse(path: Path):
    """An opener as the kernel answers a user who may not read the file (root included)."""
    raise PermissionError(13, "Permission denied", str(path))


@pytest.mark.parametrize("name", ["secret.csv", "secret.parquet"])
def test_a_trace_the_user_may_not_read_is_a_permission_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".csv"):
        write_csv(path, rows(3))
    else:
        write_parquet(path, rows(3))
    with pytest.raises(MeterPermissionError, match="may not read the trace file") as err:
        load_trace(path, opener=refuse)
    assert err.value.probe == str(path)
    with pytest.raises(MeterPermissionError, match=name):  # the driver opens its trace through the same seam
        driver(path, opener=refuse).read()
    assert len(driver(path).read()) == 3  # the default opener reads the same file


def test_a_gzipped_csv_is_read(tmp_path):
    plain = write_csv(tmp_path / "trace.csv", rows(6))
    packed = tmp_path / "trace.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = load_trace(plain), load_trace(packed)
    assert b.t.tolist() == a.t.tolist() and b.v.tolist() == a.v.tolist() and len(b) == len(rows(6))


def test_a_file_that_appears_later_is_read_then(tmp_path):
    path = tmp_path / "late.csv"
    d = driver(path)
    with pytest.raises(MeterUnreachable):
        d.read()
    write_csv(path, rows(3))
    assert len(d.read()) == 3


def test_a_relative_path_is_taken_from_the_configuration_folder(tmp_path):
    from wattsight import config

    write_csv(tmp_path / "trace.csv", rows(3))
    cfg = ReplayConfig.model_validate({"type": "replay", "path": "trace.csv"}, context={"base": tmp_path})
    assert cfg.path == tmp_path / "trace.csv"
    (tmp_path / "bus.key").write_text("k" * 32)
    text = '[bus]\nsecret_file = "bus.key"\n[drivers.r]\ntype = "replay"\npath = "trace.csv"\n'
    loaded = config.loads(text, path=str(tmp_path / "wattsight.toml"))
    assert loaded.drivers["r"].path == tmp_path / "trace.csv"
