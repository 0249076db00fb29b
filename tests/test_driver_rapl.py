"""The rapl driver on copies of the kernel's powercap layout: zones, wraps, duplicates, permissions."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import numpy as np
import pydantic
import pytest
from sysfs_trees import AMD_RANGE_UJ, INTEL_RANGE_UJ, rapl_file, rapl_tree, rapl_zone, write

from wattsight import cli
from wattsight.drivers.rapl import RaplConfig, RaplDriver
from wattsight.drivers.sysfs import read_file
from wattsight.energy import counter_increase
from wattsight.errors import MeterPermissionError, MeterReplyError
from wattsight.sample import counter_range, wrapping_counter

NOW = 1_700_000_000_000


def driver(root: Path, opener=read_file, clock=lambda: NOW, **kw) -> RaplDriver:
    cfg = RaplConfig(type="rapl", root=root, node="taurus-7", **kw)
    return RaplDriver(cfg, site="lyon", clock=clock, opener=opener)


def values(batch) -> dict[str, tuple[float, str, str]]:
    return {s.probe: (s.value, s.unit, s.kind) for s in batch.samples()}


def test_every_zone_is_an_energy_counter_in_joules_that_wraps_at_its_own_range(tmp_path):
    root = rapl_tree(tmp_path, packages=2, dram=True, core=True, psys=True)
    batch = driver(root).read()
    kind = wrapping_counter(INTEL_RANGE_UJ / 1e6)
    assert kind == "counter:262143.32885"
    assert values(batch) == {
        "lyon.taurus-7-package-0": (1000.0, "J", kind), "lyon.taurus-7-core-0": (1001.0, "J", kind),
        "lyon.taurus-7-dram-0": (1002.0, "J", kind), "lyon.taurus-7-package-1": (2000.0, "J", kind),
        "lyon.taurus-7-core-1": (2001.0, "J", kind), "lyon.taurus-7-dram-1": (2002.0, "J", kind),
        "lyon.taurus-7-psys": (7000.0, "J", kind)}
    assert {s.metric for s in batch.series} == {"energy"}  # no power: the API derives it
    assert {s.provenance for s in batch.series} == {"measured"}
    assert np.all(batch.t == NOW)


def test_probes_come_from_the_tree_without_reading_a_counter(tmp_path):
    root = rapl_tree(tmp_path, dram=True, psys=True)
    def opener(path):
        assert path.name == "name", f"probes() read {path}"
        return read_file(path)
    probes = driver(root, opener=opener).probes()
    assert [p.id for p in probes] == ["lyon.taurus-7-package-0", "lyon.taurus-7-dram-0", "lyon.taurus-7-psys"]
    assert all(p.driver == "rapl" and p.period == 1.0 for p in probes)
    assert "memory of CPU package 0" in probes[1].description
    assert "includes the packages" in probes[2].description


def test_a_wrap_between_two_reads_is_added_by_the_energy_maths_from_the_kind(tmp_path):
    root = rapl_tree(tmp_path, dram=False)
    counter = rapl_file(root, "intel-rapl:0")
    clock = iter([NOW, NOW + 1000])
    d = driver(root, clock=lambda: next(clock))
    write(counter, INTEL_RANGE_UJ - 3_000_000)  # 3 J before the wrap
    first = d.read()
    write(counter, 5_000_000)  # 5 J after it
    second = d.read()
    (series,) = second.series
    t = np.concatenate([first.t, second.t])
    v = np.concatenate([first.v, second.v])
    energy = counter_increase(t, v, NOW, NOW + 1000, 5000, max_range=counter_range(series.kind))
    assert energy.joules == pytest.approx(8.0, abs=1e-6)
    assert energy.coverage == 1.0
    # Without the range from the kind, the wrap would read as a reset and lose the 3 J.
    assert counter_increase(t, v, NOW, NOW + 1000, 5000).joules == pytest.approx(5.0)


def test_an_amd_range_is_taken_from_max_energy_range_uj(tmp_path):
    root = rapl_tree(tmp_path, dram=False, range_uj=AMD_RANGE_UJ)
    (series,) = driver(root).read().series
    assert counter_range(series.kind) == pytest.approx(65532.610987)


def test_the_mmio_copy_of_a_package_is_not_counted_twice(tmp_path):
    root = rapl_tree(tmp_path, dram=True, mmio=True)
    got = values(driver(root).read())
    assert sorted(got) == ["lyon.taurus-7-dram-0", "lyon.taurus-7-package-0"]
    assert got["lyon.taurus-7-package-0"][0] == 1000.0  # the MSR zone's value, not the MMIO one's (500 J)


def test_the_mmio_zone_is_read_when_no_msr_zone_covers_its_package(tmp_path):
    root = rapl_tree(tmp_path, packages=0, mmio=True)
    d = driver(root)
    assert [p.description.split("(")[-1] for p in d.probes()] == ["intel-rapl-mmio:0) on taurus-7"]
    kind = wrapping_counter(INTEL_RANGE_UJ / 1e6)
    assert values(d.read()) == {"lyon.taurus-7-package-0": (500.0, "J", kind)}


def test_multi_die_packages_name_their_subzones_after_package_and_die(tmp_path):
    base = tmp_path / "devices" / "virtual" / "powercap" / "intel-rapl"
    for n in range(2):
        top = rapl_zone(tmp_path, base / f"intel-rapl:{n}", f"package-0-die-{n}", 10**9)
        rapl_zone(tmp_path, top / f"intel-rapl:{n}:0", "dram", 10**6)
    assert [p.id for p in driver(tmp_path).probes()] == [
        "lyon.taurus-7-package-0-die-0", "lyon.taurus-7-dram-0-die-0",
        "lyon.taurus-7-package-0-die-1", "lyon.taurus-7-dram-0-die-1"]


def test_zones_are_chosen_by_kind_or_id(tmp_path):
    root = rapl_tree(tmp_path, packages=2, dram=True, core=True, psys=True)
    assert sorted(values(driver(root, zones=["package", "dram-1"]).read())) == [
        "lyon.taurus-7-dram-1", "lyon.taurus-7-package-0", "lyon.taurus-7-package-1"]


def test_an_unknown_zone_is_an_error_listing_the_zones_there(tmp_path):
    root = rapl_tree(tmp_path, dram=True)
    with pytest.raises(MeterReplyError, match=r"no RAPL zone 'dram-3'.*zones here: package-0, dram-0"):
        driver(root, zones=["dram-3"]).read()


def test_no_powercap_at_all_says_what_rapl_needs(tmp_path):
    with pytest.raises(MeterReplyError, match=r"taurus-7: no RAPL zones under .*modprobe intel_rapl_msr"):
        driver(tmp_path).probes()


def test_a_counter_that_disappears_is_a_reply_error_naming_the_file(tmp_path):
    root = rapl_tree(tmp_path, dram=True)
    d = driver(root)
    d.read()
    rapl_file(root, "intel-rapl:0:0").unlink()
    with pytest.raises(MeterReplyError, match=r"intel-rapl:0:0/energy_uj is missing"):
        d.read()


@pytest.mark.parametrize("text, problem", [("12ab", "not an integer"), ("-5", "out of range"),
                                           (str(INTEL_RANGE_UJ + 1), "above the zone's max_energy_range_uj")])
def test_a_counter_out_of_range_or_garbled_is_a_reply_error(tmp_path, text, problem):
    root = rapl_tree(tmp_path, dram=False)
    write(rapl_file(root, "intel-rapl:0"), text)
    with pytest.raises(MeterReplyError, match=problem):
        driver(root).read()


def deny_counters(path: Path) -> str:
    """An opener as the kernel answers a non-root user since Linux 5.10: energy_uj is 0400 root."""
    if path.name == "energy_uj":
        raise PermissionError(13, "Permission denied", str(path))
    return read_file(path)


def check_permission_message(exc: MeterPermissionError, root: Path) -> None:
    text = str(exc)
    assert "intel-rapl:0/energy_uj" in text and "CVE-2020-8694" in text and "as root" in text
    assert f"sudo chmod o+r {root}/class/powercap/intel-rapl*/energy_uj" in text
    assert 'SUBSYSTEM=="powercap"' in text and "chgrp powercap /sys%p/energy_uj" in text
    assert "udevadm trigger" in text


def test_a_counter_only_root_may_read_says_exactly_how_to_fix_it(tmp_path):
    root = rapl_tree(tmp_path, dram=False)
    with pytest.raises(MeterPermissionError) as err:
        driver(root, opener=deny_counters).read()
    check_permission_message(err.value, root)
    assert err.value.probe == "taurus-7"


def test_a_chmod_000_counter_is_a_permission_error(tmp_path):
    root = rapl_tree(tmp_path, dram=False)
    counter = rapl_file(root, "intel-rapl:0")
    counter.chmod(0)
    try:
        if os.access(counter, os.R_OK):
            pytest.skip("running as root: chmod 000 does not deny root (the injected opener test covers it)")
        with pytest.raises(MeterPermissionError) as err:
            driver(root).read()
        check_permission_message(err.value, root)
    finally:
        counter.chmod(0o644)


def test_config_sample_validates_and_checks_its_keys(tmp_path):
    section = tomllib.loads(RaplDriver.SAMPLE)["drivers"]["rapl"]
    assert RaplConfig.model_validate(section).root == Path("/sys")
    with pytest.raises(pydantic.ValidationError, match="probe id"):
        RaplConfig(type="rapl", node="bad node!")
    cfg = RaplConfig.model_validate({"type": "rapl", "root": "fake-sys"}, context={"base": tmp_path})
    assert cfg.root == tmp_path / "fake-sys"


def test_the_node_defaults_to_the_short_host_name(tmp_path, monkeypatch):
    import socket
    monkeypatch.setattr(socket, "gethostname", lambda: "taurus-9.lyon.grid5000.fr")
    d = RaplDriver(RaplConfig(type="rapl", root=rapl_tree(tmp_path, dram=False)), site="lyon")
    assert [p.id for p in d.probes()] == ["lyon.taurus-9-package-0"]


def test_wattsight_probe_rapl_once_reads_the_tree(tmp_path, capsys):
    root = rapl_tree(tmp_path, dram=True, mmio=True)
    assert cli.main(["probe", "rapl", "--root", str(root), "--node", "h1", "--zones", "package,dram",
                     "--once", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["probe"], r["metric"], r["value"], r["unit"]) for r in rows] == [
        ("local.h1-package-0", "energy", 1000.0, "J"), ("local.h1-dram-0", "energy", 1001.0, "J")]
    assert rows[0]["kind"] == "counter:262143.32885"


def test_wattsight_probe_rapl_without_zones_exits_1_with_the_reason(tmp_path, capsys):
    assert cli.main(["probe", "rapl", "--root", str(tmp_path), "--node", "h1", "--once"]) == 1
    assert "no RAPL zones under" in capsys.readouterr().err
