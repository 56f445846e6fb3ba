"""The worker fixes glibc's mmap threshold (streams.malloc): a large buffer freed must not move the next ones
into the main heap, where their holes fragment it (the soak's RSS creep)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Frees one mmapped 1 MiB chunk (which makes glibc raise its threshold, if it may), then prints how many of the
# next 1 MiB allocations were mmapped (glibc's mallinfo2: bytes in mmapped chunks).
PROBE = """
import ctypes, sys
from bench.memory_probe_site.sitecustomize import MallInfo2
from streams.malloc import fix_malloc_thresholds

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert fix_malloc_thresholds()
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblkhd
kept = [libc.malloc(1 << 20) for _ in range(4)]
print((libc.mallinfo2().hblkhd - before) // (1 << 20))
"""


def mmapped_after_a_free(mode: str, **env: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=REPO,
        env={k: v for k, v in {**os.environ, "PYTHONPATH": str(REPO), **env}.items() if v},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(run.stdout.strip())


def test_large_buffers_stay_mmapped_after_one_is_freed() -> None:
    assert mmapped_after_a_free("dynamic") == 0  # glibc's default: the freed chunk raised the threshold
    assert mmapped_after_a_free("fixed") == 4


def test_an_operator_setting_the_threshold_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.malloc import fix_malloc_thresholds

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not fix_malloc_thresholds()
