"""A benchmark stopped by SIGTERM leaves no worker running: its workers run in sessions of their own, so nothing
else would stop them (a killed ingest run once left one spinning under later runs for 80 minutes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import subprocess, sys, time
from bench import worker
from bench.__main__ import exit_on_sigterm

exit_on_sigterm()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
worker.track(child)
print(child.pid, flush=True)
time.sleep(120)
"""


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_benchmark_stopped_by_sigterm_kills_the_workers_it_started() -> None:
    bench = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE
    )
    assert bench.stdout is not None
    child = int(bench.stdout.readline())
    assert running(child)
    bench.send_signal(signal.SIGTERM)
    assert bench.wait(30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(child)
