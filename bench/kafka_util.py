"""Kafka helpers for the benchmarks: unique settings per run, fast raw producing, a raw consumer, committed
offsets, and deleting every topic a run created."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.common import WORK
from streams.faust_adapter import refresh_metadata
from streams.settings import StreamSettings


def run_settings(name: str, partitions: int | None = None) -> StreamSettings:
    """StreamSettings on the running broker with a topic prefix, app id and home of this run only (and
    ``partitions`` per user-keyed topic, the configured count when None)."""
    base = StreamSettings.load()
    run = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    return StreamSettings(
        home=WORK / run,
        kafka={"bootstrap": base.bootstrap},
        topics={"prefix": f"{run}-", "partitions": partitions or base.topics.partitions},
        app={"id": run},
    )


async def produce_raw(settings: StreamSettings, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> int:
    """Send (key, value) pairs to ``topic`` (unprefixed) as fast as the broker takes them; returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks=1, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    n = 0
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(settings.topic(topic), value=value, key=key))
            n += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def bulk_consumer(settings: StreamSettings) -> AIOKafkaConsumer:
    """A group-less consumer with large fetches: what reading a topic as fast as one process can looks like."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 2**20,
        fetch_max_bytes=50 * 2**20,
    )


async def raw_consume(settings: StreamSettings, topic: str, expected: int, max_records: int = 2000) -> dict[str, float]:
    """Read ``expected`` records of ``topic`` from the beginning with getmany and decode each value's JSON,
    doing nothing else: the ceiling for one Python process reading this topic."""
    consumer = bulk_consumer(settings)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.topic(topic))
        if not parts:
            await refresh_metadata(consumer)
            parts = consumer.partitions_for_topic(settings.topic(topic)) or set()
        tps = [TopicPartition(settings.topic(topic), p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = 0
        started = time.perf_counter()
        while n < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            for records in batches.values():
                for r in records:
                    json.loads(r.value)
                n += len(records)
        seconds = time.perf_counter() - started
        return {"records": n, "seconds": seconds, "per_second": n / seconds}
    finally:
        await consumer.stop()


async def committed_total(settings: StreamSettings, group: str, topic: str) -> int:
    """Sum of the consumer group's committed offsets over ``topic``'s partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(m.offset for tp, m in offsets.items() if tp.topic == settings.topic(topic) and m.offset > 0)
    finally:
        await admin.close()


async def end_offsets(settings: StreamSettings, full_topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await refresh_metadata(consumer)
        parts = consumer.partitions_for_topic(full_topic) or set()
        tps = [TopicPartition(full_topic, p) for p in parts]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - begins[tp] for tp in tps)
    finally:
        await consumer.stop()


def table_contents(settings: StreamSettings, table: str) -> dict[str, bytes]:
    """A worker table as its changelog says: the last value per key, deletions applied."""

    async def read() -> dict[str, bytes]:
        topic = f"{settings.app.id}-{table}-changelog"
        consumer = AIOKafkaConsumer(**settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            if topic not in await consumer.topics():
                return {}
            tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: dict[str, bytes] = {}
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        if r.value is None:
                            out.pop(r.key.decode(), None)
                        else:
                            out[r.key.decode()] = r.value
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())
