"""Reading the kernel's small sysfs files, with errors that say what to do.

The ``rapl``, ``hwmon`` and ``battery`` drivers read one-line files under ``/sys``.  Their
root is a setting (``root``, default ``/sys``), so tests and users point them at a copy of the
kernel's layout; the function that reads a file is injected too (``opener``), so a test can
make any file raise :class:`PermissionError` even when it runs as root, where ``chmod 000``
denies nothing.

Every failure becomes a :class:`~wattsight.errors.DriverError` naming the file:

* a missing file or folder -> :class:`~wattsight.errors.MeterReplyError`;
* :class:`PermissionError` -> :class:`~wattsight.errors.MeterPermissionError`, with the fix;
* any other :class:`OSError` (sysfs answers ``EIO``, ``ENODATA`` or ``ENODEV`` when a sensor
  has no reading) -> :class:`~wattsight.errors.MeterReplyError` with the errno's text;
* text that is not what was expected -> :class:`~wattsight.errors.MeterReplyError`.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field, ValidationInfo, field_validator

from ..errors import MeterPermissionError, MeterReplyError
from ..sample import Probe, check_probe_id, now_ms
from .base import Driver, DriverConfig, FilePath, from_config_folder

#: Reads a whole (small) file as text; the one contact with the file system's contents.
Opener = Callable[[Path], str]
#: The fix to print when a file may not be read: a text, or a function of the file's path.
Fix = str | Callable[[Path], str] | None


def read_file(path: Path) -> str:
    """The text of a sysfs file (they hold at most a page: 4096 bytes)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 8192).decode("utf-8", "replace")
    finally:
        os.close(fd)


def default_fix(path: Path) -> str:
    """The generic fix for a file this user may not read."""
    return (f"run wattsight as root, or let this user read the file: `sudo chmod o+r {path}` "
            "(until the next reboot)")


def local_node() -> str:
    """This machine's short host name, made fit for a probe id."""
    return node_name(socket.gethostname().split(".", 1)[0] or "localhost")


def node_name(text: str) -> str:
    """``text`` with every character a probe id does not allow replaced by ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "localhost"


def slug(text: str) -> str:
    """A sysfs name or label as part of a probe id: lower case, ``-`` for anything odd."""
    return re.sub(r"[^a-z0-9_+:@-]+", "-", text.strip().lower()).strip("-") or "unnamed"


class SysfsConfig(DriverConfig):
    """The settings shared by the drivers that read ``/sys``: where it is and the machine's name."""

    root: FilePath = Field(Path("/sys"), description="where sysfs is mounted (tests: a copy of its layout)")
    node: str | None = Field(None, description="the machine's name in probe ids; default: this machine's "
                                               "short host name")

    @field_validator("root")
    @classmethod
    def _from_config_folder(cls, path: Path, info: ValidationInfo) -> Path:
        return from_config_folder(path, info)

    @field_validator("node")
    @classmethod
    def _node(cls, node: str | None) -> str | None:
        if node is not None:
            check_probe_id(f"site.{node}")
        return node


class Sysfs:
    """A sysfs tree at ``root``, read through ``opener``, with precise errors naming ``probe``."""

    def __init__(self, root: Path | str = "/sys", *, opener: Opener = read_file, probe: str = "sysfs",
                 fix: Fix = default_fix) -> None:
        self.root = Path(root)
        self.opener = opener
        self.probe = probe
        self.fix = fix

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def _fix_text(self, path: Path, fix: Fix) -> str:
        fix = self.fix if fix is None else fix
        return fix(path) if callable(fix) else str(fix)

    def text(self, path: Path, *, fix: Fix = None, what: str = "") -> str:
        """The stripped text of ``path``; DriverErrors as in the module's docstring."""
        try:
            return self.opener(path).strip()
        except OSError as exc:
            raise self.error(path, exc, fix=fix, what=what) from None

    def optional(self, path: Path, *, fix: Fix = None) -> str | None:
        """The text of ``path``, or None when it does not exist (other errors still raise)."""
        try:
            return self.opener(path).strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(path, exc, fix=fix) from None

    def error(self, path: Path, exc: OSError, *, fix: Fix = None, what: str = ""):
        """The DriverError that says why ``path`` could not be read, and what to do."""
        if isinstance(exc, FileNotFoundError):
            return MeterReplyError(f"{path} is missing{_about(what)}; the kernel did not publish it: is "
                                   "the driver loaded and the device there?", probe=self.probe)
        if isinstance(exc, PermissionError):
            return MeterPermissionError(f"permission denied reading {path}. Fix: {self._fix_text(path, fix)}",
                                        probe=self.probe)
        reason = exc.strerror or type(exc).__name__
        return MeterReplyError(f"reading {path} failed: {reason} (the kernel has no reading for it now)",
                               probe=self.probe)

    def integer(self, path: Path, *, fix: Fix = None, what: str = "", minimum: int | None = None) -> int:
        """The integer in ``path`` (MeterReplyError if it is not one, or below ``minimum``)."""
        raw = self.text(path, fix=fix, what=what)
        try:
            value = int(raw)
        except ValueError:
            raise MeterReplyError(f"{path} holds {raw[:40]!r}, not an integer{_about(what)}",
                                  probe=self.probe) from None
        if minimum is not None and value < minimum:
            raise MeterReplyError(f"{path} holds {value}, out of range (expected at least {minimum})",
                                  probe=self.probe)
        return value

    def folders(self, path: Path, pattern: str = r".*") -> list[Path]:
        """The sub-folders of ``path`` (links followed) whose names match ``pattern``, sorted.

        A missing ``path`` gives an empty list: the class is simply not there.
        """
        rx = re.compile(pattern)
        try:
            entries = list(path.iterdir())
        except FileNotFoundError:
            return []
        except PermissionError:
            raise MeterPermissionError(f"permission denied listing {path}. Fix: {self._fix_text(path, None)}",
                                       probe=self.probe) from None
        return sorted((p for p in entries if rx.fullmatch(p.name) and p.is_dir()), key=natural_key)


class SysfsDriver(Driver):
    """What the drivers that read ``/sys`` share: the machine's name (``node``), its tree (``fs``, read
    through ``opener`` and naming ``permission_fix`` when a file may not be read) and probe ids
    ``<site>.<node>-<name>``."""

    #: The fix printed when a file may not be read (a function of its path).
    permission_fix: ClassVar[Callable[[Path], str]] = staticmethod(default_fix)

    def __init__(self, config: SysfsConfig, *, site: str, clock: Callable[[], int] = now_ms,
                 opener: Opener = read_file) -> None:
        super().__init__(config, site=site, clock=clock)
        self.node = config.node or local_node()
        self.fs = Sysfs(config.root, opener=opener, probe=self.node, fix=type(self).permission_fix)

    def node_probe(self, name: str) -> str:
        """The probe id of ``name`` (already slugged) on this machine."""
        return f"{self.site}.{self.node}-{name}"

    def probe(self, probe_id: str, description: str) -> Probe:
        """A probe of this driver, read every period."""
        return Probe(probe_id, driver=self.config.type, period=self.config.period, description=description)


def _about(what: str) -> str:
    return f" ({what})" if what else ""


def natural_key(path: Path) -> tuple:
    """Sort ``hwmon10`` after ``hwmon9`` and ``intel-rapl:0:10`` after ``intel-rapl:0:9``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))
