"""A short run of the chaos harness (bench/chaos.py) on the real broker: two workers SIGKILLed at random moments
while 1,200 interactions stream in, each restarted at once; every user's state and serving profile must equal a
clean single-worker run's. The full run (20,000 events, 50 kills, 3 workers) is `python -m bench --only chaos`."""

from __future__ import annotations

import pytest

from bench.chaos import run_chaos

pytestmark = pytest.mark.kafka


def test_random_sigkills_of_a_two_worker_fleet_lose_double_and_change_nothing(kafka_bootstrap, frozen_reader) -> None:
    # kafka_bootstrap: the broker the harness's settings name is up when this file runs alone too
    result = run_chaos(events=1200, kills=4, workers=2, rate=40, seed=11)
    assert result["kills"] == 4
    assert (result["lost"], result["doubled"], result["mismatched_histories"], result["mismatched_profiles"]) == (
        0,
        0,
        0,
        0,
    ), result
    assert result["failover_s"] and max(result["failover_s"]) < 60, result
