"""How many records each topic has received (the sum of its partitions' end offsets), and where a read from an
offset starts (whether a record is still on the broker)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.faust_adapter import refresh_metadata
from streams.settings import StreamSettings


class TopicCounter:
    """A long-lived consumer that only asks for end offsets: cheap enough to poll every second."""

    def __init__(self, settings: StreamSettings) -> None:
        self._settings = settings
        self._consumer = AIOKafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False)

    async def __aenter__(self) -> TopicCounter:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        parts = self._consumer.partitions_for_topic(topic)
        if not parts:
            await refresh_metadata(self._consumer)  # the topic may be new since the last look
            parts = self._consumer.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(parts)]

    async def counts(self, names: list[str]) -> dict[str, int]:
        """Records written to each topic (by its unprefixed name); 0 for a topic that does not exist yet."""
        out: dict[str, int] = {}
        for name in names:
            parts = await self._partitions(self._settings.topic(name))
            out[name] = sum((await self._consumer.end_offsets(parts)).values()) if parts else 0
        return out


async def first_offset_from(settings: StreamSettings, topic: str, partition: int, offset: int) -> int | None:
    """The offset of the first record a fresh read of ``topic``'s ``partition`` from ``offset`` returns: ``offset``
    itself while that record is on the broker, a later one once it is gone (retention, compaction, a transaction's
    marker), None if the broker returned nothing in time (which proves nothing)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_config(), enable_auto_commit=False, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
        records = batch.get(tp) or []
        return records[0].offset if records else None
    finally:
        await consumer.stop()


def sought_record_gone(sought: int, first_found: int | None) -> bool:
    """Whether a seek back to ``sought`` can be given up: a fresh read from it starts at a later record. A read
    that returned nothing proves nothing (a slow broker), so the seek goes on."""
    return first_found is not None and first_found > sought


async def topic_counts(settings: StreamSettings, names: list[str]) -> dict[str, int]:
    async with TopicCounter(settings) as counter:
        return await counter.counts(names)
