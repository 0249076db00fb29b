r"""Sending a consumer's batches to another system: a bounded backlog and one sender thread.

::

    handle(batch)  (bus thread: appends, never waits)
         |
         v
    backlog: batches in arrival order, at most ``max_backlog`` samples; past it the OLDEST
         |   samples are dropped, counted (``dropped_samples``) and logged once per episode
         v   sender thread: up to ``batch_max`` samples, or what came within ``flush_interval`` s
    send(batch) ---> done: ``sent_samples``
                 \-> SendFailed(retryable): put back at the head; back-off with jitter; again
                 \-> SendFailed(not retryable): dropped, counted (``rejected_samples``), logged
                     with the server's message

At most ``max_backlog`` samples wait, plus the one request being sent (``batch_max``): a
request in flight cannot be taken back, so an overflow during it drops the oldest samples that
wait; a request that failed is back in the backlog, the oldest, the first dropped.  Nothing is
ever dropped silently.  :class:`HttpPost` is the HTTP side shared by the HTTP consumers: 2xx is
done, 429, 5xx and connection errors are retried, any other status is a rejection.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import httpx

from ..errors import WattsightError
from ..sample import Batch, now_ms

log = logging.getLogger("wattsight.consumers")

#: How often, at most, a repeated failure or rejection is logged again (seconds).
LOG_EVERY = 60.0


class SendFailed(WattsightError):
    """A request was not accepted.  ``retryable``: try again later; else it is dropped.

    ``rejected`` is how many samples the server refused (``None``: the whole batch) and ``written``
    how many it stored all the same, for servers that write part of a request (InfluxDB's
    "partial write").  Samples the consumer left out itself are its own counters.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 rejected: int | None = None, written: int = 0, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable, self.retry_after, self.status = retryable, retry_after, status
        self.rejected, self.written = rejected, written


