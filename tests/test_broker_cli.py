"""`lettingo broker start|status|stop` twice in a row, on a broker of its own (own ports and data folder)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lettingo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", *args], env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.kafka
def test_broker_start_status_stop_twice(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LETTINGO_KAFKA_BOOTSTRAP"}
    env |= {
        "LETTINGO_HOME": str(tmp_path),
        "LETTINGO_KAFKA_LIBS": str(REPO / ".lettingo" / "kafka" / "libs"),  # fetched by the session fixture
        "LETTINGO_BROKER_PORT": str(_free_port()),
        "LETTINGO_CONTROLLER_PORT": str(_free_port()),
    }
    try:
        for _ in range(2):
            started = _lettingo(env, "broker", "start")
            assert started.returncode == 0, started.stderr
            assert "started: pid" in started.stdout and "server.log" in started.stdout
            again = _lettingo(env, "broker", "start")
            assert "already running" in again.stdout
            status = _lettingo(env, "broker", "status")
            assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout
            stopped = _lettingo(env, "broker", "stop")
            assert stopped.returncode == 0 and stopped.stdout.startswith("stopped pid"), stopped.stdout
            down = _lettingo(env, "broker", "status")
            assert down.returncode == 1 and down.stdout.startswith("not running")
        assert (tmp_path / "kafka" / "logs" / "server.log").stat().st_size > 0
    finally:
        _lettingo(env, "broker", "stop")
