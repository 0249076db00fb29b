"""The topology verbs of the ``wattsight`` command: ``config from-inventory`` and ``check-wiring``.

:mod:`wattsight.cli` declares them with :func:`add_commands`, which binds each parser to the
function that runs it (``args.func``), as :func:`wattsight.transfer.add_commands` does; the work
is done in :mod:`wattsight.inventory_toml` and :mod:`wattsight.wiring`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError
from .recorder.core import comma_list

RAW = argparse.RawDescriptionHelpFormatter


def add_verb(sub, name: str, *, help: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A sub-command parser whose ``--help`` ends with ``examples`` (one command a line, kept as written)."""
    return sub.add_parser(name, help=help, description=description,
                          epilog="examples:\n" + "\n".join(f"  {e}" for e in examples), formatter_class=RAW)


def add_commands(sub, csub) -> None:
    """Add ``check-wiring`` to the verbs ``sub`` and ``from-inventory`` to the ``config`` actions ``csub``."""
    _add_from_inventory(csub)
    _add_check_wiring(sub)


def _add_from_inventory(csub) -> None:
    fi = add_verb(
        csub, "from-inventory", help="generate drivers and probe mappings from an inventory YAML",
        description="Write a wattsight configuration from an inventory of PDUs, BMCs, nodes and switches "
                    "(docs/inventory.md): one section per device, one [probes] section per outlet or port "
                    "with the nodes it feeds, comments saying where each came from.",
        examples=["wattsight config from-inventory site.yaml -o wattsight.toml",
                  "wattsight config from-inventory site.yaml --bus-key /etc/wattsight/bus.key | less"])
    fi.add_argument("file", help="the inventory (YAML)")
    fi.add_argument("-o", "--output", help="write the configuration here (default: standard output)")
    fi.add_argument("--bus-key", default="/etc/wattsight/bus.key",
                    help="the bus key file the configuration names (default: /etc/wattsight/bus.key)")
    fi.set_defaults(func=from_inventory)


def from_inventory(args) -> int:
    from . import inventory, inventory_toml

    inv, src = inventory.load(args.file)
    plan = inventory_toml.plan(inv, src)
    text = inventory_toml.render(plan, src.path, bus_key=args.bus_key)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the configuration: {exc.strerror}", file=args.output) from None
    else:
        sys.stdout.write(text)
    probes = plan.probes()
    mapped = sum(1 for m in probes.values() if m.nodes)
    print(f"{args.output or 'configuration'}: {len(plan.sections)} driver section(s), {len(probes)} probe(s) "
          f"({mapped} mapped to nodes), {len(plan.notes)} note(s) on what is not measured",
          file=sys.stderr)
    return 0


def _add_check_wiring(sub) -> None:
    w = add_verb(
        sub, "check-wiring", help="load each node in turn and check that its probes, and only those, rise",
        description="Load one node at a time (a command, or by hand) and check from measured power that the "
                    "probes mapped to it, and only those, rise. A probe rises when the median of its load "
                    "window exceeds the median of its baseline by max(K x its baseline noise, MIN_RISE W) "
                    "(docs/check-wiring.md). Exit code 1 if any node has a problem.",
        examples=["wattsight check-wiring --load-cmd 'ssh {node} stress-ng --cpu 0 --timeout {seconds}s'",
                  "wattsight check-wiring --manual --nodes lyon.taurus-1,lyon.taurus-2 --json",
                  "wattsight check-wiring -c site.toml --api http://monitor:8080 --load-cmd '...'"])
    how = w.add_mutually_exclusive_group(required=True)
    how.add_argument("--load-cmd", metavar="TEMPLATE",
                     help="command loading a node for {seconds} s; {node} (name without the site), {id}, {site}")
    how.add_argument("--manual", action="store_true", help="ask on the terminal to start and stop each load")
    w.add_argument("--api", help="the wattsight API to read power from (default: the config's [api] listen, "
                                 "else http://127.0.0.1:8080)")
    w.add_argument("-c", "--config", help="take the probe -> nodes mapping from this file (default: the API's)")
    w.add_argument("--nodes", help="comma-separated nodes to load (default: every node a probe is mapped to)")
    w.add_argument("--baseline", type=float, default=20.0, help="s of baseline before each load (default 20)")
    w.add_argument("--load", type=float, default=30.0, help="s of load per node (default 30)")
    w.add_argument("--rest", type=float, default=20.0, help="s of rest after each load (default 20)")
    w.add_argument("--settle", type=float, default=5.0, help="s at the start of the load not judged (default 5)")
    w.add_argument("--k", type=float, default=5.0, help="rise needed, in baseline noise units (default 5)")
    w.add_argument("--min-rise", type=float, default=10.0, help="W; the least rise that counts (default 10)")
    w.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    w.set_defaults(func=check_wiring)


