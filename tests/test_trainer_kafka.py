"""The trainer's Kafka edge against the real broker: pair batches (stored, then committed) and model versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from lettingo.records import DeadLetter, ModelStatus, ModelVersion
from streams.kafka.topics import create_topics
from streams.settings import StreamSettings
from trainer.batches import BatchStore
from trainer.kafka_io import consume_pair_batch, publish_model_version
from trainer.tiny_model import synthetic_pairs

pytestmark = pytest.mark.kafka


async def _produce(settings: StreamSettings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_config())
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(settings.topic(topic), key=key, value=value)
    finally:
        await producer.stop()


async def _read_all(settings: StreamSettings, topic: str, expected: int) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(
        settings.topic(topic), auto_offset_reset="earliest", enable_auto_commit=False, **settings.kafka_client_config()
    )
    await consumer.start()
    received: list[tuple[bytes | None, bytes]] = []
    try:
        for _ in range(30):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                received.extend((m.key, m.value) for m in messages)
            if len(received) >= expected:
                break
    finally:
        await consumer.stop()
    return received


def test_a_batch_is_stored_before_its_offsets_are_committed(kafka_settings: StreamSettings, tmp_path: Path) -> None:
    async def scenario() -> None:
        await create_topics(kafka_settings)
        pairs = synthetic_pairs(6)
        messages = [(p.user_id.encode(), p.to_bytes()) for p in pairs] + [(b"u9", b"{not a pair")]
        await _produce(kafka_settings, "preference-pairs", messages)

        store = BatchStore(tmp_path / "batches")
        batch = await consume_pair_batch(kafka_settings, store, "trainer-test", max_pairs=100, wait_s=10)
        assert batch is not None
        assert [p.pair_id for p in sorted(batch.pairs, key=lambda p: p.pair_id)] == sorted(p.pair_id for p in pairs)
        assert batch.report.received == 7 and dict(batch.report.rejected) == {"invalid_json": 1}
        assert batch.stored.path.exists() and len(batch.stored.path.read_text().splitlines()) == 6
        assert batch.stored.lineage["topic"] == kafka_settings.topic("preference-pairs")
        assert sum(last - first + 1 for first, last in batch.offsets.values()) == 7
        assert [b.path for b in store.pending_batches()] == [batch.stored.path]

        # The offsets were committed: the same group finds nothing new.
        again = await consume_pair_batch(kafka_settings, store, "trainer-test", max_pairs=100, wait_s=3)
        assert again is None

        dead = await _read_all(kafka_settings, "dead-letters", expected=1)
        letter = DeadLetter.from_bytes(dead[0][1])
        assert letter.reason == "invalid_json" and letter.payload == "{not a pair"

    asyncio.run(scenario())


def test_a_model_version_is_published_keyed_by_model_name(kafka_settings: StreamSettings) -> None:
    async def scenario() -> None:
        await create_topics(kafka_settings)
        record = ModelVersion(
            name="profile-generator",
            version=3,
            kind="lora",
            uri="file:///registry/profile-generator/v000003",
            sha256={"adapter_model.safetensors": "0" * 64},
            base_model="/models/nano",
            parent=2,
            status=ModelStatus.CHAMPION,
        )
        await publish_model_version(kafka_settings, record)
        received = await _read_all(kafka_settings, "model-versions", expected=1)
        assert received[0][0] == b"profile-generator"
        assert ModelVersion.from_bytes(received[0][1]) == record

    asyncio.run(scenario())


def test_pairs_of_a_user_forgotten_after_they_were_made_never_enter_a_batch(
    kafka_settings: StreamSettings, tmp_path: Path
) -> None:
    from lettingo.records import Erasure

    async def scenario() -> None:
        await create_topics(kafka_settings)
        pairs = synthetic_pairs(6)
        gone = pairs[0].user_id
        await _produce(kafka_settings, "preference-pairs", [(p.user_id.encode(), p.to_bytes()) for p in pairs])
        await _produce(kafka_settings, "erasures", [(gone.encode(), Erasure(user_id=gone).to_bytes())])
        batch = await consume_pair_batch(
            kafka_settings, BatchStore(tmp_path / "batches"), "trainer-forget", max_pairs=100, wait_s=10
        )
        assert batch is not None and batch.pairs and gone not in {p.user_id for p in batch.pairs}
        assert batch.report.rejected["forgotten"] == sum(p.user_id == gone for p in pairs) > 0

    asyncio.run(scenario())
