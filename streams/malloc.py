"""glibc's malloc thresholds for a long-running worker.

glibc raises its mmap threshold each time a chunk it had mmapped is freed (up to 32 MiB), and its trim threshold
with it: after the first few, RocksDB's 1 MiB memtable blocks and other large, short-lived buffers come from the
main heap instead, between long-lived small allocations, and the heap's free holes grow without being returned.
A worker's RSS then crept by 3.5 MB/min with its RocksDB caches full and its live allocations flat
(``python -m bench.memory_probe --inside``: free bytes inside the arenas 25 -> 37 MB and growing); with both
thresholds fixed at glibc's default of 128 KiB the arenas levelled off within minutes (free 14-16 MB) and the RSS
net of the caches was flat (+0.11 MB/min). Fixing the threshold is what ``MALLOC_MMAP_THRESHOLD_`` does; an
operator who sets that (or uses another allocator) is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

DEFAULT_THRESHOLD = 128 * 1024  # glibc's own starting value
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from malloc.h


def fix_malloc_thresholds(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds at ``threshold`` bytes (no dynamic raising); False where the C library
    is not glibc or the environment already sets them."""
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt thresholds)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))
