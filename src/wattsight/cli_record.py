"""``wattsight record -- <command>``: the energy of one command; ``wattsight report``: of a recording or job.

``record`` runs the command, passes its exit code on, and prints like ``perf stat``: wall time,
energy per domain with coverage and provenance, and which parts were not measured.  The figures
come from this machine's meters (local mode) or, with ``--api``, from a wattsight server that
measures the environment (probes, nodes or a job).  ``--steps`` splits the run at the command's
own markers (docs/record.md).  Only light modules are imported here; the work is in
:mod:`wattsight.recorder`.
"""

from __future__ import annotations

import argparse
import os
import sys

RAW = argparse.RawDescriptionHelpFormatter
RECORD_EPILOG = """\
examples:
  wattsight record -- sleep 2
  wattsight record --json -o energy.json -- python train.py
  wattsight record --steps -- ./bench.sh      # lines '::wattsight-step NAME' or $WATTSIGHT_STEP_FILE
  wattsight record --api http://wattsight:8080 --token $T --nodes node-1,node-2 -- make test

docs: docs/record.md
"""
REPORT_EPILOG = """\
examples:
  wattsight report 3f2c9a1e --api http://127.0.0.1:8080 --png steps.png
  wattsight report --job 4242 --api http://127.0.0.1:8080
"""


def add_commands(sub) -> None:
    """Add the record and report verbs to the main parser's subparsers."""
    r = sub.add_parser("record", help="run a command and print its energy (like perf stat)",
                       description="Run a command and print its energy: wall time, CPU package, DRAM, GPU "
                                   "and whole host where a meter exists, each marked measured or modelled, "
                                   "and the parts that were not available.  The command's exit code is "
                                   "passed on.",
                       epilog=RECORD_EPILOG, formatter_class=RAW)
    r.add_argument("--steps", action="store_true",
                   help="split at the command's step markers: output lines '::wattsight-step NAME', or lines "
                        "appended to the file named by $WATTSIGHT_STEP_FILE")
    r.add_argument("--api", default=os.environ.get("WATTSIGHT_URL") or None,
                   help="a wattsight server measuring the environment (default: $WATTSIGHT_URL; none: local "
                        "meters)")
    r.add_argument("--token", default=None, help="bearer token for the server (default: $WATTSIGHT_TOKEN)")
    r.add_argument("--scenario", help="the recording's scenario name (default: the command's name)")
    env = r.add_mutually_exclusive_group()
    env.add_argument("--probes", help="with --api: the probes to measure, comma-separated")
    env.add_argument("--nodes", help="with --api: the nodes to measure, comma-separated")
    env.add_argument("--job", help="with --api: measure the nodes of this job")
    r.add_argument("--settle", type=float, default=5.0, metavar="SECONDS",
                   help="with --api: wait up to this long for the last samples to reach the server, so that "
                        "the figures cover the whole run (default 5; 0: report at once)")
    r.add_argument("--json", action="store_true", help="print the measurement as JSON")
    r.add_argument("-o", "--output", help="write the report to this file (default: standard error)")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    r.set_defaults(func=cmd_record)

    p = sub.add_parser("report", help="print a recording's or a job's energy per step, and plot it",
                       description="Print the energy of a recording (per step) or of a job (per node and "
                                   "probe) from a wattsight server, and write a PNG of power over time with "
                                   "the steps shaded.", epilog=REPORT_EPILOG, formatter_class=RAW)
    p.add_argument("recording", nargs="?", help="the recording's id")
    p.add_argument("--job", help="a job's id instead of a recording")
    p.add_argument("--api", default=os.environ.get("WATTSIGHT_URL") or "http://127.0.0.1:8080",
                   help="the server (default: $WATTSIGHT_URL, else http://127.0.0.1:8080)")
    p.add_argument("--token", default=None,
                   help="bearer token, if reads need one (default: $WATTSIGHT_TOKEN)")
    p.add_argument("--png", help="write the plot of power over time here")
    p.add_argument("--json", action="store_true", help="print the server's report as JSON instead of a table")
    p.set_defaults(func=cmd_report)


def cmd_record(args) -> int:
    """Run the command under a recorder; print its energy; return its exit code."""
    from .errors import ConfigError

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("no command to record", key="command",
                          hint="put it after --, e.g. `wattsight record -- sleep 2`")
    from .recorder import Recorder
    from .recorder.core import comma_list, environment_from_env

    environment = ({"probes": comma_list(args.probes)} if args.probes
                   else {"nodes": comma_list(args.nodes)} if args.nodes
                   else {"job": args.job} if args.job else environment_from_env())
    rec = Recorder(args.api or "", args.token, environment)
    scenario = args.scenario or os.path.basename(command[0])
    rec.start(scenario, {"command": command})
    try:
        code = _run(command, rec if args.steps else None)
    finally:
        m = rec.stop()
    m = _settle(rec, m, args.settle)
    _print(args, m, command, code)
    return code


def _settle(rec, m, seconds: float):
    """Through a server, the measurement asked again until it covers the whole run (or ``seconds`` pass)."""
    import time

    deadline = time.monotonic() + seconds
    while m.source == "api" and m.available and m.coverage < 0.999 and time.monotonic() < deadline:
        time.sleep(0.5)
        m = rec.fetch()
    return m


def _run(command: list[str], rec) -> int:
    """Run ``command``; with a recorder, follow its step markers; its exit code (128 + signal if killed)."""
    import signal
    import subprocess
    import tempfile

    env, follow, pumps = dict(os.environ), None, []
    if rec is not None:
        from .recorder.markers import StepFile, pump

        fd, path = tempfile.mkstemp(prefix="wattsight-steps-")
        os.close(fd)
        env["WATTSIGHT_STEP_FILE"] = path
        follow = StepFile(path, rec.set_step).start()
    pipe = subprocess.PIPE if rec is not None else None
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command; we report after
    previous_term = signal.getsignal(signal.SIGTERM)
    try:
        try:
            proc = subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe)
        except OSError as exc:
            print(f"wattsight record: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
            return 127 if isinstance(exc, FileNotFoundError) else 126
        signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))  # passed on; we report
        if rec is not None:
            pumps = [pump(proc.stdout, sys.stdout.buffer, rec.set_step),
                     pump(proc.stderr, sys.stderr.buffer, rec.set_step)]
        code = proc.wait()
        for t in pumps:
            t.join()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        if follow is not None:
            follow.close()
    return 128 - code if code < 0 else code


def _print(args, m, command: list[str], code: int) -> None:
    import json
    import shlex

    from .recorder import text

    if args.json:
        out = json.dumps({"command": command, "exit_code": code, **m.to_json()}, indent=2) + "\n"
    else:
        out = "\n" + text.stat(m, title=repr(shlex.join(command)), exit_code=code)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
    else:
        sys.stderr.write(out)
        sys.stderr.flush()


def cmd_report(args) -> int:
    """Fetch a recording's or job's report, print it, and write the plot."""
    from .errors import ConfigError

    if bool(args.recording) == bool(args.job):
        raise ConfigError("give a recording id or --job ID (one of them)", key="recording",
                          hint="`wattsight report <id>`; GET /api/v1/recordings lists the ids")
    from .recorder import report

    return report.main(args)
