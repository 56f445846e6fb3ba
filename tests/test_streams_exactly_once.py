"""Exactly-once per-user state on a real worker: the ingest agent crashes after a batch's states are written and
before the batch's offsets are recorded as applied (the kill point between the two changelogs), and the batch is
replayed. The worker remembers only one event id per user (``seen_events_max=1``), so the ids cannot tell a
replayed event from a new one: only the position stored with each state can. Every user must end with each of
their events applied once."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.conftest import delete_test_topics
from tests.streams_harness import WorkerProcess, produce, table_contents, wait_for
from tests.test_streams_flow import WORKER_SETTINGS, stream_settings
from tests.test_streams_recovery import EVENTS_PER_USER, USERS, stream

pytestmark = pytest.mark.kafka


def test_a_batch_replayed_after_a_crash_between_state_and_applied_offset_is_applied_once(
    kafka_bootstrap, tmp_path, frozen_reader
) -> None:
    settings = stream_settings(kafka_bootstrap, tmp_path / "home")
    # One user's events one after another: a batch holds several events of one user, so its replay does too.
    events = sorted(stream(), key=lambda message: message[1])
    worker = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        reader_path=frozen_reader,
        **{**WORKER_SETTINGS, "explore_rate": 0.0, "seen_events_max": 1},
    )
    # From the first batch on: the whole stream may arrive before the catalogue is read and be applied as one batch,
    # and a plan that began at the second would then never crash.
    worker.env["STREAMS_TEST_CRASH_AT"] = "ingest:1+2+3+4+5"
    worker.start()
    try:
        asyncio.run(produce(settings, events))

        def counts() -> dict[str, int]:
            return {k: json.loads(v)["count"] for k, v in table_contents(settings, "user_state").items()}

        wait_for(
            "every event applied",
            lambda: len(c := counts()) == USERS and all(n >= EVENTS_PER_USER for n in c.values()),
            180,
        )
        time.sleep(3)  # a replay still under way would count more
        states = {k: json.loads(v) for k, v in table_contents(settings, "user_state").items()}
    finally:
        worker.stop()
        delete_test_topics(settings)
    assert "injected crash in ingest at batch" in (tmp_path / "worker.log").read_text(errors="replace")
    assert {u: s["count"] for u, s in states.items()} == {f"r-u{u}": EVENTS_PER_USER for u in range(USERS)}
    for user, state in states.items():
        ids = [e["event_id"] for e in state["events"]]
        assert ids == [f"{user}-{n}" for n in range(EVENTS_PER_USER)][-len(ids) :]
