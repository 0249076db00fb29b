"""The ``wattsight`` command: one program, one verb per job.

Exit codes: 0 success, 1 a meter or runtime failure, 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__, cli_record, cli_tools, transfer
from .recordings import cli as recordings_cli
from .errors import ConfigError, PluginError, WattsightError

EPILOG_MAIN = """\
examples:
  wattsight run --demo                 a simulated rack; web UI and API on http://127.0.0.1:8080
  wattsight run -c site.toml           every part the file configures, in one process
  wattsight run -c site.toml --role drivers      only read meters and publish
  wattsight run -c site.toml --role store,api    only store and serve
  wattsight probe dummy --probes node-1 --once   read a meter once and print it
  wattsight config sample > site.toml  a commented configuration to start from
  wattsight config check site.toml     validate it (exit code 2 on an error)
  wattsight config import-kwapi /etc/kwapi/drivers.conf > site.toml
  wattsight config from-inventory site.yaml -o site.toml   drivers and node mappings from an inventory
  wattsight check-wiring --load-cmd 'ssh {node} stress-ng --cpu 0 --timeout {seconds}s'
  wattsight export --all --from now-1d -o day.parquet   the last day of every probe, to Parquet
  wattsight record -- make test        the energy of a command (measured, modelled, not available)
  wattsight report <recording-id> --png run.png   a recording's energy per step, and a plot
  wattsight jobs import --slurm --api http://127.0.0.1:8080   jobs from sacct, for per-job energy

docs: docs/ in the source tree (quick start, one page per driver and consumer)
"""


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _config_path(args) -> Path | None:
    path = args.config or os.environ.get("WATTSIGHT_CONFIG")
    return Path(path) if path else None


def cmd_run(args) -> int:
    from . import app, config

    path = _config_path(args)
    if path and args.demo:
        raise ConfigError("--demo runs a simulated rack on the embedded default and takes no config file",
                          key="--demo", hint="drop -c/--config (or WATTSIGHT_CONFIG) to see the demo")
    data_dir = Path(args.data_dir) if args.data_dir else None
    found = None
    if not path and not args.demo:
        from .discover import discover

        found = discover()
    cfg = config.load(path) if path else config.default(demo=args.demo, data_dir=data_dir, discovery=found)
    if found is not None:
        for line in found.summary().splitlines():
            print(f"wattsight: {line}", file=sys.stderr)
    if args.listen:
        import dataclasses

        try:
            cfg = dataclasses.replace(cfg, api=cfg.api.model_validate({**cfg.api.model_dump(), "listen": args.listen}))
        except ValueError as exc:
            raise ConfigError(f"bad --listen {args.listen!r}", key="--listen", expected="HOST:PORT") from exc
    roles = set(args.role.split(",")) if args.role else set(app.ROLES)
    if args.demo:
        print("wattsight: DEMO MODE: the probes below are a SIMULATED rack (dummy driver, "
              "provenance=modelled), not real meters.", file=sys.stderr)
    elif not path and not cfg.drivers:
        print("wattsight: no configuration given and no local meter found on this machine.\n"
              "  Serving an empty store. To see data now:  wattsight run --demo\n"
              "  To configure meters:  wattsight config sample > wattsight.toml; "
              "wattsight run -c wattsight.toml", file=sys.stderr)

    def ready(proc) -> None:
        parts = ", ".join(sorted(roles))
        where = f" on http://{cfg.api.listen} (web UI at /, REST at /api/v1)" if "api" in roles else ""
        print(f"wattsight {__version__}: running {parts}{where} "
              f"(bus {cfg.bus.endpoint}, store {cfg.store.path}); Ctrl-C stops", file=sys.stderr, flush=True)

    if "store" in roles:  # before the store's threads start: see wattsight.memory
        from .memory import keep_freed_memory

        keep_freed_memory()
    app.serve(cfg, roles, on_ready=ready)
    return 0


def _driver_options(cls, extra: list[str]) -> dict:
    """``--key value`` / ``--key=value`` pairs for a driver's Config; lists split on commas."""
    fields = cls.Config.model_fields
    opts: dict = {}
    it = iter(extra)
    for arg in it:
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}", hint="driver options look like --key value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in fields:
            known = ", ".join(f"--{k.replace('_', '-')}" for k in fields if k != "type")
            raise ConfigError(f"unknown option --{key.replace('_', '-')} for driver {cls.__name__}",
                              expected=known)
        if not eq:
            value = next(it, None)
            if value is None:
                raise ConfigError(f"--{key} needs a value")
        opts[key] = _option_value(value, fields[key].annotation)
    return opts


