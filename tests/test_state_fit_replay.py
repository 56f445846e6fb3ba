"""A state cut to its byte bound, then a crash between the flush's store and its send, on a real worker: the replay
must re-send every rated event the crash kept from ``rated-events`` (task evaluation's input)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from lettingo import records
from lettingo.stream_eval import EvalTrigger
from tests.conftest import delete_test_topics
from tests.streams_harness import WorkerProcess, catalogue_settings, produce, topic_records, wait_for

pytestmark = pytest.mark.kafka

USER = "u-big"
EVENTS = 60
# 32 attributes of 128 characters an event (the most the bounds keep): fewer than 30 such events fit in 128 KiB.
ITEMS = [
    records.Item(
        item_id=f"big{n}", title=f"Big Film {n}", attributes=[f"{n:02d}{k:02d}" + "x" * 124 for k in range(32)]
    )
    for n in range(EVENTS)
]


def test_a_crash_between_storing_a_cut_state_and_sending_what_it_caused_loses_no_rated_event(
    kafka_bootstrap: str, tmp_path: Path, frozen_reader: Path
) -> None:
    settings = catalogue_settings(kafka_bootstrap, tmp_path, ITEMS)
    # Produced before the worker starts, so that its first batch holds them all: more rated events than the bound
    # keeps, none of them sent when the first flush stores the state.
    events = [
        records.Interaction(
            event_id=f"{USER}-{n}", user_id=USER, item_id=f"big{n}", kind="rating", rating=4, ts=1e9 + n
        )
        for n in range(EVENTS)
    ]
    asyncio.run(produce(settings, [("interactions", USER, e.to_bytes()) for e in events]))
    worker = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        reader_path=frozen_reader,
        max_state_bytes=128 * 1024,
        worker_cold_start_after=10**6,  # no profile requests: only rated events are sent
    )
    worker.env["STREAMS_TEST_CRASH_AT"] = "ingest_send:1"
    try:
        worker.start()

        def triggered() -> set[str]:
            return {EvalTrigger.from_bytes(r.value).event_id for r in topic_records(settings, "rated-events")}

        wait_for(
            "the crash and the replay", lambda: 'lettingo_agent_crashes_total{agent="ingest"} 1.0' in worker.metrics()
        )
        wait_for("the replayed batch applied", lambda: len(triggered()) >= 20, 60)
        deadline = time.time() + 30
        while len(sent := triggered()) < EVENTS and time.time() < deadline:
            time.sleep(0.5)
    finally:
        worker.stop()
        delete_test_topics(settings)
    assert "injected crash in ingest_send at batch 1" in (tmp_path / "worker.log").read_text(errors="replace")
    assert sent == {e.event_id for e in events}, f"{EVENTS - len(sent)} of {EVENTS} rated events never sent"
