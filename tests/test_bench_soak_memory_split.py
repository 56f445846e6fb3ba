"""The soak's RSS split: growth from the main thread's small mallocs shows up as ``heap``, not as ``anon`` or
``file``, so a soak run says which allocator a worker's growth comes from."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from bench.soak import memory_split_mb, rss_mb

# 60 MB in 2 KB bytes objects: over pymalloc's 512-byte limit and under glibc's mmap threshold, so glibc's main
# arena (the brk heap) serves them; the parent reads the split while the child holds them.
CHILD = "import sys\nheld = [bytes(2048) for _ in range(30_000)]\nprint('ready', flush=True)\nsys.stdin.read()\n"


def test_main_thread_mallocs_count_as_heap() -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        worker = SimpleNamespace(proc=proc)
        split = memory_split_mb(worker)
        assert split["heap"] > 55
        assert split["anon"] < split["heap"]
        assert abs(sum(split.values()) - rss_mb(worker)) < 0.05 * rss_mb(worker)
    finally:
        proc.communicate("")
