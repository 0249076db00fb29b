"""A real Prometheus exporter on 127.0.0.1: prometheus_client's registry, WSGI app and server.

Usable from pytest fixtures and from bench scripts::

    with Exporter() as exp:
        power = exp.gauge("pdu_outlet_power_watts", "Outlet power", ["outlet"])
        power.labels("7").set(183.0)
        exp.url                                   # http://127.0.0.1:<port>/metrics
        exp.stamped("dev_power_watts", "gauge", [({"gpu": "0"}, 250.0, 1_700_000_000.5)])
        exp.stop(); exp.start()                   # down, then up again on the same port

The page is prometheus_client's own (text 0.0.4, or OpenMetrics when the client asks for it);
around it, a thin WSGI layer adds what a test needs: basic auth, a 404 outside ``path``, a status
or a raw body set by the test, and a delay.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterable
from typing import Self
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler


class _Handler(_SilentHandler):
    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Stamped:
    """A collector for families whose samples carry their own timestamps (Gauge cannot)."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list]] = {}

    def collect(self) -> Iterable:
        for name, (kind, doc, rows) in list(self.families.items()):
            labelnames = sorted({k for labels, _, _ in rows for k in labels})
            fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=labelnames)
            for labels, value, ts in rows:
                fam.add_metric([labels.get(k, "") for k in labelnames], value, timestamp=ts)
            yield fam


class Exporter:
    """A prometheus_client registry served over HTTP; the test sets its gauges and counters."""

    def __init__(self, *, port: int = 0, path: str = "/metrics", auth: tuple[str, str] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._stamped = _Stamped()
        self.registry.register(self._stamped)
        self.port, self.path, self.auth = port, path, auth
        #: Answer this status instead of the page, or this raw body (with ``raw_type``).
        self.status = 200
        self.raw: bytes | None = None
        self.raw_type = "text/plain; version=0.0.4; charset=utf-8"
        #: Seconds to wait before answering (a slow or hung exporter).
        self.delay = 0.0
        self.requests = 0
        self.last_accept: str | None = None
        self._app = make_wsgi_app(self.registry)
        self._server: ThreadingWSGIServer | None = None

    # -- the metrics ----------------------------------------------------------------------------
    def gauge(self, name: str, doc: str = "", labelnames: Iterable[str] = ()) -> Gauge:
        return Gauge(name, doc or name, list(labelnames), registry=self.registry)

    def counter(self, name: str, doc: str = "", labelnames: Iterable[str] = ()) -> Counter:
        return Counter(name, doc or name, list(labelnames), registry=self.registry)

    def stamped(self, name: str, kind: str, rows: list[tuple[dict, float, float | None]], doc: str = "") -> None:
        """A family of ``kind`` ("gauge" or "counter") whose samples have timestamps (s since the epoch)."""
        self._stamped.families[name] = (kind, doc or name, rows)

    # -- the WSGI layer -------------------------------------------------------------------------
    def _wsgi(self, environ, start_response):
        self.requests += 1
        self.last_accept = environ.get("HTTP_ACCEPT")
        if self.delay:
            time.sleep(self.delay)
        if environ.get("PATH_INFO") != self.path:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"404 page not found\n"]
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            if environ.get("HTTP_AUTHORIZATION") != expected:
                start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="exporter"')])
                return [b"Unauthorized\n"]
        if self.status != 200:
            start_response(f"{self.status} Set By Test", [("Content-Type", "text/plain")])
            return [b"error\n"]
        if self.raw is not None:
            start_response("200 OK", [("Content-Type", self.raw_type)])
            return [self.raw]
        return self._app(environ, start_response)

    # -- life cycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> Self:
        if self._server is None:
            self._server = make_server("127.0.0.1", self.port, self._wsgi, ThreadingWSGIServer,
                                       handler_class=_Handler)
            self.port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True, name=f"exporter-{self.port}").start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
