"""The shape that crosses every boundary: Series, Sample, Batch, Probe and Topology."""

from __future__ import annotations

import numpy as np
import pytest

from wattsight.errors import SampleError
from wattsight.sample import Batch, Probe, Sample, Series, Topology, check_probe_id, site_of

T0 = 1_700_000_000_000
POWER = Series("lyon.taurus-7", "power", "W")
ENERGY = Series("lyon.taurus-7", "energy", "J", "counter")
NANCY = Series("nancy.grisou-pdu1.12", "power", "W")


def rows(batch: Batch) -> list[tuple]:
    """A batch as plain rows (series tuple, t, v): what it means, whatever its table order."""
    return [(batch.series[i].as_tuple(), t, v)
            for i, t, v in zip(batch.sidx.tolist(), batch.t.tolist(), batch.v.tolist())]


def mixed() -> Batch:
    return Batch.concat([
        Batch.of_series(POWER, T0 + 1000 * np.arange(4), [100.0, 101.0, 102.0, 103.0]),
        Batch.of_series(NANCY, T0 + 500 * np.arange(3), [7.0, 8.0, 9.0]),
        Batch.of_series(ENERGY, [T0, T0 + 1000], [1e6, 1.0002e6]),
    ])


# -- probe ids --------------------------------------------------------------------------------
@pytest.mark.parametrize("probe", ["lyon.taurus-7", "nancy.grisou-pdu1.12", "a.b", "site_1.x:1/2@h+3",
                                   "Lyon-2.Node_9"])
def test_good_probe_ids_pass(probe):
    assert check_probe_id(probe) == probe


@pytest.mark.parametrize("probe", ["taurus-7", "", ".x", "lyon.", "ly on.x", "lyon.x y", "lyon|a.x",
                                   "lyon.a|b", "é.x", None, 42, "lyon.x\t"])
def test_bad_probe_ids_are_refused_with_the_expected_form(probe):
    with pytest.raises(SampleError, match="<site>.<name>"):
        check_probe_id(probe)


def test_a_probe_id_with_a_trailing_newline_is_refused():
    # `$` in the pattern also matches before a final "\n"; an id must not carry one
    # (it would reach topics, file names and API answers).
    with pytest.raises(SampleError):
        check_probe_id("lyon.taurus-7\n")


def test_site_is_the_part_before_the_first_dot():
    assert site_of("nancy.grisou-pdu1.12") == "nancy"
    assert NANCY.site == "nancy" and NANCY.key == ("nancy.grisou-pdu1.12", "power")


def test_series_check_probe_kind_and_provenance():
    with pytest.raises(SampleError):
        Series("no-site", "power", "W")
    with pytest.raises(SampleError, match="kind"):
        Series("a.b", "power", "W", kind="histogram")
    with pytest.raises(SampleError, match="provenance"):
        Series("a.b", "power", "W", provenance="guessed")
    assert Series("a.b", "power", "W", "gauge", "modelled").as_tuple() == ("a.b", "power", "W", "gauge", "modelled")


def test_probe_ids_are_checked_on_probes_too():
    with pytest.raises(SampleError):
        Probe("no-site")
    p = Probe("nancy.grisou-pdu1.12")
    assert (p.site, p.name) == ("nancy", "grisou-pdu1.12")


# -- building batches -------------------------------------------------------------------------
def test_of_series_makes_typed_aligned_columns():
    b = Batch.of_series(POWER, [T0, T0 + 1000], [1, 2])
    assert b.series == (POWER,)
    assert b.sidx.dtype == np.uint32 and b.t.dtype == np.int64 and b.v.dtype == np.float64
    assert rows(b) == [(POWER.as_tuple(), T0, 1.0), (POWER.as_tuple(), T0 + 1000, 2.0)]


def test_of_packs_samples_with_one_table_entry_per_series_and_ms_times():
    samples = [Sample("lyon.taurus-7", "power", 1_700_000_000.0, 100.0, "W"),
               Sample("lyon.taurus-7", "energy", 1_700_000_000.0, 5.0, "J", "counter"),
               Sample("lyon.taurus-7", "power", 1_700_000_000.5, 101.0, "W"),
               Sample("lyon.taurus-7", "power", 1_700_000_001.0016, 102.0, "W")]
    b = Batch.of(samples)
    assert b.series == (POWER, ENERGY)
    assert b.sidx.tolist() == [0, 1, 0, 0]
    assert b.t.tolist() == [T0, T0, T0 + 500, T0 + 1002]  # seconds -> ms, rounded to the nearest
    assert b.v.tolist() == [100.0, 5.0, 101.0, 102.0]