def _option_value(text: str, annotation):
    """A command-line value as TOML would read it (8, 0.5, true, [1, 2]); else a string,
    or a list of strings split on commas for list options."""
    import tomllib
    import typing

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    origins = {typing.get_origin(a) for a in (annotation, *typing.get_args(annotation))}
    return text.split(",") if origins & {list, tuple} else text


def cmd_probe(args, extra: list[str]) -> int:
    import time

    from pydantic import ValidationError

    from . import plugins

    try:
        cls = plugins.load(args.driver)
    except PluginError as exc:
        raise ConfigError(str(exc), key="driver") from None
    opts = _driver_options(cls, extra)
    try:
        cfg = cls.Config.model_validate({**opts, "type": args.driver}, strict=False)
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise ConfigError(f"bad options for driver {args.driver}: {problems}",
                          hint=f"`wattsight probe {args.driver} --help` and docs/drivers/{args.driver}.md "
                               "list them") from None
    driver = cls(cfg, site=args.site)
    try:
        if getattr(cls, "push", False):  # a meter that pushes: print what its stream yields
            import asyncio

            asyncio.run(_print_stream(driver, once=args.once, as_json=args.json))
            return 0
        while True:
            batch = driver.read()
            _print_batch(batch, as_json=args.json)
            if args.once:
                return 0
            time.sleep(cfg.period)
    except KeyboardInterrupt:
        return 0
    finally:
        driver.close()


async def _print_stream(driver, *, once: bool, as_json: bool) -> None:
    """Print the batches a push driver's stream yields; with ``once``, the first one with samples."""
    stream = driver.stream()
    try:
        async for batch in stream:
            if len(batch):
                _print_batch(batch, as_json=as_json)
                if once:
                    return
    finally:
        await stream.aclose()


