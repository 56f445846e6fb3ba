"""Profiles for figures that fall short: py-spy sampled from a running worker, folded into the functions that
take the most time (self and inclusive), and into the agent or Faust task each sample ran in."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.worker import BenchWorker

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# A sample's "task": the first frame in one of the project's agents, else the first frame the event loop ran.
AGENT_FILE = re.compile(r"streams/agents/\w+\.py$")


def _short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def _task(frames: list[str]) -> str:
    for f in frames:
        m = FRAME.match(f)
        if m and AGENT_FILE.search(m.group("file")):
            return f"agent {m.group('func')} ({m.group('file')})"
    for i, f in enumerate(frames[:-1]):
        if f.startswith("Handle._run "):
            return f"loop {frames[i + 1]}"
    return "other"


def fold(raw_path: Path, top: int = 15) -> dict:
    """Self and inclusive sample shares per function, and shares per task, from py-spy's raw (collapsed) output."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    task_counts: collections.Counter[str] = collections.Counter()
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
        task_counts[_task(frames)] += n
        for f in set(frames):
            incl_counts[f] += n

    def share(c: collections.Counter[str]) -> list[list]:
        return [[name, round(100 * k / total, 1)] for name, k in c.most_common(top)] if total else []

    return {
        "samples": total,
        "top_self_pct": share(self_counts),
        "top_inclusive_pct": share(incl_counts),
        "by_task_pct": share(task_counts),
    }


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


def profile_worker(worker: BenchWorker, feed: Callable[[], object], seconds: float) -> dict | None:
    """Sample a started worker with py-spy for ``seconds`` while ``feed()`` gives it work, then stop it.

    Only samples holding the GIL count (``--gil``): Python's CPU work. On a shared machine a thread that waits
    for a core inside a system call (a socket write) would otherwise be charged for the wait.
    """
    spy = py_spy()
    try:
        if spy is None:
            return {"error": "py-spy is not installed (pip install py-spy)"}
        raw = worker.settings.home / "profile.folded"
        before = worker.counter("lettingo_events_total", topic="interactions")
        sampler = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(worker.proc.pid),
                "-d",
                str(round(seconds)),
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
                "--gil",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        finished = feed()
        _, stderr = sampler.communicate()
        if callable(finished):
            finished()
        if sampler.returncode != 0 or not raw.exists():
            return {"error": f"py-spy failed: {stderr.strip()[-500:]}"}
        folded = fold(raw)
        folded["events_during_profile"] = worker.counter("lettingo_events_total", topic="interactions") - before
        folded["seconds"] = seconds
        return folded
    finally:
        worker.stop()
