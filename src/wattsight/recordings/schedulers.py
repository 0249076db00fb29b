"""Jobs from a scheduler: Slurm's ``sacct`` and OAR (its REST API or ``oarstat -J``).

Parsing is a pure function of the scheduler's raw reply (tested on recorded replies under
``tests/data/jobs/``); running the command goes through a *runner* (``cmd -> stdout``), a
parameter whose default really runs it, and fetching OAR's REST API through a *fetch*
(``url, params -> JSON``).  Each job comes out as the body of ``POST /api/v1/jobs``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any

from ..errors import WattsightError

SACCT_FORMAT = "JobID,JobName,User,NodeList,Start,End,State"
#: sacct's times carry no zone: they are in the cluster's local time.
SACCT_TIME = "%Y-%m-%dT%H:%M:%S"
Runner = Callable[[list[str]], str]


class SchedulerError(WattsightError):
    """A scheduler's command or API could not be run, or answered something unreadable."""


# -- Slurm hostlists --------------------------------------------------------------------------

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top(text: str) -> list[str]:
    """``"a[1-2],b,c[3,5]"`` -> ``["a[1-2]", "b", "c[3,5]"]``: commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth < 0 or depth > 1:
            raise SchedulerError(f"hostlist {text!r}: unbalanced or nested brackets")
        current += ch
    if depth:
        raise SchedulerError(f"hostlist {text!r}: a '[' is not closed")
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _expand_brackets(body: str, text: str) -> list[str]:
    out = []
    for item in body.split(","):
        m = _RANGE.match(item.strip())
        if not m:
            raise SchedulerError(f"hostlist {text!r}: {item!r} is not a number or a range such as 01-03")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo):
            raise SchedulerError(f"hostlist {text!r}: the range {item!r} goes down")
        if int(hi) - int(lo) > 100_000:
            raise SchedulerError(f"hostlist {text!r}: the range {item!r} is too large")
        width = len(lo) if lo.startswith("0") else 0
        out.extend(str(i).zfill(width) for i in range(int(lo), int(hi) + 1))
    return out


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compact host list as names: ``node[01-03,07],gpu1`` -> node01 node02 node03 node07 gpu1.

    Several bracket groups in one name multiply (``r[1-2]n[1-2]`` -> r1n1 r1n2 r2n1 r2n2); leading
    zeros are kept; ``None assigned`` and ``(null)`` (no node yet) give no host.
    """
    text = (text or "").strip()
    if text in ("", "None assigned", "(null)", "None"):
        return []
    hosts: list[str] = []
    for part in _split_top(text):
        names = [""]
        for piece in re.split(r"(\[[^\]]*\])", part):
            choices = _expand_brackets(piece[1:-1], text) if piece.startswith("[") else [piece]
            names = [n + c for n in names for c in choices]
        for name in names:
            if name not in hosts:
                hosts.append(name)
    return hosts


# -- Slurm sacct ------------------------------------------------------------------------------


def sacct_command(since: datetime, until: datetime, *, all_users: bool = False) -> list[str]:
    """The ``sacct`` call listing jobs (allocations only, ``-X``) active between two local times."""
    cmd = ["sacct", "--parsable2", "--noheader", "-X", f"--format={SACCT_FORMAT}",
           "-S", since.strftime(SACCT_TIME), "-E", until.strftime(SACCT_TIME)]
    return [*cmd, "--allusers"] if all_users else cmd


def _sacct_time(text: str, tz: tzinfo | None, line: int) -> float | None:
    text = text.strip()
    if text in ("", "Unknown", "None"):
        return None
    try:
        when = datetime.strptime(text, SACCT_TIME)
    except ValueError:
        raise SchedulerError(f"sacct output line {line}: {text!r} is not a time like 2024-05-01T10:00:00 "
                             "(sacct's default format; unset SLURM_TIME_FORMAT)") from None
    return when.replace(tzinfo=tz).timestamp() if tz is not None else when.astimezone().timestamp()


def parse_sacct(text: str, tz: tzinfo | None = None) -> list[dict[str, Any]]:
    """Jobs from ``sacct --parsable2 --noheader -X --format=JobID,JobName,User,NodeList,Start,End,State``.

    Times are read in ``tz`` (None: this machine's zone, as sacct prints the cluster's local
    time).  Jobs that have not started (no start time, no node) are left out.
    """
    jobs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 7:
            raise SchedulerError(f"sacct output line {n}: {len(fields)} fields, expected 7 "
                                 f"({SACCT_FORMAT} with --parsable2): {line!r}")
        job_id, name, user, nodelist, start, end, state = (f.strip() for f in fields)
        nodes, begun = expand_hostlist(nodelist), _sacct_time(start, tz, n)
        if not nodes or begun is None:
            continue
        jobs.append({"id": job_id, "name": name or None, "user": user or None, "nodes": nodes,
                     "start": begun, "end": _sacct_time(end, tz, n),
                     "state": state.split(" ")[0] or None, "source": "slurm"})
    return jobs


