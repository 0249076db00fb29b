"""The append-only write-ahead log: what makes ``Store.handle()`` durable before it returns.

The log is a folder of numbered files (``000000000042.wal``); the store writes to the newest
one and starts a new one at each flush, so a segment covers a contiguous range of files and,
once the segment is durable, those files are deleted.  A file is never appended to after a
restart: a torn record at its end would hide whatever came after it.

Each record is::

    b"WSR1" | length: uint32 LE | crc32(length bytes + payload): uint32 LE | payload

where the payload is exactly :func:`wattsight.codec.encode_batch` of the batch (what came in
on the bus, so nothing is re-encoded).  The 4-byte marker lets replay find the next record
after a corrupt one.  One ``writev()`` per record: after ``kill -9`` a record is either whole
or the torn last one; ``fsync=True`` adds an ``fsync()`` per record for power loss.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...codec import decode_batch
from ...errors import MessageRefused, StoreError
from ...sample import Batch
from .segment import fsync_dir

log = logging.getLogger("wattsight.store")

MAGIC = b"WSR1"
HEADER = struct.Struct("<4sII")
MAX_RECORD = 1 << 31  # a larger length field is corruption, not a batch
NAME = re.compile(r"^(\d{12})\.wal$")


def wal_name(number: int) -> str:
    return f"{number:012d}.wal"


def wal_files(directory: Path) -> list[tuple[int, Path]]:
    """(number, path) of the log files in ``directory``, oldest first."""
    found = [(int(m[1]), p) for p in directory.iterdir() if (m := NAME.match(p.name))]
    return sorted(found)


def record(payload: bytes) -> tuple[bytes, bytes]:
    """The header and payload of one record (written together with one writev)."""
    length = struct.pack("<I", len(payload))
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload, zlib.crc32(length))), payload


@dataclass(frozen=True)
class Problem:
    """Something replay had to skip: where, what, how many bytes."""

    file: str
    offset: int
    kind: str  # "torn" (the end of the last record written) or "corrupt" (in the middle)
    detail: str
    bytes: int

    def __str__(self) -> str:
        what = "torn last record" if self.kind == "torn" else "corrupt record"
        return f"{self.file}: {what} at offset {self.offset} ({self.detail}); {self.bytes} bytes skipped"


class Wal:
    """The current log file: append records, rotate to a new file, delete covered files."""

    def __init__(self, directory: Path, number: int, *, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync
        self.number = number
        self._fd = -1
        self._size = 0
        self._open(number)

    def _open(self, number: int) -> None:
        """Start file ``number``; the current one (if any) is closed only once that worked."""
        path = self.directory / wal_name(number)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_BINARY", 0)
            fd = os.open(path, flags, 0o644)
            if self.fsync:
                fsync_dir(self.directory)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create write-ahead log file: {exc}. "
                             "Check the store path, its permissions and free space") from exc
        self.close()
        self._fd, self.number, self._size = fd, number, 0

    @property
    def path(self) -> Path:
        return self.directory / wal_name(self.number)

    def append(self, payload: bytes) -> int:
        """Write one record; on return it survives kill -9 (and power loss with fsync).  Bytes written."""
        parts = record(payload)
        want = len(parts[0]) + len(parts[1])
        try:
            done = os.writev(self._fd, parts)
            while done < want:  # a short write (signal, full disk): finish it or fail below
                data = (parts[0] + parts[1])[done:]
                done += os.write(self._fd, data)
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self._undo()
            raise StoreError(f"{self.path}: cannot append to the write-ahead log: {exc}. "
                             "The batch was not stored; check free space") from exc
        self._size += want
        return want

    def _undo(self) -> None:
        """Cut a half-written record so that later records stay readable."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:  # the record stays torn; replay reports and skips it
            log.error("%s: cannot cut a failed write back to %d bytes: %s", self.path, self._size, exc)

    def rotate(self) -> int:
        """Close the current file and start the next; returns the number of the closed file."""
        closed = self.number
        self._open(closed + 1)
        return closed

    def delete_upto(self, number: int) -> None:
        """Delete the log files numbered <= ``number`` (their samples are in a durable segment)."""
        for n, path in wal_files(self.directory):
            if n <= number and n != self.number:
                path.unlink(missing_ok=True)
        if self.fsync:
            fsync_dir(self.directory)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def replay(path: Path) -> Iterator[Batch | Problem]:
    """The batches of one log file, in order, and a :class:`Problem` for each damaged part."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            yield from _records(mm, size, str(path))


def _records(mm: mmap.mmap, size: int, name: str) -> Iterator[Batch | Problem]:
    pos = 0
    while pos < size:
        batch, why = _record_at(mm, pos, size)
        if isinstance(batch, Batch):
            yield batch
            pos = why
            continue
        nxt = _next_record(mm, pos + 1, size)
        kind = "torn" if nxt == size else "corrupt"
        yield Problem(name, pos, kind, why, nxt - pos)
        pos = nxt


def _record_at(mm: mmap.mmap, pos: int, size: int) -> tuple[Batch | None, int | str]:
    """(batch, next offset) for a valid record at ``pos``, else (None, why not)."""
    if size - pos < HEADER.size:
        return None, f"{size - pos} bytes left, a header takes {HEADER.size}"
    magic, length, crc = HEADER.unpack_from(mm, pos)
    if magic != MAGIC:
        return None, f"no record marker (found {magic!r})"
    end = pos + HEADER.size + length
    if length > MAX_RECORD or end > size:
        return None, f"record of {length} bytes runs past the end of the file ({size} bytes)"
    payload = mm[pos + HEADER.size:end]
    if zlib.crc32(payload, zlib.crc32(struct.pack("<I", length))) != crc:
        return None, "checksum mismatch"
    try:
        return decode_batch(payload), end
    except MessageRefused as exc:
        return None, f"checksum right but the batch does not decode: {exc}"


def _next_record(mm: mmap.mmap, start: int, size: int) -> int:
    """Offset of the next valid record after ``start``, or ``size`` if none."""
    pos = mm.find(MAGIC, start)
    while pos != -1:
        batch, _ = _record_at(mm, pos, size)
        if batch is not None:
            return pos
        pos = mm.find(MAGIC, pos + 1)
    return size
