"""A plain aiokafka producer for records, for tools outside the Faust worker (replay, trainer, CLI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from lettingo.records import Record
from streams.kafka.access import check_connection, explain_authorization
from streams.settings import StreamSettings


class RecordProducer:
    """Sends records keyed by a string; keeps at most ``max_in_flight`` sends unacknowledged."""

    def __init__(self, producer: AIOKafkaProducer, settings: StreamSettings, max_in_flight: int = 10_000) -> None:
        self._producer = producer
        self._settings = settings
        self._pending: list[asyncio.Future] = []
        self._max_in_flight = max_in_flight
        self.sent = 0

    async def send(self, topic: str, key: str | None, record: Record | None) -> None:
        """Queue one record (``None`` sends a tombstone)."""
        future = await self._producer.send(
            self._settings.topic(topic),
            value=None if record is None else record.to_bytes(),
            key=None if key is None else key.encode(),
        )
        self._pending.append(future)
        if len(self._pending) >= self._max_in_flight:
            await self.flush()

    async def flush(self) -> None:
        await self._producer.flush()
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)  # raises if any send failed
        self.sent += len(pending)


@asynccontextmanager
async def record_producer(settings: StreamSettings, **overrides: object) -> AsyncIterator[RecordProducer]:
    """A started producer; a client Kafka does not accept, or whose ACLs refuse a send, gets a
    :class:`streams.kafka.access.KafkaAccessError` (one line) instead of aiokafka's own errors."""
    await check_connection(settings)
    producer = AIOKafkaProducer(
        **settings.kafka_client_config(),
        acks="all",
        enable_idempotence=True,  # a retried batch is not written twice
        linger_ms=10,
        max_batch_size=512 * 1024,
        # aiokafka fails a batch whose partition has had no leader for this long (a broker restart), and its
        # default of 40 s is shorter than a restart plus a leader election under load.
        request_timeout_ms=int(settings.kafka.delivery_timeout_seconds * 1000),
        **overrides,
    )
    await producer.start()
    try:
        sink = RecordProducer(producer, settings)
        yield sink
        await sink.flush()
    except KafkaError as e:
        refused = explain_authorization(e, settings, "sending records")
        if refused is None:
            raise
        raise refused from e
    finally:
        await producer.stop()
