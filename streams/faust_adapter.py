"""Every access this project makes to a private attribute of Faust or aiokafka, and nowhere else.

Each function here leans on behaviour that neither library documents, so it holds only for the pinned versions
below. ``tests/test_faust_adapter.py`` asserts those versions and exercises each access against them (on the real
broker where the behaviour needs one): an upgrade that changes any of it fails there, loudly, instead of in a
worker's offsets.

Sending from a worker goes through one path, :class:`BatchSender` (one aiokafka record batch per topic
partition on Faust's own producer); tools outside the worker use :mod:`streams.kafka.producer`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import faust
import faust.streams
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import TP
from faust.types.transports import ConsumerT

FAUST_VERSION = "0.15.3"  # faust-streaming
AIOKAFKA_VERSION = "0.14.0"


@contextmanager
def current_event(event: faust.EventT) -> Iterator[None]:
    """Make ``event`` the current one while writing a table.

    Faust's RocksDB store files a write under the *current* event's partition (``faust.streams.current_event()``,
    read from the private context variable ``faust.streams._current_event``); in a batch taken with
    ``take_events`` that is the last event's, which may be another partition than the key's.
    """
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


def read_offset(consumer: ConsumerT, tp: TP) -> int | None:
    """The last offset Faust's consumer handed to the streams for ``tp`` (None: none yet). A fetched record below
    it is dropped; :meth:`faust.transport.consumer.Consumer.seek` sets it to the sought offset."""
    return cast(Any, consumer)._read_offset.get(tp)  # Faust's Consumer, not in its ConsumerT protocol


def aiokafka_producer(app: faust.App) -> AIOKafkaProducer:
    """Faust's own aiokafka producer (started with the app): its record batches skip Faust's per-message
    bookkeeping."""
    return cast(Any, app.producer)._ensure_producer()  # the aiokafka transport's, not in ProducerT


def partition_for(producer: AIOKafkaProducer, key: bytes, partitions: list[int]) -> int:
    """The partition ``producer`` (and so ``Topic.send``, and Faust's tables) puts ``key`` in."""
    return producer._partitioner(key, partitions, partitions)


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch the cluster's metadata now: ``partitions_for_topic`` knows a topic created since the last refresh
    only after this (aiokafka refreshes on its own every ``metadata_max_age_ms``)."""
    await consumer._client.force_metadata_update()


async def flush(app: faust.App) -> None:
    """Wait until the broker has every record the app's producer was given, table changelog writes included
    (a table write only queues its changelog record in Faust's producer buffer).

    Faust's buffer hands records to aiokafka in the order they were queued, and its flush returns early when no
    record leaves it for 0.1 s; a record still in the buffer then is only sure to be handed over after every
    record queued before it. Waiting until the buffer is empty instead can hold an agent for as long as other agents
    keep queueing; a full chaos run with that wait stalled partitions for minutes (its cause not isolated).
    """
    await app.producer.flush()


class BatchSender:
    """Messages appended into one aiokafka record batch per topic partition, partitioned by key as ``Topic.send``
    partitions them (the producer's partitioner), then submitted together: a ``Topic.send`` costs about 0.1 ms of
    Faust and aiokafka bookkeeping a message, and a produce request every few messages."""

    def __init__(self, app: faust.App) -> None:
        self._producer = aiokafka_producer(app)
        self._batches: dict[tuple[str, int], BatchBuilder] = {}
        self._sent: list[asyncio.Future] = []
        self._partitions: dict[tuple[str, bytes], int] = {}  # the partitioner hashes in Python: once a key

    async def add(self, topic: str, key: bytes, value: bytes) -> None:
        partition = self._partitions.get((topic, key))
        if partition is None:
            # Waits for the topic's metadata if the client has none yet: right after start-up, or after a refresh
            # that dropped the topic.
            partitions = sorted(await self._producer.partitions_for(topic))
            partition = self._partitions[(topic, key)] = partition_for(self._producer, key, partitions)
        batch = self._batches.get((topic, partition))
        if batch is None:
            batch = self._batches[(topic, partition)] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next one
            await self._submit(topic, partition)
            batch = self._batches[(topic, partition)] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a {len(value)}-byte message does not fit in a record batch of {topic}")

    async def _submit(self, topic: str, partition: int) -> None:
        batch = self._batches.pop((topic, partition))
        self._sent.append(await self._producer.send_batch(batch, topic, partition=partition))

    async def sent(self) -> None:
        """Submit what is left and wait until the broker has every batch."""
        for topic, partition in list(self._batches):
            await self._submit(topic, partition)
        sent, self._sent = self._sent, []
        await asyncio.gather(*sent)
