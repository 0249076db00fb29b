"""What the peers share: free ports, waiting for a peer to be ready, stopping its process, an HTTP server.

- :func:`free_port` (TCP or UDP) on 127.0.0.1;
- :func:`wait_until` polls a readiness check, failing early if the peer's process exits;
  :func:`http_answers` and :func:`tcp_listens` are the usual checks;
- :func:`stop_process`: a signal (SIGTERM), a grace time, then SIGKILL;
- :class:`QuickHTTPServer` and :class:`QuickHandler`: a threading HTTP/1.1 server whose connections have
  TCP_NODELAY and whose replies go out in one write (no 40 ms delayed-ACK wait per keep-alive GET), and
  whose :meth:`~QuickHTTPServer.close` also cuts the connections kept alive, so a stopped peer is really
  unreachable.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import httpx

T = TypeVar("T")


class PeerMissing(RuntimeError):
    """The program the peer needs is not installed (tests skip with this reason)."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 that is free now: TCP (``socket.SOCK_STREAM``) or UDP (``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], T], timeout: float, what: str, proc: subprocess.Popen | None = None, *,
               output: Callable[[], str] = lambda: "", error: type[Exception] = RuntimeError,
               every: float = 0.05, cleanup: Callable[[], object] | None = None) -> T:
    """Call ``ready()`` every ``every`` s until it gives something true, and return that.

    ``error`` (naming ``what`` and ending with ``output()``, e.g. the peer's log) if ``proc`` exits
    first or after ``timeout`` s; then, or if ``ready()`` raises, ``cleanup()`` (e.g. the peer's stop)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc is not None and proc.poll() is not None:
                raise error(f"waiting for {what}: the process exited with {proc.returncode}: {output()}")
            got = ready()
            if got:
                return got
            if time.monotonic() > deadline:
                raise error(f"waiting for {what}: not there after {timeout} s: {output()}")
            time.sleep(every)
    except BaseException:
        if cleanup is not None:
            cleanup()
        raise


def http_answers(url: str, status: int) -> Callable[[], bool]:
    """A check for :func:`wait_until`: GET ``url`` answers ``status``."""
    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == status
        except httpx.HTTPError:
            return False
    return check


def tcp_listens(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen | None, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``proc`` and wait ``timeout`` s for its end, then kill it.

    True if it ended on the signal (or had ended, or there is none), False if it had to be killed."""
    if proc is None or proc.poll() is not None:
        return True
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


class QuickHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server for peers: TCP_NODELAY on every connection; ``connections`` are the open
    ones, which :meth:`close` cuts. :meth:`wrap` may wrap each accepted socket (TLS)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def wrap(self, sock: socket.socket) -> socket.socket:
        return sock

    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.wrap(sock)
        with self._connections_lock:
            self.connections.add(sock)
        return sock, addr

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def serve_in_thread(self, name: str) -> threading.Thread:
        """Serve in a daemon thread (started, returned)."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                                  daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop serving, free the port and cut the connections still open (kept alive)."""
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            conns = list(self.connections)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class QuickHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive: a subclass may say HTTP/1.0), silent, and :meth:`send_whole` to write a reply in
    one piece."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass

    def send_whole(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Status line, ``headers``, Content-Length (unless a Transfer-Encoding is among them) and ``body``,
        with one write."""
        reason = self.responses.get(status, ("?",))[0]
        head = [f"{self.protocol_version} {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
        if not any(k.lower() == "transfer-encoding" for k, _ in headers):
            head.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