def test_of_an_empty_iterable_is_an_empty_batch():
    b = Batch.of([])
    assert len(b) == 0 and b.series == () and b.t.dtype == np.int64
    assert list(b.samples()) == []


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(SampleError, match="differ in length"):
        Batch((POWER,), np.zeros(2, np.uint32), np.zeros(3, np.int64), np.zeros(2))


# -- samples() round trips --------------------------------------------------------------------
def test_samples_round_trip_through_of():
    b = mixed()
    back = Batch.of(b.samples())
    assert rows(back) == rows(b)


def test_samples_keep_every_attribute_and_give_seconds():
    s = list(Batch.of_series(ENERGY, [T0 + 1], [3.5]).samples())
    assert s == [Sample("lyon.taurus-7", "energy", (T0 + 1) / 1000, 3.5, "J", "counter", "measured")]


def test_ms_times_survive_the_seconds_round_trip_exactly():
    rng = np.random.default_rng(7)
    t = np.sort(rng.integers(0, 4_102_444_800_000, 10_000))  # up to the year 2100, every ms
    b = Batch.of_series(POWER, t, np.zeros(len(t)))
    assert np.array_equal(Batch.of(b.samples()).t, t)


# -- concat -----------------------------------------------------------------------------------
def test_concat_merges_series_tables_and_keeps_rows_in_order():
    a = Batch.of_series(POWER, [T0], [1.0])
    b = Batch.concat([Batch.of_series(NANCY, [T0 + 1], [2.0]), Batch.of_series(POWER, [T0 + 2], [3.0])])
    c = Batch.concat([a, b])
    assert c.series == (POWER, NANCY)  # POWER appears once although both inputs have it
    assert rows(c) == rows(a) + rows(b)


def test_concat_skips_empty_batches_and_of_nothing_is_empty():
    a = Batch.of_series(POWER, [T0], [1.0])
    assert Batch.concat([Batch.empty(), a, Batch.empty()]) is a
    assert len(Batch.concat([])) == 0 and len(Batch.concat([Batch.empty()])) == 0


# -- select and split -------------------------------------------------------------------------
def test_select_keeps_rows_and_compacts_the_series_table():
    b = mixed()
    keep = np.array([s.probe == "nancy.grisou-pdu1.12" for s in b.series])[b.sidx]
    sel = b.select(keep)
    assert sel.series == (NANCY,)
    assert sel.sidx.tolist() == [0, 0, 0]
    assert rows(sel) == [r for r in rows(b) if r[0][0] == "nancy.grisou-pdu1.12"]


def test_select_nothing_is_empty():
    sel = mixed().select(np.zeros(len(mixed()), bool))
    assert len(sel) == 0 and sel.series == ()


def test_split_by_site_and_metric_partitions_the_rows():
    b = mixed()
    parts = b.split(lambda s: (s.site, s.metric))
    assert sorted(parts) == [("lyon", "energy"), ("lyon", "power"), ("nancy", "power")]
    assert parts[("nancy", "power")].series == (NANCY,)
    assert parts[("lyon", "power")].v.tolist() == [100.0, 101.0, 102.0, 103.0]
    assert sorted(r for p in parts.values() for r in rows(p)) == sorted(rows(b))


def test_split_with_one_key_returns_the_batch_itself():
    b = Batch.of_series(POWER, [T0, T0 + 1], [1.0, 2.0])
    assert b.split(lambda s: s.site) == {"lyon": b}


def test_split_of_an_empty_batch_is_empty():
    assert Batch.empty().split(lambda s: s.site) == {}


