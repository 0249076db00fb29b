"""Where ``check-wiring`` gets its topology and power: a running wattsight API, or a config file.

:class:`ApiReader` reads raw power series over ``GET /api/v1/series`` (a probe with an energy
counter and no power gets the counter's rate); :func:`topology_from_api` and
:func:`topology_from_config` give probe id -> the nodes it is mapped to.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import WattsightError
from .sample import Probe

MAX_PER_REQUEST = 50  # probes per /series request (keeps URLs short)
NETWORK_DRIVERS = ("snmp-switch",)


class ApiError(WattsightError):
    """The API could not be asked, or answered an error."""


class ApiReader:
    """Reads the API at ``base`` (``http://127.0.0.1:8080``); ``client`` is an httpx.Client-like object."""

    def __init__(self, base: str, *, timeout: float = 10.0, client=None) -> None:
        import httpx

        self.base = base.rstrip("/")
        self.own = client is None
        self.client = client or httpx.Client(timeout=timeout)
        self._probes: list[dict] | None = None

    def close(self) -> None:
        if self.own:
            self.client.close()

    def get(self, path: str, **params) -> dict:
        import httpx

        url = f"{self.base}{path}"
        try:
            reply = self.client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the wattsight API at {self.base} ({exc}): is `wattsight run` "
                           "serving there? (--api URL)") from None
        if reply.status_code != 200:
            detail = reply.text[:300]
            raise ApiError(f"GET {url} answered {reply.status_code}: {detail}")
        return reply.json()

    def probes(self) -> list[dict]:
        """``GET /api/v1/probes``: every probe with its nodes and metrics (asked once)."""
        if self._probes is None:
            self._probes = self.get("/api/v1/probes")["probes"]
        return self._probes

    def __call__(self, probes: list[str], start_ms: int, end_ms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Raw power (W) of ``probes`` over ``[start_ms, end_ms]``: (t in ms, W) each."""
        metrics = {p["id"]: set(p.get("metrics") or ()) for p in self.probes()}
        out = {}
        power = [p for p in probes if "power" in metrics.get(p, ())]
        energy = [p for p in probes if p not in power and "energy" in metrics.get(p, ())]
        for metric, names in (("power", power), ("energy", energy)):
            for i in range(0, len(names), MAX_PER_REQUEST):
                out.update(self._series(names[i:i + MAX_PER_REQUEST], metric, start_ms, end_ms))
        return out

    def _series(self, names: list[str], metric: str, start_ms: int, end_ms: int) -> dict:
        body = self.get("/api/v1/series", probes=",".join(names), metric=metric, resolution="raw",
                        **{"from": f"{start_ms / 1000:.3f}", "to": f"{end_ms / 1000:.3f}"})
        out = {}
        for s in body["series"]:
            pts = np.asarray(s["points"], dtype=float).reshape(-1, 2)
            t, v = (pts[:, 0] * 1000).round().astype(np.int64), pts[:, 1]
            if metric == "energy":  # J counter -> W between consecutive samples
                from .energy import rates

                t, v = rates(t, v)
            out[s["probe"]] = (t, v)
        return out


def topology_from_api(reader: ApiReader) -> dict[str, tuple[str, ...]]:
    """probe id -> nodes, for every probe the API knows with power or energy."""
    return {p["id"]: tuple(p["nodes"]) for p in reader.probes()
            if {"power", "energy"} & set(p.get("metrics") or ())}


def topology_from_config(cfg, *, load: Callable[[str], type] | None = None) -> dict[str, tuple[str, ...]]:
    """probe id -> nodes from a configuration: each driver's probes() with the ``[probes]`` sections.

    The probes of network drivers (``snmp-switch``) are left out; the driver classes are asked
    for their probes without reading any meter.
    """
    from . import app, plugins

    load = load or plugins.load
    probes: list[Probe] = []
    network: set[str] = set()
    for name, section in cfg.drivers.items():
        if not section.enabled:
            continue
        try:
            found = load(section.type)(section, site=cfg.site).probes()
        except WattsightError as exc:
            raise ApiError(f"driver {name}: cannot list its probes ({exc})") from None
        if section.type in NETWORK_DRIVERS:
            network.update(p.id for p in found)
        else:
            probes.extend(found)
    topo = app.build_topology(probes, cfg.probes)
    return {pid: p.fed_nodes for pid, p in topo.probes.items() if pid not in network}