class Sender:
    """One thread sending a backlog of batches through ``send(batch) -> samples written | None``."""

    def __init__(self, name: str, send: Callable[[Batch], int | None], *, batch_max: int, linger: float,
                 max_backlog: int, backoff_min: float, backoff_max: float, request_timeout: float = 10.0,
                 clock: Callable[[], int] = now_ms) -> None:
        self.name, self.send, self.clock = name, send, clock
        self.batch_max, self.linger, self.max_backlog = batch_max, linger, max_backlog
        self.backoff_min, self.backoff_max, self.request_timeout = backoff_min, backoff_max, request_timeout
        self._cv = threading.Condition()
        self._queue: deque[Batch] = deque()
        self._queued = self._inflight = 0
        self._first_at = 0.0  # monotonic time the oldest waiting samples arrived (for linger)
        self._stopping = self._closed = False
        self._deadline = float("inf")
        self._failures = self._episode_dropped = 0  # consecutive failed attempts; drops since the last success
        self._last_log = {"failure": -LOG_EVERY, "reject": -LOG_EVERY, "overflow": -LOG_EVERY}
        self._closed_logged = False
        self.last_error: str | None = None
        self.last_sent_ms: int | None = None
        self.n = {"sent_samples": 0, "sent_requests": 0, "dropped_samples": 0, "rejected_samples": 0,
                  "rejected_requests": 0, "failed_attempts": 0, "unsent_samples": 0}
        self._rng = random.Random()
        self.thread = threading.Thread(target=self._run, name=f"consumer-{name}", daemon=True)
        self.thread.start()

    # -- the bus thread ------------------------------------------------------------------
    def put(self, batch: Batch) -> None:
        """Queue ``batch``; past ``max_backlog`` waiting samples the oldest are dropped and counted."""
        n = len(batch)
        if not n:
            return
        first_drop = closed = False
        with self._cv:
            if self._closed:
                self.n["dropped_samples"] += n
                closed, self._closed_logged = not self._closed_logged, True
            else:
                if not self._queued:
                    self._first_at = time.monotonic()
                self._queue.append(batch)
                self._queued += n
                first_drop = self._trim()
                self._cv.notify()
        if closed:
            log.error("%s: closed; %d samples arrived after close() and were dropped (counted in "
                      "dropped_samples)", self.name, n)
        if first_drop:
            self._log_overflow()

    def _trim(self) -> bool:
        """Drop the oldest waiting samples beyond ``max_backlog``; True if that is to be logged."""
        excess = self._queued - self.max_backlog
        if excess <= 0:
            return False
        dropped = 0
        while excess > 0:
            head = self._queue[0]
            if len(head) <= excess:
                self._queue.popleft()
                dropped += len(head)
                excess -= len(head)
            else:
                self._queue[0] = head.rows(excess, len(head))
                dropped += excess
                excess = 0
        self._queued -= dropped
        self.n["dropped_samples"] += dropped
        first = self._episode_dropped == 0
        self._episode_dropped += dropped
        return first and self._due("overflow")  # a receiver merely slower than the meters: once a minute

    def _log_overflow(self) -> None:
        log.error("%s: backlog full (%d samples; %s); dropping the oldest samples until the receiver "
                  "takes them again (counted in dropped_samples; said once)", self.name, self.max_backlog,
                  f"last error: {self.last_error}" if self.last_error else "the receiver is slower than the meters")

    # -- the sender thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._queue or self._stopping)
                if not self._queue or time.monotonic() >= self._deadline:
                    return
                linger = self._first_at + self.linger - time.monotonic()
                self._cv.wait_for(lambda: self._stopping or self._queued >= self.batch_max, max(0.0, linger))
                batch = self._take()
            self._attempt(batch)

    def _take(self) -> Batch:
        parts, n = [], 0
        while self._queue and n < self.batch_max:
            head, room = self._queue[0], self.batch_max - n
            if len(head) <= room:
                parts.append(self._queue.popleft())
                n += len(head)
            else:
                parts.append(head.rows(0, room))
                self._queue[0] = head.rows(room, len(head))
                n = self.batch_max
        self._queued -= n
        self._inflight = n
        return Batch.concat(parts)

    def _attempt(self, batch: Batch) -> None:
        try:
            written = self.send(batch)
        except SendFailed as exc:
            if exc.retryable:
                self._retry(batch, exc)
            else:
                self._rejected(batch, exc)
        except Exception as exc:  # this thread's boundary: a bug must not stop every later send
            log.exception("%s: could not send %d samples (a bug: please report it); dropped, counted in "
                          "rejected_samples", self.name, len(batch))
            self._rejected(batch, SendFailed(f"{type(exc).__name__}: {exc}", retryable=False), quiet=True)
        else:
            self._done(len(batch) if written is None else written)

    def _done(self, written: int) -> None:
        with self._cv:
            self._inflight = 0
            self.n["sent_samples"] += written
            self.n["sent_requests"] += 1
            self.last_sent_ms = self.clock()
            failures, dropped = self._failures, self._episode_dropped
            self._failures = self._episode_dropped = 0
        if failures:
            log.warning("%s: delivering again after %d failed attempts%s", self.name, failures,
                        f"; {dropped} samples were dropped meanwhile (backlog full)" if dropped else "")

    def _rejected(self, batch: Batch, exc: SendFailed, *, quiet: bool = False) -> None:
        rejected = len(batch) if exc.rejected is None else exc.rejected
        with self._cv:
            self._inflight = 0
            self.n["rejected_samples"] += rejected
            self.n["rejected_requests"] += 1
            self.n["sent_samples"] += exc.written
            self.last_error = str(exc)
            again = self._due("reject")
        if not quiet and again:
            log.error("%s: the receiver refused %d samples, dropped (counted in rejected_samples; not "
                      "retried): %s", self.name, rejected, exc)

    def _retry(self, batch: Batch, exc: SendFailed) -> None:
        with self._cv:
            self._queue.appendleft(batch)
            self._queued += len(batch)
            self._inflight = 0
            self._first_at = float("-inf")  # no lingering: it is already late
            first_drop = self._trim()
            self.n["failed_attempts"] += 1
            self._failures += 1
            self.last_error = str(exc)
            failures, again, stopping = self._failures, self._due("failure"), self._stopping
            waiting = self._queued
        if first_drop:
            self._log_overflow()
        delay = min(self.backoff_max, self.backoff_min * 2 ** min(failures - 1, 40))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)  # jitter: senders that failed together part
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.backoff_max))
        if again:
            log.warning("%s: %s; retrying in %.1f s (attempt %d; %d samples wait, at most %d kept)",
                        self.name, exc, delay, failures, waiting, self.max_backlog)
        with self._cv:  # close() cuts the wait once, for a last prompt try
            delay = min(delay, self._deadline - time.monotonic())
            self._cv.wait_for(lambda: self._stopping and not stopping, max(0.0, delay))

    def _due(self, what: str) -> bool:
        """Rate limit for repeated log lines: True the first time, then once per LOG_EVERY s."""
        now = time.monotonic()
        first = what == "failure" and self._failures == 1
        if first or now - self._last_log[what] >= LOG_EVERY:
            self._last_log[what] = now
            return True
        return False

    # -- closing -------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> int:
        """Send what waits, for at most ``timeout`` s; returns (and logs) how many samples were not sent."""
        with self._cv:
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._cv.notify_all()
        self.thread.join(timeout + self.request_timeout + 1.0)
        with self._cv:
            self._closed = True
            left = self._queued + self._inflight
            self.n["unsent_samples"] = left
        if left:
            log.error("%s: closing with %d samples not delivered (%s)", self.name, left,
                      self.last_error or f"not sent within {timeout:g} s")
        return left

    def stats(self) -> dict:
        with self._cv:
            return dict(self.n, queued_samples=self._queued, inflight_samples=self._inflight,
                        backlog_max=self.max_backlog, last_error=self.last_error, last_sent_ms=self.last_sent_ms)


