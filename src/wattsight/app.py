"""One process of wattsight: the parts a configuration and a set of roles ask for, joined by the bus.

::

    drivers --Runner--> Outbox --Publisher--> bus --Subscriber--> Inbox --> consumers (store)
                                                                               |
                                                                     api (reads the store)

Roles: ``drivers`` (runner + publisher), ``store`` (subscriber + embedded store), ``api``
(REST, Prometheus; needs the store in the same process; opens the recorder's SQLite file of
recordings and jobs, ``[recorder] database``).  ``wattsight run`` hosts all
three; ``--role`` picks some, so drivers run on one host and the store and API on another
with the same file.  Even in one process the parts talk over the real bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable

from .bus import Publisher, Subscriber
from .bus_ledger import Ledger
from .errors import ConfigError
from .sample import Batch, Probe, Topology

log = logging.getLogger(__name__)

ROLES = ("drivers", "store", "api")


class Outbox:
    """Carries batches from the runner to the bus in one thread, gathering them for ``linger`` s.

    While no subscriber is connected (a consumer host restarting), batches wait in a backlog
    of at most ``backlog`` samples; past it the oldest are dropped, *counted* and logged.
    """

    def __init__(self, publisher: Publisher, *, linger: float = 0.05, batch_max: int = 50_000,
                 backlog: int = 5_000_000) -> None:
        self.pub, self.linger, self.batch_max, self.backlog_max = publisher, linger, batch_max, backlog
        self.q: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self.held: list[Batch] = []
        self.held_samples = self.dropped = self.published = self.queued = 0
        self._count = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="bus-outbox", daemon=True)
        self.thread.start()

    def put(self, batch: Batch) -> None:
        """Queue ``batch`` for the bus; past ``backlog`` queued samples it is dropped and counted."""
        with self._count:
            if self.queued + len(batch) > self.backlog_max:
                self.dropped += len(batch)
                log.error("bus: %d samples wait for the bus already (is a consumer stuck?); dropped %d "
                          "(%d in all)", self.queued, len(batch), self.dropped)
                return
            self.queued += len(batch)
        self.q.put(batch)

    def _run(self) -> None:
        done = False
        while not done:
            parts, n = [], 0
            item = self.q.get()
            deadline = time.monotonic() + self.linger
            while item is not None:
                parts.append(item)
                n += len(item)
                if n >= self.batch_max:
                    break
                try:
                    item = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            done = item is None
            with self._count:
                self.queued -= n
            self._send(parts, final=done)
        self.pub.close()

    def _send(self, parts: list[Batch], *, final: bool) -> None:
        self.held.extend(parts)
        self.held_samples += sum(len(p) for p in parts)
        wait_until = time.monotonic() + (2.0 if final else 0.0)
        while not self.pub.listening() and time.monotonic() < wait_until:
            time.sleep(0.05)
        if not self.pub.listening():
            while self.held_samples > self.backlog_max:
                lost = self.held.pop(0)
                self.held_samples -= len(lost)
                self.dropped += len(lost)
                log.error("bus: no consumer listening; backlog full, dropped %d samples (%d in all)",
                          len(lost), self.dropped)
            if final and self.held_samples:
                log.error("bus: shutting down with %d samples no consumer received", self.held_samples)
            return
        batch, self.held, self.held_samples = Batch.concat(self.held), [], 0
        self.pub.publish(batch)
        self.published += len(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop."""
        self.q.put(None)
        self.thread.join(timeout)

    def stats(self) -> dict:
        return {"published_samples": self.published, "backlog_samples": self.held_samples + self.queued,
                "dropped_samples": self.dropped, "batches_sent": self.pub.sent_batches}


