"""Start real ``wattsight`` processes for end-to-end tests, and talk to their API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from peers._common import free_port, http_answers, stop_process, wait_until

__all__ = ["Wattsight", "free_port"]


class Wattsight:
    """A ``python -m wattsight run ...`` child process with its log in a file."""

    def __init__(self, args: list[str], tmp: Path, *, name: str = "ws", listen: str | None = None) -> None:
        self.tmp, self.name, self.listen = tmp, name, listen
        self.log = tmp / f"{name}.log"
        env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp / "run"), "PYTHONUNBUFFERED": "1"}
        (tmp / "run").mkdir(mode=0o700, exist_ok=True)
        (tmp / "run").chmod(0o700)
        cmd = [sys.executable, "-m", "wattsight", "run", *args] + (["--listen", listen] if listen else [])
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def get(self, path: str, **params) -> dict:
        r = httpx.get(self.url + path, params=params, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the API answers /api/v1/health (or, with no API, the log says "running")."""
        if self.listen is None:
            ready = lambda: "running" in self.output()
        else:
            ready = http_answers(self.url + "/api/v1/health", 200)
        self.wait_for(ready, timeout, f"{self.name} ready", every=0.2)

    def wait_for(self, predicate, timeout: float = 60, what: str = "condition", *, every: float = 0.25):
        """``predicate()``'s first true value; AssertionError with the log if the process exits first or
        after ``timeout`` s."""
        return wait_until(predicate, timeout, what, self.proc, output=lambda: "\n" + self.output(),
                          error=AssertionError, every=every)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if not stop_process(self.proc, timeout, sig):
            raise AssertionError(f"{self.name} did not stop on signal {sig}:\n{self.output()}")
        return self.proc.returncode

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
