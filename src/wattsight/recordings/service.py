"""The recorder as the API uses it: the database, the ``[recorder]`` settings and the token.

:class:`Recorder` turns API requests (times already in ms) into database writes and
reports, and stored rows into JSON.  Environments name probes, nodes or a job; they are
checked against the catalog when a recording starts and resolved again for each report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config.models import RecorderConfig
from ..consumers.api.catalog import Catalog, UnknownName
from ..consumers.api.params import iso, seconds
from . import report, rules
from .db import RecordingsDB
from .errors import Invalid

ENV_KEYS = ("probes", "nodes", "job")


@dataclass
class Recorder:
    """The recordings database, its settings and the write token (None: writes are open)."""

    db: RecordingsDB
    config: RecorderConfig
    token: Any = None  # pydantic SecretStr | None

    def __post_init__(self) -> None:
        from . import jobs

        jobs.register(self)  # the process's recorder, for jobs.nodes_of (web UI, export)

    # -- environments -----------------------------------------------------------------------
    def check_environment(self, catalog: Catalog, env: dict) -> dict:
        """``env`` with probe aliases and short node names made canonical; Invalid naming what is unknown."""
        bad = [k for k in env if k not in ENV_KEYS]
        if bad or len(env) > 1:
            raise Invalid(f"environment {env!r}: give one of {{\"probes\": [...]}}, {{\"nodes\": [...]}} or "
                          "{\"job\": \"<id>\"} (or nothing: every probe with power or energy data)")
        if "job" in env:
            try:
                self.db.job(str(env["job"]))
            except UnknownName as exc:
                raise Invalid(f"environment: {exc}") from None
            return {"job": str(env["job"])}
        if "probes" in env:
            try:
                views = [catalog.resolve(p) for p in _names(env, "probes")]
            except UnknownName as exc:
                raise Invalid(f"environment: {exc}") from None
            for v in views:
                if v.energy_method is None and v.metrics:
                    raise Invalid(f"environment: probe {v.id!r} has no power or energy metric (it has: "
                                  f"{', '.join(sorted(v.metrics))}): it cannot be in a recording")
            return {"probes": list(dict.fromkeys(v.id for v in views))}
        if "nodes" in env:
            matched, unmatched = match_nodes(catalog, _names(env, "nodes"))
            if unmatched:
                raise Invalid(f"environment: no node named {', '.join(map(repr, unmatched))}; "
                              "GET /api/v1/probes lists each probe with the nodes it feeds")
            return {"nodes": matched}
        return {}

    def resolve(self, catalog: Catalog, env: dict) -> tuple[list[str], list[str], bool, list[str]]:
        """``(probes, nodes, everything, unmatched job nodes)`` of a stored environment."""
        if "job" in env:
            matched, unmatched = match_nodes(catalog, self.db.job(env["job"])["nodes"])
            return [], matched, False, unmatched
        if "nodes" in env:
            matched, unmatched = match_nodes(catalog, env["nodes"])
            return [], matched, False, unmatched
        if "probes" in env:
            return list(env["probes"]), [], False, []
        return [], [], True, []

    # -- reports ----------------------------------------------------------------------------
    def recording_report(self, store, catalog: Catalog, api_config, rid: str, now_ms: int) -> dict:
        """The figures of a recording in total and per step (a running one: up to now)."""
        rec = self.db.recording(rid)
        probes, nodes, everything, unmatched = self.resolve(catalog, rec["environment"])
        running = rec["end_ms"] is None
        end = rec["end_ms"] if not running else max(now_ms, rec["start_ms"])
        warnings = list(rec["warnings"]) + _unmatched(unmatched)

        def figures(a: int, b: int) -> dict:
            return report.span_report(store, catalog, probes, nodes, a, b, api_config, everything=everything)

        steps = []
        for s in rec["steps"]:
            s_end = s["end_ms"] if s["end_ms"] is not None else max(end, s["start_ms"])
            steps.append({"name": s["name"], "start": seconds(s["start_ms"]), "end": seconds(s_end),
                          "open": s["end_ms"] is None, **figures(s["start_ms"], s_end)})
        if running:
            warnings.append(f"recording {rid!r} is running: figures are up to now ({iso(end)})")
        return {"recording": recording_json(rec), "running": running,
                "price_per_kwh": api_config.price_per_kwh, "currency": api_config.currency,
                "total": figures(rec["start_ms"], end), "steps": steps, "warnings": warnings}

    def job_energy(self, store, catalog: Catalog, api_config, jid: str, now_ms: int) -> dict:
        """The figures ``R`` of a job over its run (a running job: up to now), per node and probe."""
        job = self.db.job(jid)
        _, nodes, _, unmatched = self.resolve(catalog, {"job": jid})
        running = job["end_ms"] is None
        end = job["end_ms"] if not running else max(now_ms, job["start_ms"])
        warnings = _unmatched(unmatched)
        if running:
            warnings.append(f"job {jid!r} has no end yet: figures are up to now ({iso(end)})")
        figures = report.span_report(store, catalog, [], nodes, job["start_ms"], end, api_config)
        return {"job": job_json(job), "running": running, **figures, "unmatched_nodes": unmatched,
                "warnings": warnings}

    # -- clocks -----------------------------------------------------------------------------
    def clock_warnings(self, offset_ms: int | None, what: str) -> list[str]:
        """A warning when a caller's clock is further off than ``max_clock_skew`` (else none)."""
        return rules.clock_warnings(offset_ms, self.config.max_clock_skew, what)