def server_message(response: httpx.Response, limit: int = 300) -> str:
    """What a server said in an error reply: its JSON ``error``/``message``, else its text (cut)."""
    text = response.text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        text = str(data.get("error") or data.get("message") or text)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "") or response.reason_phrase


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: left to the back-off
        return None


class HttpPost:
    """POSTs bodies to one URL (httpx, in the sender thread); raises SendFailed on anything but 2xx.

    Messages name the status and what the server said, not the URL (the sender's name has it).
    """

    def __init__(self, url: str, *, timeout: float, verify_tls: bool = True, ca_file: Path | None = None,
                 auth: httpx.Auth | None = None, headers: dict | None = None, params: dict | None = None) -> None:
        verify: bool | ssl.SSLContext = verify_tls
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.url, self.params = url, params or {}
        self.client = httpx.Client(timeout=timeout, verify=verify, auth=auth, headers=headers or {},
                                   follow_redirects=False)

    def __call__(self, body: bytes, headers: dict | None = None) -> httpx.Response:
        try:
            r = self.client.post(self.url, content=body, params=self.params, headers=headers)
        except httpx.TransportError as exc:
            raise SendFailed(f"{type(exc).__name__}: {exc or 'no answer'}", retryable=True) from None
        if 200 <= r.status_code < 300:
            return r
        retryable = r.status_code == 429 or r.status_code >= 500
        extra = ""
        if r.status_code == 413:
            extra = " (the request is too large for the server: lower `batch_max`)"
        elif 300 <= r.status_code < 400:
            extra = f" (redirected to {r.headers.get('location', '?')}: put that address in `url`)"
        raise SendFailed(f"HTTP {r.status_code}: {server_message(r)}{extra}", retryable=retryable,
                         retry_after=_retry_after(r.headers.get("retry-after")), status=r.status_code)

    def close(self) -> None:
        self.client.close()