# -- topology ---------------------------------------------------------------------------------
def rack() -> Topology:
    return Topology([
        # a node with two PSUs: two probes feed lyon.taurus-7
        Probe("lyon.pdu1.3", nodes=("lyon.taurus-7",)),
        Probe("lyon.pdu2.3", nodes=("lyon.taurus-7",), aliases=("taurus-7-psu2",)),
        # one outlet feeding two hosts: shared
        Probe("lyon.pdu1.4", nodes=("lyon.taurus-8", "lyon.taurus-9"), aliases=("rack1-outlet4",)),
        # a probe that is its own node (the default)
        Probe("lyon.sagittaire-1", aliases=("sagittaire-1",)),
    ])


def test_a_multi_psu_node_is_fed_by_all_its_probes():
    topo = rack()
    assert topo.node_probes("lyon.taurus-7") == ["lyon.pdu1.3", "lyon.pdu2.3"]
    assert topo.shared_probes("lyon.taurus-7") == []


def test_a_shared_probe_feeds_each_of_its_nodes_whole_and_says_so():
    topo = rack()
    assert topo.probes["lyon.pdu1.4"].shared
    for node in ("lyon.taurus-8", "lyon.taurus-9"):
        assert topo.node_probes(node) == ["lyon.pdu1.4"]
        assert topo.shared_probes(node) == ["lyon.pdu1.4"]


def test_a_probe_without_nodes_is_its_own_node():
    topo = rack()
    p = topo.probes["lyon.sagittaire-1"]
    assert p.fed_nodes == ("lyon.sagittaire-1",) and not p.shared
    assert topo.nodes() == {
        "lyon.taurus-7": ["lyon.pdu1.3", "lyon.pdu2.3"],
        "lyon.taurus-8": ["lyon.pdu1.4"],
        "lyon.taurus-9": ["lyon.pdu1.4"],
        "lyon.sagittaire-1": ["lyon.sagittaire-1"],
    }


def test_a_node_is_the_sum_of_its_probes():
    # What "summed" means, with the topology's mapping: the node's power is the sum of its
    # probes' (here at one instant), each probe whole.
    topo = rack()
    power = {"lyon.pdu1.3": 120.0, "lyon.pdu2.3": 95.5, "lyon.pdu1.4": 300.0, "lyon.sagittaire-1": 80.0}
    node_power = {n: sum(power[p] for p in ps) for n, ps in topo.nodes().items()}
    assert node_power == {"lyon.taurus-7": 215.5, "lyon.taurus-8": 300.0, "lyon.taurus-9": 300.0,
                          "lyon.sagittaire-1": 80.0}


def test_aliases_resolve_to_the_probe_and_unknown_names_pass_through():
    topo = rack()
    assert topo.resolve("rack1-outlet4") == "lyon.pdu1.4"
    assert topo.resolve("lyon.pdu1.4") == "lyon.pdu1.4"
    assert topo.resolve("lyon.unknown") == "lyon.unknown"
    assert topo.get("taurus-7-psu2") is topo.probes["lyon.pdu2.3"]
    assert topo.get("lyon.unknown") == Probe("lyon.unknown")


def test_adding_a_probe_again_replaces_its_metadata():
    topo = rack()
    topo.add(Probe("lyon.sagittaire-1", nodes=("lyon.sagittaire-1", "lyon.sagittaire-2")))
    assert topo.shared_probes("lyon.sagittaire-2") == ["lyon.sagittaire-1"]
    assert topo.node_probes("lyon.sagittaire-1") == ["lyon.sagittaire-1"]


def test_a_wrapping_counter_carries_its_range_in_its_kind():
    from wattsight.sample import counter_range, is_counter, wrapping_counter

    assert wrapping_counter(2**32) == "counter:4294967296"
    assert counter_range(wrapping_counter(262143.328850)) == pytest.approx(262143.32885)
    assert counter_range(wrapping_counter(2**64)) == float(2**64)
    assert is_counter("counter") and is_counter("counter:10") and not is_counter("gauge")
    assert counter_range("counter") is None and counter_range("gauge") is None
    Series("lyon.pkg", "energy", "J", wrapping_counter(1000))
    for bad in ("counter:", "counter:-1", "counter:abc", "counter32"):
        with pytest.raises(SampleError, match="wrapping counter"):
            Series("lyon.pkg", "energy", "J", bad)
    with pytest.raises(SampleError):
        wrapping_counter(0)