# -- OAR ----------------------------------------------------------------------------------------


def _oar_items(payload: Any) -> Iterable[dict]:
    """The jobs of a REST answer (``{"items": [...]}``), of ``oarstat -J`` (``{"<id>": {...}}``) or a list."""
    if isinstance(payload, dict) and isinstance(payload.get("items"), list):
        return payload["items"]
    if isinstance(payload, dict):
        return [v for v in payload.values() if isinstance(v, dict)]
    if isinstance(payload, list):
        return payload
    raise SchedulerError(f"OAR answer: expected a JSON object or list of jobs, got {type(payload).__name__}")


def _first(job: dict, *keys: str) -> Any:
    return next((job[k] for k in keys if job.get(k) not in (None, "")), None)


def _oar_nodes(job: dict) -> list[str]:
    nodes = job.get("assigned_network_address")
    if isinstance(nodes, list):
        return list(dict.fromkeys(str(n) for n in nodes))
    listed = job.get("nodes")
    if isinstance(listed, list):  # the REST API's details: [{"network_address": ...}, ...]
        return list(dict.fromkeys(str(n["network_address"]) for n in listed
                                  if isinstance(n, dict) and n.get("network_address")))
    return []


def parse_oar(payload: Any) -> list[dict[str, Any]]:
    """Jobs from OAR: ``GET /oarapi/jobs/details.json`` or ``oarstat -J`` (both OAR 2.5 and OAR 3 keys).

    Times are epoch seconds (0 means "not yet"); jobs that have not started or hold no node
    are left out.
    """
    jobs = []
    for job in _oar_items(payload):
        job_id = _first(job, "id", "Job_Id", "job_id")
        start = _first(job, "start_time", "startTime")
        stop = _first(job, "stop_time", "stopTime")
        nodes = _oar_nodes(job)
        if job_id is None or not start or not nodes:
            continue
        try:
            start_s, stop_s = float(start), float(stop) if stop else None
        except (TypeError, ValueError):
            raise SchedulerError(f"OAR job {job_id}: start {start!r} / stop {stop!r} are not epoch "
                                 "seconds") from None
        jobs.append({"id": str(job_id), "name": _first(job, "name"), "user": _first(job, "owner", "user"),
                     "nodes": nodes, "start": start_s, "end": stop_s or None,
                     "state": _first(job, "state"), "source": "oar"})
    return jobs


def oarstat_command(since: datetime | None = None, until: datetime | None = None) -> list[str]:
    """``oarstat -J`` (current jobs), or with ``--gantt`` the jobs between two local times."""
    if since is None:
        return ["oarstat", "-J"]
    fmt = "%Y-%m-%d %H:%M:%S"
    until = until or datetime.now()
    return ["oarstat", "-J", "--gantt", f"{since.strftime(fmt)}, {until.strftime(fmt)}"]


# -- the seams ------------------------------------------------------------------------------------


def run_command(cmd: list[str], timeout: float = 120.0) -> str:
    """Run a scheduler command and return its standard output; SchedulerError saying why it failed."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SchedulerError(f"{cmd[0]} is not installed here: run this on a login node of the cluster, or "
                             f"save its output there and pass it with --input FILE") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{' '.join(cmd)} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        raise SchedulerError(f"{' '.join(cmd)} failed with exit code {done.returncode}: "
                             f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def fetch_json(url: str, params: dict | None = None, *, auth: tuple[str, str] | None = None,
               timeout: float = 30.0) -> Any:
    """GET a JSON document (OAR's REST API); SchedulerError with the status and what to check."""
    import httpx

    try:
        r = httpx.get(url, params=params, auth=auth, timeout=timeout, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise SchedulerError(f"cannot reach {url}: {exc}; check --oar-url") from None
    if r.status_code != 200:
        raise SchedulerError(f"{url} answered {r.status_code}: {r.text[:200]}")
    try:
        return r.json()
    except ValueError:
        raise SchedulerError(f"{url} did not answer JSON (is it OAR's REST API, e.g. "
                             "https://api.example.org/oarapi/jobs/details.json?)") from None


def local_zone() -> tzinfo:
    """This machine's time zone (sacct prints times in it)."""
    return datetime.now(UTC).astimezone().tzinfo or UTC
