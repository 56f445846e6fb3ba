"""An erasure racing ingest, on the real broker: the erasure follower and the forget agent are two consumers, so a
batch may load a user's state after the worker heard of the erasure but before the forget agent deleted it, and
store it again after the deletion. What such a flush left in the table must not come back into the user's state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from lettingo import records
from lettingo.user_state import UserState
from streams.cli.users import forget_user
from streams.settings import StreamSettings
from tests.conftest import delete_test_topics
from tests.streams_harness import WorkerProcess, catalogue_settings, produce, read_all, table_contents, wait_for

pytestmark = pytest.mark.kafka

USER = "u-race"
ITEMS = [records.Item(item_id=f"h{n}", title=f"Horror Film {n} (199{n})", attributes=["Horror"]) for n in range(5)]


def rating(n: int) -> tuple[str, str, bytes]:
    event = records.Interaction(
        event_id=f"{USER}-{n}", user_id=USER, item_id=f"h{n % 5}", kind="rating", rating=4, ts=1e9 + n
    )
    return ("interactions", USER, event.to_bytes())


def stored_state(settings: StreamSettings) -> UserState | None:
    value = table_contents(settings, "user_state").get(USER)
    return None if value is None else UserState.from_bytes(value)


async def store_again(settings: StreamSettings, value: bytes) -> None:
    """Write ``value`` as the user's state to the user_state changelog, on the partition of its earlier records:
    the write the racing flush made after the forget agent's deletion."""
    changelog = f"{settings.app.id}-user_state-changelog"
    [partition] = {
        r.partition for r in await read_all(changelog, settings, settings.topics.partitions) if r.key == USER.encode()
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(changelog, value=value, key=USER.encode(), partition=partition)
    finally:
        await producer.stop()


def test_a_state_stored_again_after_the_forget_agent_deleted_it_does_not_bring_the_history_back(
    kafka_bootstrap: str, tmp_path: Path, frozen_reader: Path
) -> None:
    settings = catalogue_settings(kafka_bootstrap, tmp_path, ITEMS)
    worker = WorkerProcess(settings, settings.home / "worker.log", reader_path=frozen_reader)
    try:
        worker.start()
        asyncio.run(produce(settings, [rating(n) for n in range(3)]))
        wait_for("three events applied", lambda: (s := stored_state(settings)) and s.count == 3, 60)
        old = table_contents(settings, "user_state")[USER]
        asyncio.run(forget_user(settings, USER))
        wait_for("the state deleted", lambda: stored_state(settings) is None, 30)
        worker.stop()

        asyncio.run(store_again(settings, old))
        worker.start()  # restores the table from the changelog: the old state is back in it
        asyncio.run(produce(settings, [rating(10)]))  # reaches Kafka after the erasure: new data
        state = wait_for(
            "the new event applied", lambda: (s := stored_state(settings)) and s.has_applied(f"{USER}-10") and s
        )
        assert [e.event_id for e in state.events] == [f"{USER}-10"] and state.count == 1
        assert not any(state.has_applied(f"{USER}-{n}") for n in range(3))
        worker.stop()

        # Erased again while no worker runs, then a new event: at the start the forget agent and ingest race. Either
        # the agent deletes the state and ingest begins a fresh one, or ingest begins it afresh (it knows of the
        # erasure) and the agent keeps it, since it holds only new data. Either way, only the new event is left.
        asyncio.run(forget_user(settings, USER))
        asyncio.run(produce(settings, [rating(20)]))
        worker.start()
        wait_for("the erasure acted on", lambda: "lettingo_erasures_total 1.0" in worker.metrics(), 60)
        state = wait_for(
            "the new event applied", lambda: (s := stored_state(settings)) and s.has_applied(f"{USER}-20") and s
        )
        assert [e.event_id for e in state.events] == [f"{USER}-20"] and state.count == 1
    finally:
        worker.stop()
        delete_test_topics(settings)
