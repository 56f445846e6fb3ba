"""The ingest and scale-out benchmarks time workers while a thread writes the input: a writer that fails (the
broker gone) must stop the run at once, not leave it polling a worker that will get nothing more until it times
out (ten minutes for the ingest benchmark)."""

from __future__ import annotations

import time

import pytest

from bench.ingest import Feeder, Messages
from streams.settings import StreamSettings


def test_a_failed_writer_is_reported_while_the_run_waits() -> None:
    settings = StreamSettings(kafka={"bootstrap": "127.0.0.1:1", "connect_timeout_seconds": 2})
    feeder = Feeder(settings, Messages(items=[], interactions=[(b"u", b"{}")]))
    deadline = time.monotonic() + 60
    with pytest.raises(RuntimeError, match="writing the interactions failed"):
        while time.monotonic() < deadline:
            feeder.check()
            time.sleep(0.2)
    with pytest.raises(RuntimeError, match="writing the interactions failed"):
        feeder.join()
