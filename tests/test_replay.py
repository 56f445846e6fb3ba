"""`lettingo replay` sends all of ml-latest-small in time order, and a consumer counts the same number."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from lettingo.data import load_dataset
from lettingo.records import Interaction
from streams.kafka.offsets import topic_counts
from streams.kafka.topics import create_topics
from streams.replay import replay
from streams.settings import StreamSettings


async def _per_user_order_is_time_order(settings: StreamSettings, topic: str, expect: int) -> bool:
    consumer = AIOKafkaConsumer(
        topic, **settings.kafka_client_config(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    last: dict[str, float] = {}
    seen = 0
    ordered = True
    try:
        async with asyncio.timeout(120):
            while seen < expect:
                for messages in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                    for m in messages:
                        event = Interaction.from_bytes(m.value)
                        ordered &= event.ts >= last.get(event.user_id, 0.0)
                        last[event.user_id] = event.ts
                        seen += 1
    finally:
        await consumer.stop()
    return ordered


@pytest.mark.kafka
def test_replay_of_ml_latest_small_sends_every_interaction(kafka_settings: StreamSettings, dataset_path: Path) -> None:
    dataset = load_dataset(dataset_path)

    async def run() -> tuple[int, int, int, bool]:
        await create_topics(kafka_settings)
        report = await replay(kafka_settings, dataset)
        counts = await topic_counts(kafka_settings, ["interactions", "items"])
        on_topic, items = counts["interactions"], counts["items"]
        ordered = await _per_user_order_is_time_order(kafka_settings, kafka_settings.topic("interactions"), on_topic)
        return report.interactions, on_topic, items, ordered

    sent, on_topic, items, ordered = asyncio.run(run())
    assert sent == 100_836
    assert on_topic == 100_836
    assert items == 9_742
    assert ordered, "each user's events must arrive in time order"
