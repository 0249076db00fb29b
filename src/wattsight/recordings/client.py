"""What ``wattsight jobs`` needs on the client side: the recorder's stdlib REST client, and rich tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .schedulers import SchedulerError


class ApiError(SchedulerError):
    """The wattsight API could not be reached, or refused the request (its detail is repeated)."""


class Api:
    """A wattsight API at ``url``, with an optional bearer token (the recorder's stdlib :class:`Client`)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        from ..recorder.api import Client

        self.client = Client(url, token, timeout)
        self.url = self.client.url

    @classmethod
    def from_args(cls, args) -> Api:
        """The API of a verb's ``--api``, ``--token`` and ``--token-file`` options."""
        token = args.token
        if getattr(args, "token_file", None):
            try:
                token = Path(args.token_file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ApiError(f"cannot read the token file {args.token_file!r}: {exc.strerror}") from None
        return cls(args.api, token)

    def _send(self, method: str, path: str, body: dict | None = None,
              params: dict | None = None) -> tuple[int, Any]:
        from ..recorder.api import ApiDown, ApiRefused

        try:
            return self.client.request(method, path, body, params)
        except ApiDown as exc:
            if exc.status is not None:  # it answered: a server error, not an unreachable server
                raise ApiError(f"{self.url}: {exc}") from None
            raise ApiError(f"cannot reach the wattsight API at {self.url} ({exc}): start `wattsight run` "
                           "there or pass --api URL") from None
        except ApiRefused as exc:
            raise ApiError(f"{self.url}: HTTP {exc.status}: {exc.detail}") from None

    def get(self, path: str, params: dict | None = None) -> Any:
        """GET ``path``: its JSON; ApiError with the API's detail on an error status."""
        return self._send("GET", path, params=params)[1]

    def post(self, path: str, body: dict) -> tuple[int, Any]:
        """POST ``body`` as JSON: (status, JSON answer); ApiError on an error status."""
        return self._send("POST", path, body)


# -- printing -----------------------------------------------------------------------------------


def when(seconds: float | None) -> str:
    """Epoch seconds as a local time, to the second ("-" for none)."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _console():
    from rich.console import Console

    return Console(width=140)


def _nodes(nodes: list[str], most: int = 4) -> str:
    shown = ", ".join(nodes[:most])
    return f"{shown} (+{len(nodes) - most})" if len(nodes) > most else shown


def print_jobs(jobs: list[dict], title: str) -> None:
    """A table of jobs: id, name, user, nodes, start, end, state."""
    from rich.table import Table

    table = Table("id", "name", "user", "nodes", "start", "end", "state", title=f"{title}: {len(jobs)}")
    for j in jobs:
        table.add_row(str(j["id"]), j.get("name") or "", j.get("user") or "", _nodes(j["nodes"]),
                      when(j.get("start")), when(j.get("end")) if j.get("end") else "running",
                      j.get("state") or "")
    _console().print(table)


def print_fields(obj: dict, title: str) -> None:
    """One object as a two-column table."""
    from rich.table import Table

    table = Table("field", "value", title=title, box=None)
    for key, value in obj.items():
        if key.endswith("_iso"):
            continue
        text = when(value) if key in ("start", "end", "updated") and value else value
        table.add_row(key, ", ".join(text) if isinstance(text, list) else str(text))
    _console().print(table)


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_energy(answer: dict, *, probes: bool = False) -> None:
    """A job's energy: one row per node and the total (and one per probe with ``probes``)."""
    from rich.table import Table

    job, e = answer["job"], answer["energy"]
    title = (f"job {job['id']} ({job.get('name') or ''}, {job.get('user') or ''}): {when(answer['from'])} -> "
             f"{when(answer['to'])}, {answer['duration_s']:.0f} s{' (running)' if answer['running'] else ''}")
    cur = e["currency"]
    table = Table("node", "energy (J)", "kWh", f"cost ({cur})", "coverage", "mean W", "peak W", title=title)
    for name, n in answer["nodes"].items():
        table.add_row(name + (" (shared)" if n.get("shared") else ""), _fmt(n["joules"]),
                      _fmt(n["kwh"], ".4f"), _fmt(n["cost"], ".4f"), f"{n['coverage']:.1%}",
                      _fmt(n["mean_power_w"]), _fmt(n["peak_power_w"]))
    table.add_row("total", _fmt(e["joules"]), _fmt(e["kwh"], ".4f"), _fmt(e["cost"], ".4f"),
                  f"{e['coverage']:.1%}", _fmt(answer["mean_power_w"]), _fmt(answer["peak_power_w"]),
                  style="bold")
    console = _console()
    console.print(table)
    if probes:
        pt = Table("probe", "energy (J)", "kWh", "coverage", "mean W", "peak W", "method", title="per probe")
        for pid, p in answer["probes"].items():
            pt.add_row(pid, _fmt(p["joules"]), _fmt(p["kwh"], ".4f"), f"{p['coverage']:.1%}",
                       _fmt(p["mean_power_w"]), _fmt(p["peak_power_w"]), p.get("method") or "-")
        console.print(pt)
    for w in answer.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")
