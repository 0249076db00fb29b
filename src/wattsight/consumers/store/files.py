"""Small file helpers of the store: its LOCK, sizes of files that may vanish, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import StoreError
from .segment import fsync_dir


def file_size(path: Path) -> int:
    """The size of ``path``, 0 if it is gone (deleted by a flush or a merge since listed)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:  # deleted by a flush since listed
        return 0


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole under a temporary name, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def lock_store(path: Path) -> int:
    """Hold ``path/LOCK`` so that a second process cannot open the same store."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one process per store is then up to the user
        return fd
    try:  # POSIX record locks belong to the process: reopening in-process (a crash test) works
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"{path}: the store is open in another process ({exc.strerror}). Stop it, "
                         "or give this one another [store] path") from exc
    return fd
