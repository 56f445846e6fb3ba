"""One stream worker as a subprocess with a run's own topics, app id, home and web port; its /metrics, its
RSS (sampled with psutil) and its data folder. ``stop`` ends it; :func:`remove_home` removes what the run left.

A worker runs in a session of its own (a SIGKILL of the chaos harness must reach its whole process group, and a
terminal's Ctrl-C must not reach it): so nothing but this process stops it. Every worker started is tracked, and
the ones still running when the benchmark exits, however it exits, are killed (:func:`kill_leftovers`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from bench.common import DATASET, HOME, REPO
from streams.settings import StreamSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frozen_reader() -> Path | None:
    """The newest frozen reader cached under .lettingo/models, so a worker does not build one."""
    readers = sorted((HOME / "models").glob("reader-*"), key=lambda p: p.stat().st_mtime)
    return readers[-1] if readers else None


_RUNNING: set[subprocess.Popen] = set()


def track(proc: subprocess.Popen) -> None:
    """Kill ``proc``'s process group if it still runs when this process exits."""
    _RUNNING.add(proc)


@atexit.register
def kill_leftovers() -> None:
    """SIGKILL the process group of every tracked process still running: a benchmark that failed or was stopped
    left it (an orphaned worker from a killed run once spun under later runs for 80 minutes)."""
    for proc in list(_RUNNING):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        _RUNNING.discard(proc)


class BenchWorker:
    def __init__(self, settings: StreamSettings, **overrides: object) -> None:
        self.settings = settings
        self.port = free_port()
        settings.home.mkdir(parents=True, exist_ok=True)
        self.log_path = settings.home / f"worker-{self.port}.log"
        reader = frozen_reader()
        self.env = {
            **os.environ,
            "LETTINGO_KAFKA_BOOTSTRAP": settings.bootstrap,
            "LETTINGO_TOPIC_PREFIX": settings.topics.prefix,
            "LETTINGO_APP_ID": settings.app.id,
            "LETTINGO_HOME": str(settings.home),
            "LETTINGO_WEB_PORT": str(self.port),
            "LETTINGO_TOPIC_PARTITIONS": str(settings.topics.partitions),
            "LETTINGO_DATASET": str(DATASET),
            **({"LETTINGO_READER_PATH": str(reader)} if reader else {}),
            **{f"LETTINGO_{k.upper()}": str(v) for k, v in overrides.items()},
        }
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.peak_rss = 0
        self._sampling = False
        self._sampler: threading.Thread | None = None
        self._terminated_pid: int | None = None

    @property
    def data_dir(self) -> Path:
        return (self.settings.home / "worker" / f"{self.settings.app.id}-{self.port}").resolve()

    def start(self, loglevel: str = "info", timeout_s: float = 240) -> BenchWorker:
        """Start; return once the catalogue, generators and evaluator are loaded and partitions assigned.

        The log level is ``info``, as ``lettingo worker`` runs by default: at ``warning`` or above Faust's worker
        keeps its terminal spinner, which sets the root logger to DEBUG so every debug line of Faust and aiokafka
        is formatted (several per message), a cost a production worker does not pay."""
        log = self.log_path.open("ab")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.worker", "-l", loglevel],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        track(self.proc)
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._sampler.start()
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            h = self.get("/health")
            keys = ("catalog_ready", "generators_ready", "evaluator_ready")
            if h and all(h.get(k) for k in keys) and h.get("assigned_partitions"):
                return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"worker not ready in {timeout_s}s:\n{self.log_tail()}")

    def _sample_rss(self) -> None:
        while self._sampling and self.proc and self.proc.poll() is None:
            try:
                p = psutil.Process(self.proc.pid)
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                self.peak_rss = max(self.peak_rss, rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def get(self, path: str) -> dict | None:
        import json

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return json.loads(r.read())
        except Exception:
            return None

    def counter(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus counter's samples whose labels include ``labels`` (0 when not served yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except Exception:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{name}(?:\{{(.*)\}})? ([0-9.eE+-]+)$", line)
            if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def terminate(self) -> None:
        """Ask the worker to stop (SIGTERM), without waiting: :meth:`stop` waits."""
        self._sampling = False
        if self.proc and self.proc.poll() is None and self._terminated_pid != self.proc.pid:
            os.killpg(self.proc.pid, signal.SIGTERM)  # once: a second SIGTERM may cut Faust's shutdown short
            self._terminated_pid = self.proc.pid

    def stop(self, timeout_s: float = 30) -> None:
        self.terminate()
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        if self._sampler:
            self._sampler.join(2)


def du(path: Path) -> int:
    """Bytes on disk under ``path`` (allocated blocks, like ``du``)."""
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_blocks * 512
        except OSError:
            pass
    return total


def remove_home(settings: StreamSettings) -> None:
    shutil.rmtree(settings.home, ignore_errors=True)
