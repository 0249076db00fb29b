"""A registered job's nodes, for other parts of the API (the web UI's and export's ``?job=``).

``nodes_of(job, recorder, catalog)`` is the whole interface: the wattsight node names a job
ran on, its scheduler host names matched as :func:`~.service.match_nodes` does.  Callers that
hold the app's context pass ``ctx.recorder`` and a catalog; without them, the recorder opened
last in this process (``wattsight run`` opens one) and the scheduler's names as registered.
"""

from __future__ import annotations

import weakref

from ..consumers.api.catalog import UnknownName
from ..errors import QueryError

_current: weakref.ref | None = None


def register(recorder) -> None:
    """Remember ``recorder`` as this process's (called when a Recorder is made)."""
    global _current
    _current = weakref.ref(recorder)


def nodes_of(job: str, recorder=None, catalog=None) -> list[str]:
    """The nodes of job ``job``: wattsight node names with a ``catalog`` (UnknownName when none of
    its hosts matches a node), else the host names registered; UnknownName for an unknown job."""
    from .service import match_nodes

    rec = recorder if recorder is not None else (_current() if _current is not None else None)
    if rec is None:
        raise QueryError("selection by job needs the recorder's database: run the api role "
                         "(`wattsight run`), or pass the job's nodes with nodes=<node>[,<node>...]")
    hosts = rec.db.job(str(job))["nodes"]
    if catalog is None:
        return list(hosts)
    matched, unmatched = match_nodes(catalog, hosts)
    if not matched:
        raise UnknownName(f"no probe feeds the nodes of job {job!r} ({', '.join(unmatched)}); map them with "
                          "[probes.\"<id>\"] nodes = [...]")
    return matched
