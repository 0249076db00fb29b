"""Check that probes are wired to the nodes the configuration says: load one node at a time.

For each node in turn: a *baseline* window (every node idle), a *load* window (this node
loaded, e.g. ``stress-ng``), then a *rest*.  A probe **rose** when the median of its load
window (after the first ``settle`` seconds, while power ramps up and meters average) is above
the median of its baseline by more than ``max(k * noise, min_rise)``, where ``noise`` is the
robust standard deviation of its own baseline (1.4826 x the median absolute deviation).  The
probes mapped to the node, and only those, should rise.

The core, :func:`judge_node`, is a pure function of power series; :func:`run` drives the
process with an injected clock, sleep, loader (what loads a node) and reader (where power
comes from), so that tests run it on a simulated rack without waiting.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import ConfigError
from .sample import now_ms

#: node statuses that are a problem (exit code 1)
PROBLEMS = ("swap", "no-rise", "unexpected-rise", "no-data", "load-failed")
Series = tuple[np.ndarray, np.ndarray]  # (t in ms, W)


@dataclass(frozen=True)
class Rule:
    """When a probe counts as having risen (see the module docstring)."""

    k: float = 5.0          # robust standard deviations of the baseline
    min_rise: float = 10.0  # W: never less than this (a meter with a flat baseline has no noise)
    settle: float = 5.0     # s left out at the start of the load window


@dataclass(frozen=True)
class Plan:
    """How long each window lasts, in seconds."""

    baseline: float = 20.0
    load: float = 30.0
    rest: float = 20.0


@dataclass(frozen=True)
class Evidence:
    """What one probe did while a node was loaded."""

    probe: str
    nodes: tuple[str, ...]      # the nodes it is mapped to
    baseline_w: float | None    # mean W over the baseline window
    loaded_w: float | None      # mean W over the load window (after settle)
    rise_w: float | None        # median(load) - median(baseline)
    threshold_w: float | None   # max(k * noise, min_rise)
    samples: tuple[int, int]    # (baseline, load) sample counts
    rose: bool = False


@dataclass(frozen=True)
class Verdict:
    """The outcome for one node: a status, a sentence, and the evidence behind it."""

    node: str
    status: str                 # ok, swap, no-rise, unexpected-rise, no-data, load-failed, not-monitored
    message: str
    expected: tuple[str, ...]   # probes mapped to the node
    rose: tuple[str, ...]       # probes that rose
    evidence: tuple[Evidence, ...] = ()
    windows: dict = field(default_factory=dict)  # baseline/load start and end, ms

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS

    def as_json(self) -> dict:
        out = asdict(self)
        out["problem"] = self.problem
        return out


def evidence(probe: str, nodes: Sequence[str], baseline: np.ndarray, loaded: np.ndarray, rule: Rule) -> Evidence:
    """How much ``probe`` rose between two windows of its power values, and whether it counts."""
    counts = (len(baseline), len(loaded))
    if not len(baseline) or not len(loaded):
        return Evidence(probe, tuple(nodes), _mean(baseline), _mean(loaded), None, None, counts)
    base = float(np.median(baseline))
    noise = 1.4826 * float(np.median(np.abs(baseline - base)))
    threshold = max(rule.k * noise, rule.min_rise)
    rise = float(np.median(loaded)) - base
    return Evidence(probe, tuple(nodes), _mean(baseline), _mean(loaded), rise, threshold, counts,
                    rose=rise > threshold)


def _mean(v: np.ndarray) -> float | None:
    return float(np.mean(v)) if len(v) else None


def _window(series: Series, start_ms: int, end_ms: int) -> np.ndarray:
    t, v = series
    t, v = np.asarray(t), np.asarray(v, dtype=float)
    keep = (t >= start_ms) & (t < end_ms) & np.isfinite(v)  # half-open: a sample at the switch is the load's
    return v[keep]


def judge_node(node: str, mapping: dict[str, tuple[str, ...]], series: dict[str, Series], *,
               baseline: tuple[int, int], load: tuple[int, int], rule: Rule = Rule(),
               load_error: str | None = None) -> Verdict:
    """The verdict for ``node`` from every watched probe's power over the two windows (ms).

    ``mapping``: probe id -> the nodes it is mapped to (a probe without explicit nodes feeds
    the node of its own name).  ``series``: probe id -> (t_ms, W).  A probe with no samples in
    a window is not judged; a probe mapped to ``node`` without samples makes it "no-data".
    """
    start = load[0] + int(rule.settle * 1000)
    ev = {p: evidence(p, mapping.get(p, (p,)), _window(s, *baseline), _window(s, start, load[1]), rule)
          for p, s in series.items()}
    expected = tuple(p for p, nodes in mapping.items() if node in nodes)
    rose = tuple(p for p, e in ev.items() if e.rose)
    shown = tuple(ev.get(p) or Evidence(p, mapping[p], None, None, None, None, (0, 0))
                  for p in dict.fromkeys(expected + rose))
    status, message = _status(node, expected, rose, ev, mapping, load_error)
    return Verdict(node, status, message, expected, rose, shown,
                   {"baseline": list(baseline), "load": [start, load[1]]})


def _status(node, expected, rose, ev, mapping, load_error) -> tuple[str, str]:
    if load_error:
        return "load-failed", f"the load could not be run: {load_error}"
    blind = [p for p in expected if p not in ev or ev[p].rise_w is None]
    if blind:
        return "no-data", (f"no power samples from {', '.join(blind)} in the baseline or load window: "
                           "is the probe read and stored (GET /api/v1/probes)?")
    extra = [p for p in rose if p not in expected]
    foreign = [p for p in extra if mapping.get(p, (p,)) != (p,)]  # mapped to other nodes
    lone = [p for p in extra if p not in foreign]                 # mapped to no node but itself
    missing = [p for p in expected if p not in rose]
    mapped = "; ".join(f"{p} rose when {node} was loaded but it is mapped to {', '.join(mapping[p])}"
                       for p in foreign)
    note = f"; also rose: {', '.join(lone)} (no nodes set)" if lone else ""
    if not expected:
        if extra:
            return "unexpected-rise", (f"{mapped or ', '.join(lone) + ' rose'}; no probe is mapped to {node}: "
                                       "one of them probably feeds it")
        return "not-monitored", f"no probe is mapped to {node} and none rose"
    low = ", ".join(f"{p} ({_w(ev[p].rise_w)} < {_w(ev[p].threshold_w)})" for p in missing)
    if foreign and missing:
        return "swap", f"suspected swap: {mapped}; {node}'s own {low} did not rise{note}"
    if missing:
        return "no-rise", (f"{low} did not rise: is {node} really loaded, or is the probe wired "
                           f"to another node?{note}")
    if foreign:
        return "unexpected-rise", f"{mapped} (a shared feed missing from its nodes?){note}"
    return "ok", f"{', '.join(expected)} rose, and no other probe{note}"


def _w(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} W"


def swaps(verdicts: Iterable[Verdict]) -> list[tuple[str, str, str, str]]:
    """Probes that look exchanged: ``(x, a, y, b)`` where x, mapped to b, rose when a was loaded
    and y, mapped to a, rose when b was loaded."""
    foreign = {(e.probe, v.node): e.nodes for v in verdicts for e in v.evidence
               if e.rose and e.probe not in v.expected}
    return [(x, a, y, b) for (x, a), x_nodes in foreign.items() for (y, b), y_nodes in foreign.items()
            if b in x_nodes and a in y_nodes and x < y]


# -- driving the process --------------------------------------------------------------------

Reader = Callable[[list[str], int, int], dict[str, Series]]


class CommandLoader:
    """Loads a node by running a command template, e.g. ``ssh {node} stress-ng --cpu 0 --timeout {seconds}s``.

    ``{node}`` is the node's name without the site, ``{id}`` its full id, ``{site}`` the site and
    ``{seconds}`` the load window.  The template is split like a shell line (``shlex``) and each
    word formatted, so a node name never becomes shell syntax; use ``sh -c '...'`` for pipes.
    """

    def __init__(self, template: str, seconds: float, *, grace: float = 30.0,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> None:
        import shlex

        self.words, self.seconds, self.grace, self.popen = shlex.split(template), seconds, grace, popen
        self.running: subprocess.Popen | None = None
        self.argv("site.node")  # a bad {placeholder} fails now, not after the first baseline

    def argv(self, node: str) -> list[str]:
        site, _, name = node.partition(".")
        values = {"node": name, "id": node, "site": site, "seconds": f"{self.seconds:g}"}
        try:
            return [w.format(**values) for w in self.words]
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"bad --load-cmd template: unknown placeholder {exc}", key="--load-cmd",
                              expected="{node}, {id}, {site} and {seconds}") from None

    def start(self, node: str):
        argv = self.argv(node)
        try:
            self.running = self.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        except OSError as exc:
            return f"cannot run {argv[0]!r}: {exc.strerror or exc}"
        return self.running

    def finish(self, proc) -> str | None:
        """None if the command ended well; else what went wrong."""
        if isinstance(proc, str):
            return proc
        try:
            _, err = proc.communicate(timeout=self.grace)
        except subprocess.TimeoutExpired:
            self.abort()
            return f"the load command still ran {self.grace:g} s after the load window; it was killed"
        finally:
            self.running = None if proc.poll() is not None else self.running
        if proc.returncode:
            tail = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
            return f"the load command exited with code {proc.returncode}" + (f": {tail[0]}" if tail[0] else "")
        return None

    def abort(self) -> None:
        """Kill a load command still running (the check was interrupted)."""
        proc, self.running = self.running, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()


class ManualLoader:
    """Asks a person to start and stop the load on each node (``--manual``)."""

    def __init__(self, seconds: float, prompt: Callable[[str], str] = input) -> None:
        self.seconds, self.prompt = seconds, prompt

    def ask(self, text: str) -> None:
        try:
            self.prompt(text)
        except EOFError:
            raise ConfigError("--manual asks on the terminal, but standard input is closed",
                              key="--manual", hint="run it from a terminal, or use --load-cmd") from None

    def start(self, node: str):
        self.ask(f"Load {node} now (keep it loaded {self.seconds:g} s), then press Enter ")
        return node

    def finish(self, node) -> str | None:
        self.ask(f"Stop the load on {node}, then press Enter ")
        return None


def run(nodes: Sequence[str], mapping: dict[str, tuple[str, ...]], *, loader, reader: Reader,
        plan: Plan = Plan(), rule: Rule = Rule(), clock: Callable[[], int] = now_ms,
        sleep: Callable[[float], None] = time.sleep,
        progress: Callable[[str], None] = lambda s: None) -> list[Verdict]:
    """Load each node in turn and judge it; every probe of ``mapping`` is watched each time."""
    probes = sorted(mapping)

    def check(step: str, node: str) -> Verdict:
        progress(f"{step} {node}: baseline {plan.baseline:g} s")
        t0 = clock()
        sleep(plan.baseline)
        t1 = clock()
        handle = loader.start(node)
        t_load = clock()  # after a manual start, the load begins when Enter is pressed
        progress(f"{step} {node}: load {plan.load:g} s")
        sleep(plan.load)
        t2 = clock()
        error = loader.finish(handle)
        progress(f"{step} {node}: rest {plan.rest:g} s")
        sleep(plan.rest)  # also lets the last samples of the load window reach the store
        return judge_node(node, mapping, reader(probes, t0, t2), baseline=(t0, t1), load=(t_load, t2),
                          rule=rule, load_error=error)

    try:
        return [check(f"[{i}/{len(nodes)}]", node) for i, node in enumerate(nodes, 1)]
    finally:
        abort = getattr(loader, "abort", None)
        if abort is not None:
            abort()  # a load command still running when the check is interrupted