class Inbox:
    """Receives batches in one thread and hands each to the consumers; counts what they acked."""

    def __init__(self, subscriber: Subscriber, consumers: list) -> None:
        self.sub, self.consumers = subscriber, consumers
        self.acked_samples = self.acked_batches = 0
        self.failures = self.failed_samples = 0
        self.last_message = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bus-inbox", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self.sub.recv(timeout_ms=100)
            if got is None:
                continue
            self.last_message = time.monotonic()
            batch, raw = got
            ok = True
            for c in self.consumers:
                try:
                    c.handle(batch, raw)
                except Exception:  # consumer boundary: one bad consumer must not stop the bus
                    ok = False
                    self.failures += 1
                    self.failed_samples += len(batch)
                    log.exception("consumer %s failed on a batch of %d samples", type(c).__name__, len(batch))
            if ok:  # acknowledged: every consumer has it (the store: in its write-ahead log)
                self.acked_batches += 1
                self.acked_samples += len(batch)
                self.sub.commit()
        self.sub.close()

    def close(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Stop once the bus has been quiet for ``quiet`` seconds (so in-flight batches land)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_message < quiet and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self.thread.join(timeout)

    def stats(self) -> dict:
        return {**self.sub.stats(), "acked_samples": self.acked_samples,
                "acked_batches": self.acked_batches, "consumer_failures": self.failures,
                "failed_samples": self.failed_samples}


def build_topology(probes: list[Probe], overrides: dict) -> Topology:
    """Driver probes with the config's ``[probes."id"]`` aliases, nodes and descriptions applied."""
    topo = Topology(probes)
    for pid, o in overrides.items():
        base = topo.probes.get(pid) or Probe(pid)
        topo.add(Probe(pid, base.driver, tuple(o.aliases) or base.aliases, tuple(o.nodes) or base.nodes,
                       base.period, o.description or base.description))
    return topo


class _Server:
    """uvicorn, without its own signal handling (the process handles signals once, here)."""

    def __init__(self, app, listen: str) -> None:
        import uvicorn

        host, _, port = listen.rpartition(":")
        config = uvicorn.Config(app, host=host or "127.0.0.1", port=int(port), log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]

    async def serve(self, stop: asyncio.Event) -> None:
        task = asyncio.create_task(self.server.serve())
        await stop.wait()
        self.server.should_exit = True
        await task


def open_store(cfg):
    """The store ``[store]`` names: the embedded one (files under path), or PostgreSQL."""
    if cfg.backend == "postgresql":
        from .consumers.pgstore import PgStore

        return PgStore(cfg)
    from .consumers.store import Store

    return Store(cfg)


class Process:
    """The parts of one wattsight process, started and stopped in the right order."""

    def __init__(self, cfg, roles: set[str], *, driver_classes: dict | None = None,
                 on_ready: Callable[[Process], None] | None = None) -> None:
        bad = roles - set(ROLES)
        if bad:
            raise ConfigError(f"unknown role(s) {', '.join(sorted(bad))}",
                              expected=f"some of {', '.join(ROLES)}")
        if "api" in roles and "store" not in roles and cfg.store.backend == "embedded":
            raise ConfigError("the api role reads the embedded store, so it must run in the same process",
                              key="--role", hint="use --role store,api")
        self.cfg, self.roles, self.on_ready = cfg, roles, on_ready
        self.driver_classes = driver_classes
        self.store = self.inbox = self.outbox = self.runner = self.api = self.recorder = None
        self.consumers: list = []

    def _drivers(self) -> dict:
        from . import plugins

        classes = self.driver_classes or {}
        return {name: (classes.get(c.type) or plugins.load(c.type), c)
                for name, c in self.cfg.drivers.items()}

    def start(self) -> None:
        """Open the store and bus sockets (errors surface here, before anything runs)."""
        from .runner import Runner

        cfg, key = self.cfg, self.cfg.bus_secret()
        if "api" in self.roles:  # first: an unreadable token or database leaves nothing else open
            from .recordings.service import open_recorder

            self.recorder = open_recorder(cfg)
        if "store" in self.roles:
            from .consumers.base import build_consumers

            self.consumers = build_consumers(cfg.consumers, cfg.site)
            try:
                self.store = open_store(cfg.store)
            except BaseException:
                for c in self.consumers:
                    c.close(timeout=0)
                raise
            ledger = Ledger(cfg.store.path.with_name(cfg.store.path.name + ".bus-ledger"))
            self.inbox = Inbox(Subscriber(cfg.bus.connect or [cfg.bus.endpoint], key, window=cfg.bus.window,
                                          ledger=ledger), [self.store, *self.consumers])
        elif "api" in self.roles:  # an API alone: only a PostgreSQL store can be read from elsewhere
            self.store = open_store(cfg.store)
        if "drivers" in self.roles:
            pub = Publisher(cfg.bus.endpoint, key, batch_max=cfg.bus.batch_max)
            self.outbox = Outbox(pub, linger=cfg.bus.linger, batch_max=cfg.bus.batch_max)
        self.runner = Runner(self._drivers() if "drivers" in self.roles else {}, site=cfg.site,
                             sink=self.outbox.put if self.outbox else (lambda b: None))
        self.topology = build_topology(self.runner.probes() if self.runner.drivers else self._config_probes(),
                                       cfg.probes)
        if "api" in self.roles:
            from .consumers.api.app import ApiContext, create_app

            ctx = ApiContext(store=self.store, topology=self.topology, config=cfg.api,
                             runner_state=self.runner.state if self.runner.drivers else None,
                             bus_stats=self.bus_stats, recorder=self.recorder)
            self.api = _Server(create_app(ctx), cfg.api.listen)

    def _config_probes(self) -> list[Probe]:
        """Probe metadata without running drivers (store/api hosts): ask each driver class.

        A driver that cannot describe its probes here (its extra is not installed on this
        host, its meter needs a connection) leaves them to the ``[probes]`` section: said once.
        """
        from . import plugins

        probes: list[Probe] = []
        for name, c in self.cfg.drivers.items():
            try:
                cls = (self.driver_classes or {}).get(c.type) or plugins.load(c.type)
                probes.extend(cls(c, site=self.cfg.site).probes())
            except Exception as exc:  # noqa: BLE001 - metadata only: the API still serves what the store holds
                log.warning("driver %s: no probe metadata on this host (%s); the [probes] section "
                            "gives aliases and nodes", name, exc)
        return probes

    def bus_stats(self) -> dict:
        out = {}
        if self.inbox:
            out["inbox"] = self.inbox.stats()
        if self.outbox:
            out["outbox"] = self.outbox.stats()
        if self.consumers:
            out["consumers"] = {c.name: c.stats() for c in self.consumers}
        return out

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self.runner.run(stop))]
        if self.api:
            tasks.append(asyncio.create_task(self.api.serve(stop)))
        if self.on_ready:
            self.on_ready(self)
        try:
            await asyncio.gather(*tasks)
        finally:
            self.close()

    def close(self) -> None:
        """Flush in pipeline order: drivers' outbox, then the inbox, the other consumers, the store."""
        if self.outbox:
            self.outbox.close()
        if self.inbox:
            self.inbox.close()
        for c in self.consumers:
            c.close(timeout=10.0)
        if self.store:
            self.store.close()
        if self.recorder:
            self.recorder.db.close()


def serve(cfg, roles: set[str], **kw) -> None:
    """Run a process until SIGINT or SIGTERM, then shut down cleanly (the store is flushed)."""
    proc = Process(cfg, roles, **kw)
    proc.start()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await proc.run(stop)

    asyncio.run(main())
