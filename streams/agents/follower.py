"""Read a whole topic (every partition, no consumer group) from the beginning and keep following it.

Every worker needs all of ``items`` (the catalogue) and all of ``model-versions``, whatever partitions the
group gave it, so these are read outside Faust's consumer group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.topics import BY_NAME, partitions_of
from streams.settings import StreamSettings

log = logging.getLogger(__name__)


async def follow(
    settings: StreamSettings,
    topic: str,
    on_message: Callable[[bytes | None, bytes | None], Awaitable[None]],
    caught_up: asyncio.Event | None = None,
) -> None:
    name = settings.topic(topic)
    consumer = AIOKafkaConsumer(**settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = range(partitions_of(BY_NAME[topic], settings))
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    await on_message(record.key, record.value)
            if caught_up is not None and not caught_up.is_set():
                positions = [await consumer.position(tp) for tp in tps]
                if all(position >= ends[tp] for position, tp in zip(positions, tps, strict=True)):
                    log.info("caught up with %s", name)
                    caught_up.set()
    finally:
        await consumer.stop()
