"""How many records each topic has received (the sum of its partitions' end offsets)."""

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


async def topic_counts(settings: StreamSettings, names: list[str]) -> dict[str, int]:
    async with TopicCounter(settings) as counter:
        return await counter.counts(names)
