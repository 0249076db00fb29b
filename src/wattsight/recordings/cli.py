"""``wattsight jobs ...``: import jobs from Slurm or OAR, list them, show one and its energy.

Every verb talks to a wattsight API over REST (``--api``, default ``$WATTSIGHT_URL`` or
http://127.0.0.1:8080; ``--token``, default ``$WATTSIGHT_TOKEN``).  Only argparse is imported
at module level: the rest is imported when a verb runs.
"""

from __future__ import annotations

import argparse
import os

RAW = argparse.RawDescriptionHelpFormatter
EPILOG = """\
examples:
  wattsight jobs import --slurm --since 1d --api http://metrics:8080 --token-file ~/.wattsight-token
  wattsight jobs import --oar --oar-url https://api.example.org/oarapi --since 6h
  wattsight jobs import --slurm --input sacct.txt        (output saved with the command in docs/jobs.md)
  wattsight jobs list --user alice
  wattsight jobs show 4242
  wattsight jobs energy 4242 --probes

docs: docs/jobs.md
"""


def add_commands(sub) -> None:
    """Add the jobs verbs to the main parser's subparsers."""
    jobs = sub.add_parser("jobs", help="jobs from Slurm/OAR, and their energy per node",
                          description="Register jobs (id, nodes, start, end) with a wattsight API and show "
                                      "their energy per node and probe.", epilog=EPILOG, formatter_class=RAW)
    verbs = jobs.add_subparsers(dest="jobs_verb", metavar="import|list|show|energy", required=True)
    _add_import(verbs)
    _add_reads(verbs)


def _add_import(verbs) -> None:
    imp = verbs.add_parser("import", help="read jobs from sacct or OAR and register them",
                           epilog=EPILOG, formatter_class=RAW)
    which = imp.add_mutually_exclusive_group(required=True)
    which.add_argument("--slurm", action="store_true", help="run sacct (or read --input: its saved output)")
    which.add_argument("--oar", action="store_true", help="ask OAR's REST API (--oar-url), or run oarstat -J")
    imp.add_argument("--since", default="1d", help="jobs active since: a duration back from now (1d, 6h), "
                                                   "epoch s or ISO 8601 (default 1d)")
    imp.add_argument("--until", default="now", help="... until (default now; same forms)")
    imp.add_argument("--all-users", action="store_true",
                     help="sacct --allusers (needs the right to see them)")
    imp.add_argument("--input", help="parse this saved output (sacct text, OAR JSON) instead of asking")
    imp.add_argument("--oar-url", help="OAR's REST API, e.g. https://api.example.org/oarapi (else: oarstat)")
    imp.add_argument("--oar-user", help="user for OAR's REST API (password from $OAR_PASSWORD)")
    imp.add_argument("--tz", help="the zone of sacct's times (default: this machine's), e.g. Europe/Paris")
    imp.add_argument("--dry-run", action="store_true", help="print the jobs, register nothing")
    _api_options(imp)
    imp.set_defaults(func=import_jobs)


def _add_reads(verbs) -> None:
    ls = _verb(verbs, "list", "the registered jobs, latest first", list_jobs,
               "wattsight jobs list", "wattsight jobs list --user alice --limit 10 --api http://metrics:8080")
    ls.add_argument("--user", help="only this user's")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = _verb(verbs, "show", "one job", show_job,
                 "wattsight jobs show 4242", "wattsight jobs show 1881573 --api http://metrics:8080")
    show.add_argument("id")
    energy = _verb(verbs, "energy", "a job's energy per node (and per probe)", job_energy,
                   "wattsight jobs energy 4242", "wattsight jobs energy 4242 --probes",
                   "wattsight jobs energy 4242 --json | jq .nodes")
    energy.add_argument("id")
    energy.add_argument("--probes", action="store_true", help="also a table per probe")
    energy.add_argument("--json", action="store_true", help="print the API's JSON answer")


def _verb(verbs, name: str, help_text: str, func, *examples: str):
    """A read verb with its examples, the --api/--token options and its function."""
    epilog = "examples:\n" + "".join(f"  {e}\n" for e in examples)
    verb = verbs.add_parser(name, help=help_text, formatter_class=RAW, epilog=epilog)
    _api_options(verb)
    verb.set_defaults(func=func)
    return verb


def _api_options(p) -> None:
    p.add_argument("--api", default=os.environ.get("WATTSIGHT_URL") or "http://127.0.0.1:8080",
                   help="the wattsight API (default $WATTSIGHT_URL or http://127.0.0.1:8080)")
    p.add_argument("--token", default=os.environ.get("WATTSIGHT_TOKEN"),
                   help="bearer token for writes (default $WATTSIGHT_TOKEN)")
    p.add_argument("--token-file", help="read the token from this file")