def _print_batch(batch, *, as_json: bool) -> None:
    if as_json:
        import dataclasses

        for s in batch.samples():
            print(json.dumps(dataclasses.asdict(s)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("probe", "metric", "measured_at", "value", "unit", "kind", "provenance", box=None)
    import datetime as dt

    for s in batch.samples():
        when = dt.datetime.fromtimestamp(s.measured_at, dt.timezone.utc).isoformat(timespec="milliseconds")
        table.add_row(s.probe, s.metric, when, f"{s.value:g}", s.unit, s.kind, s.provenance)
    Console(width=140).print(table)


def cmd_plugins(args) -> int:
    from . import plugins

    for group, title in ((plugins.DRIVERS, "drivers"), (plugins.CONSUMERS, "consumers")):
        print(f"{title}:")
        for name, target, doc in plugins.describe(group):
            print(f"  {name:<12} {doc}  [{target}]")
    return 0


def cmd_config(args) -> int:
    from . import config

    if args.action == "sample":
        sys.stdout.write(config.sample_text())
    elif args.action == "check":
        cfg = config.load(args.file)
        print(f"{args.file}: OK (site {cfg.site}, {len(cfg.drivers)} driver(s), {len(cfg.probes)} probe "
              f"override(s), bus {cfg.bus.endpoint}, store {cfg.store.path}, api {cfg.api.listen})")
    elif args.action == "import-kwapi":
        from .kwapi_import import import_kwapi

        try:
            text = Path(args.file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the file: {getattr(exc, 'strerror', None) or exc}", file=str(args.file),
                              hint="give the path of Kwapi's drivers.conf (usually /etc/kwapi/drivers.conf)") from None
        sys.stdout.write(import_kwapi(text, str(args.file)))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wattsight", allow_abbrev=False, description="Where the watts go: read power, energy and "
                                "network meters, store every sample, serve them.",
                                epilog=EPILOG_MAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"wattsight {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    r = sub.add_parser("run", help="run wattsight (all parts, or --role)", description=(
        "Run every configured part in one process (drivers, bus, store, API), or the parts named by "
        "--role. With no config file (-c or $WATTSIGHT_CONFIG) it runs the embedded default: local "
        "meters, a store in the user's data folder, the API on 127.0.0.1:8080."))
    r.epilog = ("examples:\n  wattsight run --demo\n  wattsight run -c site.toml\n"
                "  wattsight run -c site.toml --role drivers        # next to the meters\n"
                "  wattsight run -c site.toml --role store,api      # on the storage host\n"
                "  wattsight run --listen 0.0.0.0:8080 --data-dir /var/lib/wattsight")
    r.formatter_class = argparse.RawDescriptionHelpFormatter
    r.add_argument("-c", "--config", help="the TOML configuration file (default: $WATTSIGHT_CONFIG)")
    r.add_argument("--role", help="comma-separated parts to run: drivers, store, api (default: all)")
    r.add_argument("--demo", action="store_true", help="a clearly labelled simulated rack (dummy driver)")
    r.add_argument("--listen", help="HOST:PORT for the API (overrides [api] listen)")
    r.add_argument("--data-dir", help="folder for the embedded default's store and bus key")

    pr = sub.add_parser("probe", allow_abbrev=False, help="read one driver and print its samples", description=(
        "Read a meter with one driver, without the rest of wattsight, and print what it reads. "
        "Driver options are the keys of its config section, as --key value (lists comma-separated). "
        "Exit code 1 if the meter cannot be read."),
        epilog="example:\n  wattsight probe dummy --probes node-1,node-2 --pattern square --once",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("driver", help="driver name (see `wattsight plugins`)")
    pr.add_argument("--once", action="store_true", help="read once and exit (default: read every period)")
    pr.add_argument("--json", action="store_true", help="one JSON object per sample")
    pr.add_argument("--site", default="local", help="site for probe names without one (default: local)")

    sub.add_parser("plugins", help="list the installed drivers and consumers",
                   description="List the drivers and consumers found through entry points.",
                   epilog="example:\n  wattsight plugins", formatter_class=argparse.RawDescriptionHelpFormatter)

    c = sub.add_parser("config", help="sample, check or import configuration files",
                       epilog="examples:\n  wattsight config sample > wattsight.toml\n"
                              "  wattsight config check wattsight.toml\n"
                              "  wattsight config import-kwapi /etc/kwapi/drivers.conf > wattsight.toml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    csub.add_parser("sample", help="print a commented sample with every section and key",
                    epilog="example:\n  wattsight config sample > wattsight.toml", formatter_class=argparse.RawDescriptionHelpFormatter)
    ck = csub.add_parser("check", help="validate a file: exit 0, or 2 with file:line: key: problem",
                         epilog="example:\n  wattsight config check wattsight.toml && echo valid",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ck.add_argument("file")
    ik = csub.add_parser("import-kwapi", help="convert a Kwapi / kwapi-g5k drivers.conf to TOML",
                         epilog="example:\n  wattsight config import-kwapi /etc/kwapi/drivers.conf > wattsight.toml",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ik.add_argument("file")
    cli_tools.add_commands(sub, csub)
    transfer.add_commands(sub)
    cli_record.add_commands(sub)
    recordings_cli.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args, extra = parser().parse_known_args(argv)
    if extra and args.verb != "probe":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose)
    try:
        if args.verb == "run":
            return cmd_run(args)
        if args.verb == "probe":
            return cmd_probe(args, extra)
        if args.verb == "plugins":
            return cmd_plugins(args)
        if hasattr(args, "func"):  # the verbs of cli_tools and transfer
            return args.func(args)
        return cmd_config(args)
    except ConfigError as exc:
        print(f"wattsight: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `wattsight plugins | head`
        sys.stderr.close()
        return 0
    except WattsightError as exc:
        print(f"wattsight: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
