"""Compose smoke test helper, run inside the project's image on the compose network: read the ``profiles`` topic from
the beginning and print one JSON line: how many profile records it holds and up to 20 of their user ids."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer

from streams.settings import StreamSettings


async def main(timeout_s: float) -> dict:
    settings = StreamSettings.load()
    topic = settings.topic("profiles")
    # No group: every partition of the topic, from the beginning, nothing committed.
    consumer = AIOKafkaConsumer(
        topic, **settings.kafka_client_config(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
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
            assigned = consumer.assignment()
            if assigned and not batch:
                ends = await consumer.end_offsets(list(assigned))
                positions = {tp: await consumer.position(tp) for tp in assigned}
                if all(positions[tp] >= ends[tp] for tp in assigned):
                    break
        return {"topic": topic, "profiles": count, "users": users}
    finally:
        await consumer.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0))))
