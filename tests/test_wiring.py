"""``wattsight check-wiring``: the rule on power series, the process on a simulated rack whose
outlets are swapped, the command with an injected reader, and one run against a real
``wattsight run`` reading an HTTP JSON meter that follows the load command."""

from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from wattsight import cli, wiring
from wattsight.cli_tools import check_wiring
from wattsight.errors import ConfigError
from wattsight.wiring import Rule, judge_node

RULE = Rule(k=5.0, min_rise=10.0, settle=2.0)
BASE, LOAD = (0, 10_000), (10_000, 20_000)


def series(base_w: float, load_w: float, *, noise: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1 Hz power over BASE then LOAD: ``base_w`` then ``load_w``, with gaussian noise."""
    t = np.arange(0, 20_001, 1000, dtype=np.int64)
    v = np.where(t < LOAD[0], base_w, load_w) + np.random.default_rng(seed).normal(0, noise, len(t))
    return t, v


# -- the rule ---------------------------------------------------------------------------------
def test_a_rise_counts_above_k_noise_or_min_rise_whichever_is_larger():
    quiet = wiring.evidence("s.p", ["s.n"], np.full(10, 100.0), np.full(5, 111.0), RULE)
    assert (quiet.threshold_w, quiet.rise_w, quiet.rose) == (10.0, 11.0, True)   # flat baseline: min_rise
    flat = wiring.evidence("s.p", ["s.n"], np.full(10, 100.0), np.full(5, 109.0), RULE)
    assert not flat.rose
    noisy = np.array([100.0, 104, 96, 104, 96, 100, 104, 96, 100, 100])       # MAD 4 W -> sigma 5.93 W
    judged = wiring.evidence("s.p", ["s.n"], noisy, np.full(5, 125.0), RULE)
    assert judged.threshold_w == pytest.approx(5 * 1.4826 * 4) and not judged.rose   # 25 W < 29.7 W
    assert wiring.evidence("s.p", ["s.n"], noisy, np.full(5, 130.0), RULE).rose
    # one spike in the load window moves the median, not the verdict
    spiky = wiring.evidence("s.p", ["s.n"], np.full(10, 100.0), np.array([100, 100, 900, 100, 100.0]), RULE)
    assert not spiky.rose and spiky.loaded_w == 260.0


def test_the_settle_time_is_left_out_of_the_load_window():
    t = np.arange(0, 20_001, 1000)
    v = np.where(t < 10_000, 100.0, 100.0)
    v[(t >= 10_000) & (t < 12_000)] = 300.0   # a transient at the start of the load: not judged
    verdict = judge_node("s.a", {"s.p": ("s.a",)}, {"s.p": (t, v)}, baseline=BASE, load=LOAD, rule=RULE)
    assert verdict.status == "no-rise" and verdict.evidence[0].loaded_w == 100.0


MAPPING = {"s.p1": ("s.a",), "s.p2": ("s.b",), "s.shared": ("s.a", "s.b")}


def judge(node: str, rises: dict[str, float], mapping=MAPPING, **kw) -> wiring.Verdict:
    data = {p: series(100.0, 100.0 + rises.get(p, 0.0), seed=i) for i, p in enumerate(mapping)}
    return judge_node(node, mapping, data, baseline=BASE, load=LOAD, rule=RULE, **kw)


def test_ok_when_the_node_s_probes_and_only_those_rise():
    v = judge("s.a", {"s.p1": 80, "s.shared": 80})
    assert (v.status, v.problem, v.expected, v.rose) == ("ok", False, ("s.p1", "s.shared"), ("s.p1", "s.shared"))
    assert [e.probe for e in v.evidence] == ["s.p1", "s.shared"]
    assert 99 < v.evidence[0].baseline_w < 101 and 179 < v.evidence[0].loaded_w < 181


def test_a_swap_names_the_probe_that_rose_and_the_node_it_is_mapped_to():
    v = judge("s.a", {"s.p2": 80, "s.shared": 80})
    assert v.status == "swap" and v.problem
    assert "s.p2 rose when s.a was loaded but it is mapped to s.b" in v.message
    assert "s.a's own s.p1 (" in v.message and "did not rise" in v.message


def test_no_rise_and_unexpected_rise_and_a_node_nobody_measures():
    assert judge("s.a", {"s.shared": 80}).status == "no-rise"
    extra = judge("s.a", {"s.p1": 80, "s.shared": 80, "s.p2": 80})
    assert extra.status == "unexpected-rise" and "s.p2 rose when s.a was loaded" in extra.message
    assert judge("s.c", {}).status == "not-monitored" and not judge("s.c", {}).problem
    found = judge("s.c", {"s.p2": 80})
    assert found.status == "unexpected-rise" and "no probe is mapped to s.c" in found.message


def test_a_probe_without_nodes_that_rises_is_noted_not_a_problem():
    mapping = {**MAPPING, "s.a-bmc": ("s.a-bmc",)}    # a BMC left out of the node (its outlets measure it)
    v = judge("s.a", {"s.p1": 80, "s.shared": 80, "s.a-bmc": 80}, mapping)
    assert v.status == "ok" and "also rose: s.a-bmc (no nodes set)" in v.message


def test_no_samples_and_a_failed_load_are_problems():
    data = {"s.p1": (np.zeros(0, np.int64), np.zeros(0))}
    v = judge_node("s.a", MAPPING, data, baseline=BASE, load=LOAD, rule=RULE)
    assert v.status == "no-data" and "s.p1, s.shared" in v.message
    assert judge("s.a", {"s.p1": 80, "s.shared": 80}, load_error="exit code 255").status == "load-failed"


def test_swaps_pairs_the_probes_that_rose_for_each_other():
    verdicts = [judge("s.a", {"s.p2": 80, "s.shared": 80}), judge("s.b", {"s.p1": 80, "s.shared": 80})]
    assert wiring.swaps(verdicts) == [("s.p1", "s.b", "s.p2", "s.a")]


# -- reading the API --------------------------------------------------------------------------------
def test_the_api_reader_gives_power_and_the_rate_of_energy_counters(tmp_path):
    from test_api_helpers import T0, client_for, open_store

    from wattsight.wiring_api import ApiReader, topology_from_api

    store = open_store(tmp_path / "store")
    try:
        reader = ApiReader("http://testserver", client=client_for(store))
        # network-only (sw1) and sample-less (waiting) probes are not watched; rapl has energy only
        assert topology_from_api(reader) == {"lyon.const": ("lyon.node-1", "lyon.node-2"),
                                             "lyon.gappy": ("lyon.node-2",), "lyon.ramp": ("lyon.node-1",),
                                             "lyon.rapl": ("lyon.rapl",)}
        got = reader(["lyon.ramp", "lyon.rapl"], T0, T0 + 10_000)
    finally:
        store.close()
    t, w = got["lyon.ramp"]
    assert list(t) == [T0 + 1000 * i for i in range(11)] and w[0] == 100.0
    t, w = got["lyon.rapl"]
    assert len(t) == 10 and np.allclose(w, 30.0)        # J counter -> W


# -- the process, on a simulated rack -------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms

    def sleep(self, s: float) -> None:
        self.ms += int(s * 1000)


class Rack:
    """Outlets physically wired to nodes; an outlet draws 100 W, plus 120 W shared among the outlets of
    its node while that node is loaded.  Reads back 1 Hz samples of any past window."""

    def __init__(self, wired: dict[str, str], clock: Clock, mapping: dict[str, tuple[str, ...]]) -> None:
        self.wired, self.clock, self.mapping = wired, clock, mapping
        self.changes: list[tuple[int, str | None]] = [(0, None)]
        self.loads: list[str] = []

    # loader
    def start(self, node: str):
        self.loads.append(node)
        self.changes.append((self.clock(), node))
        return node

    def finish(self, node) -> None:
        self.changes.append((self.clock(), None))

    # reader (and the API's probe list, for the command)
    def probes(self) -> list[dict]:
        return [{"id": p, "nodes": list(n), "metrics": ["power"]} for p, n in self.mapping.items()]

    def __call__(self, probes, start_ms, end_ms):
        t = np.arange(start_ms - start_ms % 1000, end_ms + 1, 1000, dtype=np.int64)
        at = np.searchsorted([c[0] for c in self.changes], t, side="right") - 1
        loaded = np.array([self.changes[i][1] for i in at], dtype=object)
        rng = np.random.default_rng(start_ms)
        out = {}
        for p in probes:
            if p not in self.wired:
                continue
            node = self.wired[p]
            share = 120.0 / sum(1 for n in self.wired.values() if n == node)
            out[p] = (t, 100.0 + share * (loaded == node) + rng.normal(0, 0.5, len(t)))
        return out


WIRED = {"s.o1": "s.a", "s.o2": "s.b", "s.o3": "s.c", "s.o4": "s.c"}   # s.c has two PSUs


def test_run_on_a_rack_whose_outlets_are_swapped_in_the_config():
    mapping = {"s.o1": ("s.b",), "s.o2": ("s.a",), "s.o3": ("s.c",), "s.o4": ("s.c",)}
    clock = Clock()
    rack = Rack(WIRED, clock, mapping)
    verdicts = wiring.run(["s.a", "s.b", "s.c"], mapping, loader=rack, reader=rack,
                          plan=wiring.Plan(10, 20, 5), rule=RULE, clock=clock, sleep=clock.sleep)
    assert rack.loads == ["s.a", "s.b", "s.c"]
    assert [v.status for v in verdicts] == ["swap", "swap", "ok"]
    assert "s.o1 rose when s.a was loaded but it is mapped to s.b" in verdicts[0].message
    assert verdicts[2].rose == ("s.o3", "s.o4")          # 60 W each: a node with two PSUs
    assert wiring.swaps(verdicts) == [("s.o1", "s.a", "s.o2", "s.b")]
    one = verdicts[0].windows
    assert one["baseline"][1] - one["baseline"][0] == 10_000 and one["load"][1] - one["load"][0] == 18_000


def test_the_command_reports_a_table_or_json_and_exits_1_on_a_problem(capsys):
    mapping = {"s.o1": ("s.b",), "s.o2": ("s.a",), "s.o3": ("s.c",), "s.o4": ("s.c",)}
    args = cli.parser().parse_args(["check-wiring", "--manual", "--baseline", "10", "--load", "20", "--rest", "5",
                                    "--settle", "2", "--json"])
    clock = Clock()
    rack = Rack(WIRED, clock, mapping)
    assert check_wiring(args, reader=rack, loader=rack, clock=clock, sleep=clock.sleep) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and [n["status"] for n in out["nodes"]] == ["swap", "swap", "ok"]
    assert out["swaps"] == [{"probe": "s.o1", "rose_for": "s.a", "swapped_with": "s.o2", "which_rose_for": "s.b"}]
    assert out["nodes"][0]["evidence"][0]["probe"] == "s.o2" and out["rule"]["min_rise"] == 10.0

    args = cli.parser().parse_args(["check-wiring", "--manual", "--nodes", "c", "--load", "20", "--settle", "2"])
    rack = Rack(WIRED, clock, {p: (WIRED[p],) for p in WIRED})
    assert check_wiring(args, reader=rack, loader=rack, clock=clock, sleep=clock.sleep) == 0
    text = capsys.readouterr().out
    assert re.search(r"s\.o3 .* yes ", text) and "1 node(s) OK or not monitored, 0 with a problem" in text


def test_bad_options_are_usage_errors(capsys):
    assert cli.main(["check-wiring", "--manual", "--load", "5", "--settle", "5"]) == 2
    assert "--settle must be shorter than --load" in capsys.readouterr().err
    assert cli.main(["check-wiring", "--load-cmd", "stress {nod}", "--api", "http://127.0.0.1:9"]) == 2
    assert "--load-cmd: bad --load-cmd template: unknown placeholder 'nod'" in capsys.readouterr().err
    assert cli.main(["check-wiring", "--manual", "--api", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the wattsight API at http://127.0.0.1:9" in capsys.readouterr().err


def test_the_command_loader_formats_words_and_reports_a_failing_command(tmp_path):
    loader = wiring.CommandLoader("ssh {node} stress-ng --timeout {seconds}s 'a b'", 30)
    assert loader.argv("lyon.taurus-1") == ["ssh", "taurus-1", "stress-ng", "--timeout", "30s", "a b"]
    failing = wiring.CommandLoader(f"{sys.executable} -c 'import sys; sys.exit(\"no route to {{node}}\")'", 1)
    assert failing.finish(failing.start("lyon.x")) == "the load command exited with code 1: no route to x"
    missing = wiring.CommandLoader("/nonexistent/stress {node}", 1)
    assert "cannot run '/nonexistent/stress'" in missing.finish(missing.start("lyon.x"))
    # an interrupted check stops the load it started
    long = wiring.CommandLoader(f"{sys.executable} -c 'import time; time.sleep(60)'", 60)
    proc = long.start("lyon.x")
    long.abort()
    assert proc.poll() is not None and long.running is None


def test_manual_mode_without_a_terminal_says_so():
    def closed(_prompt):
        raise EOFError

    with pytest.raises(ConfigError, match="--manual asks on the terminal, but standard input is closed"):
        wiring.ManualLoader(30, prompt=closed).start("lyon.x")


# -- end to end: a real `wattsight run`, an HTTP meter, a load command -------------------------------
class Meter(BaseHTTPRequestHandler):
    """Two outlets: out-1 physically feeds node-a, out-2 node-b; +80 W while the state file names it."""

    state: Path

    def do_GET(self):
        loaded = self.state.read_text().strip() if self.state.exists() else ""
        noise = np.random.default_rng().normal(0, 0.5, 2)
        watts = [100 + 80 * (loaded == node) + n for node, n in zip(("lab.node-a", "lab.node-b"), noise)]
        data = json.dumps({"outlets": [{"w": w} for w in watts]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


LOAD_SCRIPT = """\
import sys, time, pathlib
node, seconds, state = sys.argv[1], float(sys.argv[2]), pathlib.Path(sys.argv[3])
state.write_text(node)
time.sleep(seconds)
state.write_text("")
"""


@pytest.mark.slow
def test_end_to_end_against_a_real_wattsight_run(tmp_path, capsys):
    pytest.importorskip("wattsight.drivers.http")
    from procs import Wattsight, free_port

    state = tmp_path / "state"
    handler = type("M", (Meter,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listen = f"127.0.0.1:{free_port()}"
    cfg = tmp_path / "lab.toml"
    cfg.write_text(f"""site = "lab"
[bus]
endpoint = "ipc://{tmp_path}/bus"
secret = "0123456789abcdef"
[store]
path = "{tmp_path}/store"
[api]
listen = "{listen}"
[drivers.meter]
type = "http"
period = 0.2
url = "http://127.0.0.1:{server.server_port}/"
probes = {{ "out-1" = {{ power = "outlets[0].w" }}, "out-2" = {{ power = "outlets[1].w" }} }}
# the outlets are swapped here: out-1 really feeds node-a
[probes."lab.out-1"]
nodes = ["lab.node-b"]
[probes."lab.out-2"]
nodes = ["lab.node-a"]
""")
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    ws = Wattsight(["-c", str(cfg)], tmp_path, listen=listen)
    try:
        ws.wait_ready()
        ws.wait_for(lambda: all(p["last"] for p in ws.get("/api/v1/probes")["probes"]), what="samples")
        load_cmd = f"{sys.executable} {script} {{id}} {{seconds}} {state}"
        code = cli.main(["check-wiring", "-c", str(cfg), "--load-cmd", load_cmd, "--baseline", "1.5", "--load", "2.5",
                         "--rest", "1", "--settle", "0.5", "--min-rise", "20", "--json"])
    finally:
        ws.stop()
        server.shutdown()
        server.server_close()
    captured = capsys.readouterr()
    assert code == 1, captured.err
    out = json.loads(captured.out)
    assert [(n["node"], n["status"]) for n in out["nodes"]] == [("lab.node-a", "swap"), ("lab.node-b", "swap")]
    loaded_a = out["nodes"][0]
    assert loaded_a["rose"] == ["lab.out-1"] and loaded_a["expected"] == ["lab.out-2"]
    ev = {e["probe"]: e for e in loaded_a["evidence"]}
    assert 170 < ev["lab.out-1"]["loaded_w"] < 190 and 95 < ev["lab.out-1"]["baseline_w"] < 105
    assert out["swaps"] == [{"probe": "lab.out-1", "rose_for": "lab.node-a", "swapped_with": "lab.out-2",
                             "which_rose_for": "lab.node-b"}]
