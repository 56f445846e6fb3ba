"""Profiles for figures that fall short: py-spy sampled from a running worker, folded into the functions that
take the most time (self and inclusive)."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench.worker import BenchWorker

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def fold(raw_path: Path, top: int = 15) -> dict:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        total += n
        self_counts[frames[-1]] += n
        for f in set(frames):
            incl_counts[f] += n

    def share(c: collections.Counter[str]) -> list[list]:
        return [[name, round(100 * k / total, 1)] for name, k in c.most_common(top)] if total else []

    return {"samples": total, "top_self_pct": share(self_counts), "top_inclusive_pct": share(incl_counts)}


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


def profile_worker(settings, n_events: int, overrides: dict, out: Path, seconds: int = 15) -> dict | None:
    """Start a worker on a pre-filled topic and sample it with py-spy while it ingests."""
    spy = py_spy()
    if spy is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    worker = BenchWorker(settings, **overrides)
    try:
        worker.start()
        raw = out.with_suffix(".folded")
        done = subprocess.run(
            [spy, "record", "-p", str(worker.proc.pid), "-d", str(seconds), "-r", "100", "-f", "raw",
             "-o", str(raw), "--nonblocking"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not raw.exists():
            return {"error": f"py-spy failed: {done.stderr.strip()[-500:]}"}
        folded = fold(raw)
        folded["events_during_profile"] = worker.counter("lettingo_events_total", topic="interactions")
        folded["seconds"] = seconds
        return folded
    finally:
        worker.stop()