def _names(env: dict, key: str) -> list[str]:
    names = env[key]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise Invalid(f"environment.{key} must be a non-empty list of names, not {names!r}")
    return names


def _unmatched(unmatched: list[str]) -> list[str]:
    if not unmatched:
        return []
    text = (f"no probe feeds node(s) {', '.join(map(repr, unmatched))}: they are left out of the figures "
            "(map nodes to probes with [probes.\"<id>\"] nodes = [...])")
    return [text]


def match_nodes(catalog: Catalog, names: list[str]) -> tuple[list[str], list[str]]:
    """``(wattsight node names, names matching none)`` for a scheduler's host names.

    A name matches, in this order: a node exactly; ``<site>.<host>`` for a host name
    ``host.site.domain`` (Grid'5000: ``taurus-7.lyon.grid5000.fr`` is ``lyon.taurus-7``); the
    node whose name without its site is the name, or the name's first label, when only one
    site has it (a scheduler's ``node-1`` is ``demo.node-1``).
    """
    short: dict[str, list[str]] = {}
    for node in catalog.nodes:
        short.setdefault(node.split(".", 1)[-1], []).append(node)
    matched: list[str] = []
    unmatched: list[str] = []
    for name in names:
        found = _match(catalog.nodes, short, name)
        if found is None:
            unmatched.append(name)
        elif found not in matched:
            matched.append(found)
    return matched, unmatched


def _match(nodes: dict, short: dict[str, list[str]], name: str) -> str | None:
    labels = name.split(".")
    if name in nodes:
        return name
    if len(labels) > 2 and f"{labels[1]}.{labels[0]}" in nodes:
        return f"{labels[1]}.{labels[0]}"
    for candidate in (name, labels[0]):
        if len(short.get(candidate, ())) == 1:
            return short[candidate][0]
    return None


# -- JSON -----------------------------------------------------------------------------------


def _time(prefix: str, ms: int | None) -> dict[str, Any]:
    return {prefix: None if ms is None else seconds(ms), f"{prefix}_iso": None if ms is None else iso(ms)}


def _offset(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def step_json(s: dict) -> dict[str, Any]:
    """A stored step as the API shows it (times in epoch seconds)."""
    return {"name": s["name"], **_time("start", s["start_ms"]), **_time("end", s["end_ms"]),
            "open": s["end_ms"] is None, "end_explicit": s["end_explicit"],
            "clock_offset_s": _offset(s["clock_offset_ms"])}


def recording_json(rec: dict) -> dict[str, Any]:
    """A stored recording (with its steps when loaded) as the API shows it."""
    out = {"id": rec["id"], "scenario": rec["scenario"], "environment": rec["environment"],
           **_time("start", rec["start_ms"]), **_time("end", rec["end_ms"]), "running": rec["end_ms"] is None,
           "clock_offset_s": _offset(rec["clock_offset_ms"]), "metadata": rec["metadata"],
           "warnings": rec["warnings"], **_time("created", rec["created_ms"])}
    if "steps" in rec:
        out["steps"] = [step_json(s) for s in rec["steps"]]
    return out


def job_json(job: dict) -> dict[str, Any]:
    """A stored job as the API shows it."""
    return {"id": job["id"], "name": job["name"], "user": job["user"], "nodes": job["nodes"],
            **_time("start", job["start_ms"]), **_time("end", job["end_ms"]),
            "running": job["end_ms"] is None,
            "state": job["state"], "source": job["source"], "metadata": job["metadata"],
            **_time("updated", job["updated_ms"])}


def open_recorder(cfg) -> Recorder:
    """The recorder of a whole :class:`~wattsight.config.Config`: its database opened, its token read."""
    rc: RecorderConfig = getattr(cfg, "recorder", None) or RecorderConfig()
    return Recorder(RecordingsDB(rc.database_path(cfg.store)), rc, rc.read_token())
