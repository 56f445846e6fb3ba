"""A generator that fails keeps the previous profile: the request is retried with backoff, re-queued, and after
``regen_max_attempts`` dead-lettered. Real broker, real worker, the hf backend on the quick nano model."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from lettingo import records
from tests.streams_harness import WorkerProcess, produce, table_contents, wait_for
from tests.test_streams_flow import WORKER_SETTINGS, interaction, profiles_of, stream_settings, values_of

pytestmark = pytest.mark.kafka


def failures(worker: WorkerProcess) -> float:
    found = re.findall(r'lettingo_regeneration_failures_total\{error="TimeoutError"\} ([0-9.]+)', worker.metrics())
    return float(found[0]) if found else 0.0


def test_a_generator_that_times_out_keeps_the_profile_is_retried_then_dead_lettered(
    kafka_bootstrap, tmp_path, frozen_reader, nano_model
):
    settings = stream_settings(kafka_bootstrap, tmp_path / "home")
    log = tmp_path / "worker.log"
    base = {**WORKER_SETTINGS, "explore_rate": 0, "reader_path": frozen_reader}
    healthy = WorkerProcess(settings, log, **base).start()
    try:
        asyncio.run(produce(settings, [interaction("u-fail", f"h{n}", 5, n) for n in range(3)]))
        [first] = wait_for("the cold-start profile", lambda: profiles_of(settings, "u-fail"), 60)
    finally:
        healthy.stop()

    # The same worker group, now serving the nano model with a timeout no generation can meet.
    failing = WorkerProcess(
        settings,
        log,
        **base,
        worker_policy=f"hf:{nano_model}",
        regen_timeout_seconds=0.01,
        regen_retries=2,
        regen_backoff_seconds=0.2,
        regen_max_attempts=2,
    )
    failing.start()
    try:
        assert failing.health()["generator"] == "hf"
        asyncio.run(produce(settings, [interaction("u-fail", f"c{n}", 1, 10 + n) for n in range(4)]))
        letters = wait_for(
            "the drift request dead-lettered",
            lambda: [
                d
                for d in values_of(settings, "dead-letters", records.DeadLetter)
                if d.reason == "generation_failed" and d.key == "u-fail"
            ],
            120,
        )
        assert len(letters) == 1 and "TimeoutError" in letters[0].error
        assert letters[0].topic == settings.topic("profile-requests")
        requests = values_of(settings, "profile-requests", records.ProfileRequest, "u-fail")
        drift = [r for r in requests if r.reason == "drift"]
        assert [r.attempt for r in drift] == [0, 1]  # queued again once, then dead-lettered
        assert records.ProfileRequest.from_bytes(letters[0].payload).attempt == 1
        assert failures(failing) == 2  # one per queued attempt, each after regen_retries tries
        # The previous profile stays: nothing new on the topic, the table still serves version 1.
        assert profiles_of(settings, "u-fail") == [first]
        assert json.loads(table_contents(settings, "profiles")["u-fail"])["current"]["version"] == 1
    finally:
        failing.stop()
