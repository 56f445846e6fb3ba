"""Compose smoke test helper, run inside the project's image on the compose network: read the ``profiles`` topic from
the beginning and print one JSON line: how many profile records it holds and up to 20 of their user ids."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from lettingo.settings import get_settings


async def main(timeout_s: float) -> dict:
    settings = get_settings()
    topic = settings.topic("profiles")
    consumer = AIOKafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not partitions:
            await consumer.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        users: list[str] = []
        count = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    count += 1
                    key = record.key.decode() if record.key else None
                    if key and key not in users and len(users) < 20:
                        users.append(key)
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= ends[tp] for tp in partitions):
                break
        return {"topic": topic, "profiles": count, "users": users}
    finally:
        await consumer.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0))))
