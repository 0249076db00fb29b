"""Keep freed memory for the next flush: glibc's malloc settings for a long-running store process.

The store's flushes and merges work on arrays of hundreds of MB (a 16 M-row flush: 128 MB per
int64 column, a dozen temporaries).  glibc's malloc gives every block above its mmap threshold
(32 MB at most) back to the kernel when it is freed, so each such array is faulted in again page
by page, zeroed by the kernel, at its next allocation.  On this project's 2-core VM that cost more
than the arithmetic itself: ``scale_values`` on 28 M rows took 0.33-3.1 s with the defaults and
0.16 s once freed memory was kept (``bench/store_scale.py`` prints the whole effect).

:func:`keep_freed_memory` raises the mmap threshold (large arrays come from the heap and go back
to it), keeps up to ``keep_mb`` of free memory at the heap's top instead of trimming it, and uses
one arena (threads' arenas cannot grow past 64 MB, so their large blocks would be mapped anyway).
The process's resident memory then stays near its peak instead of falling back between flushes.
``wattsight run`` calls it first thing; a program embedding the store may call it too, before it
starts threads.  Not glibc (musl, macOS): nothing is changed and it returns False.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger("wattsight.memory")

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Blocks above this still come from mmap (and go back to the kernel at once); mallopt takes an
#: int: at most 2047 MB.
MMAP_ABOVE_MB = 1024
#: Free memory kept at the heap's top for the next flush (at most 2047 MB).
KEEP_MB = 1024


def keep_freed_memory(keep_mb: int = KEEP_MB, mmap_above_mb: int = MMAP_ABOVE_MB, *, libc=None) -> bool:
    """Set glibc's malloc so that large freed blocks are reused, not given back and faulted in again;
    True if it was set (``libc``: the C library to call, for tests)."""
    for name, mb in (("keep_mb", keep_mb), ("mmap_above_mb", mmap_above_mb)):
        if not 0 < mb < 2048:
            raise ValueError(f"keep_freed_memory: {name}={mb}; expected 1..2047 (mallopt takes an int of bytes)")
    if libc is None:
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(None)
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    gnu = getattr(libc, "gnu_get_libc_version", None)
    if mallopt is None or gnu is None:  # not glibc: its allocator has other knobs
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = [mallopt(M_ARENA_MAX, 1), mallopt(M_MMAP_THRESHOLD, mmap_above_mb << 20),
            mallopt(M_TRIM_THRESHOLD, keep_mb << 20)]
    if not all(done):
        log.warning("mallopt refused a setting (%s): large arrays may be faulted in again at each flush", done)
        return False
    return True