# -- verbs --------------------------------------------------------------------------------------


def import_jobs(args, runner=None, fetch=None) -> int:
    """Read jobs from the scheduler (through ``runner`` / ``fetch``) and POST each to the API."""
    from . import client, schedulers

    jobs = _read_jobs(args, runner or schedulers.run_command, fetch or schedulers.fetch_json)
    if args.dry_run:
        client.print_jobs(jobs, "jobs read (not registered)")
        return 0
    api = client.Api.from_args(args)
    created = updated = 0
    for job in jobs:
        status, _ = api.post("/api/v1/jobs", {k: v for k, v in job.items() if v is not None})
        created += status == 201
        updated += status == 200
    source = "sacct" if args.slurm else "OAR"
    print(f"{len(jobs)} job(s) read from {source}: {created} registered, {updated} updated at {api.url}")
    return 0


def _read_jobs(args, runner, fetch) -> list[dict]:
    import json
    from pathlib import Path

    from ..consumers.api.params import parse_time_ms
    from ..errors import QueryError
    from ..sample import now_ms
    from . import schedulers

    tz = _zone(args.tz) if args.tz else schedulers.local_zone()
    try:
        since = _local(parse_time_ms(_ago(args.since), now_ms(), name="--since"), tz)
        until = _local(parse_time_ms(_ago(args.until), now_ms(), name="--until"), tz)
    except QueryError as exc:
        raise schedulers.SchedulerError(str(exc)) from None
    if args.input:
        text = Path(args.input).read_text(encoding="utf-8")
        if args.slurm:
            return schedulers.parse_sacct(text, tz)
        return schedulers.parse_oar(json.loads(text))
    if args.slurm:
        cmd = schedulers.sacct_command(since, until, all_users=args.all_users)
        return schedulers.parse_sacct(runner(cmd), tz)
    if args.oar_url:
        auth = (args.oar_user, os.environ.get("OAR_PASSWORD", "")) if args.oar_user else None
        url = args.oar_url.rstrip("/") + "/jobs/details.json"
        window = {"from": int(since.timestamp()), "to": int(until.timestamp())}
        return schedulers.parse_oar({"items": _oar_pages(fetch, url, window, auth)})
    text = runner(schedulers.oarstat_command(since, until))
    try:
        return schedulers.parse_oar(json.loads(text or "{}"))
    except ValueError:
        raise schedulers.SchedulerError(f"oarstat -J did not print JSON: {text[:200]!r}") from None


def _oar_pages(fetch, url: str, window: dict, auth, limit: int = 500) -> list[dict]:
    """Every item of OAR's paginated answer (``offset``, ``limit``; ``total`` says how many)."""
    items: list[dict] = []
    while True:
        page = fetch(url, {**window, "offset": len(items), "limit": limit}, auth=auth)
        got = page.get("items") if isinstance(page, dict) else None
        if not isinstance(got, list):
            from .schedulers import SchedulerError

            raise SchedulerError(f"{url} did not answer OAR's {{\"items\": [...]}}: is it OAR's REST API?")
        items.extend(got)
        if not got or len(items) >= int(page.get("total") or 0):
            return items


def _ago(text: str) -> str:
    """``1d`` -> ``-1d``: a bare duration on the command line means that long ago."""
    from ..consumers.api.params import parse_duration_ms
    from ..errors import QueryError

    try:
        parse_duration_ms(text)
    except QueryError:
        return text
    return f"-{text.strip()}"


def _zone(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from .schedulers import SchedulerError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SchedulerError(f"--tz {name!r} is not a time zone (e.g. Europe/Paris, UTC)") from None


def _local(ms: int, tz):
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, tz)


def list_jobs(args) -> int:
    """``jobs list``: a table of the registered jobs."""
    from . import client

    api = client.Api.from_args(args)
    params = {"limit": args.limit, **({"user": args.user} if args.user else {})}
    client.print_jobs(api.get("/api/v1/jobs", params)["jobs"], f"jobs at {api.url}")
    return 0


def show_job(args) -> int:
    """``jobs show``: one job's fields."""
    from ..recorder.api import quote
    from . import client

    job = client.Api.from_args(args).get(f"/api/v1/jobs/{quote(args.id)}")
    client.print_fields(job, f"job {job['id']}")
    return 0


def job_energy(args) -> int:
    """``jobs energy``: a job's energy per node (and probe), or the API's JSON."""
    import json

    from ..recorder.api import quote
    from . import client

    answer = client.Api.from_args(args).get(f"/api/v1/jobs/{quote(args.id)}/energy")
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    client.print_energy(answer, probes=args.probes)
    return 0