def _nodes(wanted: str | None, mapping: dict[str, tuple[str, ...]]) -> list[str]:
    import difflib

    known = sorted({n for pid, nodes in mapping.items() for n in nodes if nodes != (pid,)})
    if not wanted:
        if not known:
            raise ConfigError("no probe is mapped to a node", key="--nodes",
                              hint="set `nodes` in the [probes] sections, or name the nodes with --nodes")
        return known
    out = []
    every = {n for nodes in mapping.values() for n in nodes}
    for name in comma_list(wanted):
        short = [n for n in every if n.split(".", 1)[-1] == name]
        if name in every or "." in name:
            out.append(name)
        elif len(short) == 1:
            out.append(short[0])
        else:
            near = difflib.get_close_matches(name, list(every), n=3)
            raise ConfigError(f"unknown node {name!r}", key="--nodes", expected="a node id such as site.node",
                              hint=f"did you mean {', '.join(near)}?" if near else "GET /api/v1/probes lists them")
    return out


def check_wiring(args, *, reader=None, loader=None, clock=None, sleep=None) -> int:
    """The ``check-wiring`` verb; tests inject the reader, loader, clock and sleep."""
    from . import wiring
    from .wiring_api import ApiReader, topology_from_api, topology_from_config

    for name in ("baseline", "load", "rest", "settle", "k", "min_rise"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must not be negative", key=f"--{name}")
    if args.settle >= args.load:
        raise ConfigError("--settle must be shorter than --load: nothing of the load would be judged",
                          key="--settle")
    if loader is None:
        loader = wiring.ManualLoader(args.load) if args.manual else wiring.CommandLoader(args.load_cmd, args.load)
    cfg = None
    if args.config:
        from . import config

        cfg = config.load(args.config)
    api = args.api or (f"http://{cfg.api.listen}" if cfg else "http://127.0.0.1:8080")
    reader = reader or ApiReader(api)
    mapping = topology_from_config(cfg) if cfg else topology_from_api(reader)
    nodes = _nodes(args.nodes, mapping)
    plan = wiring.Plan(args.baseline, args.load, args.rest)
    rule = wiring.Rule(args.k, args.min_rise, args.settle)
    total = len(nodes) * (plan.baseline + plan.load + plan.rest)
    print(f"wattsight: checking {len(nodes)} node(s) against {len(mapping)} probe(s) from {api}; "
          f"about {total / 60:.1f} min", file=sys.stderr)
    extra = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}
    try:
        verdicts = wiring.run(nodes, mapping, loader=loader, reader=reader, plan=plan, rule=rule,
                              progress=lambda s: print(s, file=sys.stderr, flush=True), **extra)
    except KeyboardInterrupt:
        print("wattsight: check-wiring interrupted: no verdict (a running load command was stopped)",
              file=sys.stderr)
        return 130
    finally:
        if hasattr(reader, "close"):
            reader.close()
    pairs = wiring.swaps(verdicts)
    if args.json:
        print(json.dumps({"ok": not any(v.problem for v in verdicts), "api": api,
                          "rule": vars(rule), "plan": vars(plan), "nodes": [v.as_json() for v in verdicts],
                          "swaps": [dict(zip(("probe", "rose_for", "swapped_with", "which_rose_for"), p))
                                    for p in pairs]},
                         indent=2))
    else:
        _table(verdicts, pairs)
    return 1 if any(v.problem for v in verdicts) else 0


def _table(verdicts, pairs) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("node", "status", "probe", "mapped to", "baseline W", "loaded W", "rise W", "needed W", "rose",
                  title="check-wiring", show_lines=True)
    style = {"ok": "green", "not-monitored": "yellow"}
    for v in verdicts:
        rows = v.evidence or ()
        first = True
        for e in rows or [None]:
            cells = ["-"] * 7 if e is None else [
                e.probe, ", ".join(e.nodes), _n(e.baseline_w), _n(e.loaded_w), _n(e.rise_w), _n(e.threshold_w),
                "yes" if e.rose else "no"]
            status = f"[{style.get(v.status, 'red')}]{v.status}[/]" if first else ""
            table.add_row(v.node if first else "", status, *cells)
            first = False
    console = Console(width=160, highlight=False)
    console.print(table)
    for v in verdicts:
        if v.status != "ok":
            console.print(f"{v.node}: {v.message}", highlight=False)
    for x, a, y, b in pairs:
        console.print(f"[red]{x} and {y} look swapped[/]: {x} rose for {a}, {y} rose for {b}", highlight=False)
    bad = sum(v.problem for v in verdicts)
    console.print(f"{len(verdicts) - bad} node(s) OK or not monitored, {bad} with a problem")


def _n(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
