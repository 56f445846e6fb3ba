"""A partition sought back to an event that does not come is given up only when the broker no longer has that
event: an overloaded worker that has not fetched it back yet keeps waiting (the full chaos run dropped 27 events
of a partition that stalled past the old 60 s give-up)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from streams.kafka.offsets import first_offset_from, sought_record_gone
from streams.settings import StreamSettings


def test_a_seek_is_given_up_only_on_proof_that_the_record_is_gone() -> None:
    assert not sought_record_gone(1868, 1868)  # still on the broker: wait on
    assert not sought_record_gone(1868, None)  # the broker said nothing: no proof
    assert sought_record_gone(1868, 1900)  # a read from it starts later: removed by retention or a marker


@pytest.mark.kafka
def test_the_probe_reads_the_sought_record_while_it_exists_and_the_next_one_after_it_is_deleted(
    kafka_settings: StreamSettings,
) -> None:
    topic = kafka_settings.topic("probe")
    config = kafka_settings.kafka_client_config()

    async def scenario() -> tuple[int | None, int | None, int | None]:
        admin = AIOKafkaAdminClient(**config)
        await admin.start()
        producer = AIOKafkaProducer(**config)
        await producer.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
            for n in range(10):
                await producer.send_and_wait(topic, f"event {n}".encode(), key=b"u1", partition=0)
            present = await first_offset_from(kafka_settings, topic, 0, 3)
            await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=6)}, timeout_ms=10_000)
            gone = await first_offset_from(kafka_settings, topic, 0, 3)
            past_the_end = await first_offset_from(kafka_settings, topic, 0, 10)
            return present, gone, past_the_end
        finally:
            await producer.stop()
            await admin.close()

    present, gone, past_the_end = asyncio.run(scenario())
    assert present == 3 and not sought_record_gone(3, present)
    assert gone == 6 and sought_record_gone(3, gone)
    assert past_the_end is None
