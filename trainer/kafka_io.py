"""The trainer's only Kafka edge (aiokafka): consume preference pairs in batches, publish model versions.

Offsets are committed only after the batch is durably stored (:class:`trainer.batches.BatchStore`), so a crash
loses nothing: uncommitted pairs are read again, committed ones are on disk. Undecodable messages are counted,
sent to ``dead-letters`` with the reason, and never silently dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from lettingo.errors import ServiceError
from lettingo.records import DeadLetter, Erasure, ModelVersion, PreferencePair, RecordError, decode_record
from streams.kafka.access import KafkaAccessError, check_connection, explain_authorization
from streams.settings import StreamSettings
from trainer.batches import BatchStore, StoredBatch
from trainer.data import PairReport

log = logging.getLogger(__name__)

PAIRS_TOPIC = "preference-pairs"
ERASURES_TOPIC = "erasures"
MODEL_VERSIONS_TOPIC = "model-versions"
DEAD_LETTERS_TOPIC = "dead-letters"


class KafkaUnavailableError(ServiceError):
    """The broker could not be reached or refused a request."""


@dataclass
class ConsumedBatch:
    pairs: list[PreferencePair]
    report: PairReport
    stored: StoredBatch
    offsets: dict[int, list[int]] = field(default_factory=dict)


async def consume_pair_batch(
    settings: StreamSettings, store: BatchStore, group_id: str, max_pairs: int, wait_s: float
) -> ConsumedBatch | None:
    """Read up to ``max_pairs`` messages (waiting at most ``wait_s``), store them, then commit; None if none came."""
    await _check_access(settings)
    topic = settings.topic(PAIRS_TOPIC)
    consumer = AIOKafkaConsumer(
        topic,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.kafka_client_config(),
    )
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_config())
    try:
        await consumer.start()
        await producer.start()
    except KafkaError as e:
        await _stop(consumer, producer)
        raise KafkaUnavailableError(f"cannot reach Kafka at {settings.bootstrap}: {e}") from e
    try:
        return await _consume(settings, consumer, producer, store, group_id, max_pairs, wait_s)
    except KafkaError as e:
        refused = explain_authorization(e, settings, f"reading {topic} as group {group_id!r}")
        if refused is None:
            raise
        raise KafkaUnavailableError(str(refused)) from e
    finally:
        await _stop(consumer, producer)


async def _consume(
    settings: StreamSettings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    store: BatchStore,
    group_id: str,
    max_pairs: int,
    wait_s: float,
) -> ConsumedBatch | None:
    topic = settings.topic(PAIRS_TOPIC)
    pairs: list[PreferencePair] = []
    report = PairReport()
    offsets: dict[int, list[int]] = {}
    erased = await read_erasures(settings)
    deadline = time.monotonic() + wait_s
    while report.received < max_pairs and (remaining := deadline - time.monotonic()) > 0:
        fetched = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000), max_records=max_pairs)
        for partition, messages in fetched.items():
            for message in messages:
                report.received += 1
                first_last = offsets.setdefault(partition.partition, [message.offset, message.offset])
                first_last[1] = message.offset
                try:
                    pair = decode_record(PreferencePair, message.value, settings.input_limits())
                    if pair.user_id in erased and message.timestamp / 1000 <= erased[pair.user_id]:
                        report.reject("forgotten", f"{topic}[{partition.partition}]@{message.offset}: user forgotten")
                        continue  # not dead-lettered: that would copy the forgotten user's data
                    pairs.append(pair)
                except RecordError as e:
                    report.reject(e.reason, f"{topic}[{partition.partition}]@{message.offset}: {e}")
                    await producer.send(
                        settings.topic(DEAD_LETTERS_TOPIC),
                        key=message.key,
                        value=_dead_letter(topic, partition.partition, message.offset, message, e).to_bytes(),
                    )
    if report.received == 0:
        return None
    lineage = {"topic": topic, "group_id": group_id, "offsets": {str(p): o for p, o in sorted(offsets.items())}}
    report.sources.append(lineage)
    stored = store.write(pairs, lineage)
    await producer.flush()  # dead letters are durable before their offsets are committed
    await consumer.commit({TopicPartition(topic, p): last + 1 for p, (_, last) in offsets.items()})
    log.info("consumed %s from %s, stored in %s", report.summary(), topic, stored.path)
    return ConsumedBatch(pairs, report, stored, offsets)


async def read_erasures(settings: StreamSettings) -> dict[str, float]:
    """Forgotten users -> when they were forgotten, from the whole compacted ``erasures`` topic: a pair of such a
    user made before the erasure never enters a round (streams.agents.erasures)."""
    topic = settings.topic(ERASURES_TOPIC)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **settings.kafka_client_config())
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return {}
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]  # user-keyed: the shared count
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        erased: dict[str, float] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    try:
                        erasure = decode_record(Erasure, message.value, settings.input_limits())
                    except RecordError:
                        continue  # the workers dead-letter it
                    erased[erasure.user_id] = max(erasure.ts, erased.get(erasure.user_id, 0.0))
        return erased
    finally:
        await consumer.stop()


def _dead_letter(topic: str, partition: int, offset: int, message: object, error: RecordError) -> DeadLetter:
    value = getattr(message, "value", None) or b""
    key = getattr(message, "key", None)
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        error=str(error),
        reason=error.reason,
        payload=value.decode("utf-8", errors="replace")[:16_384],
        key=key.decode("utf-8", errors="replace") if key else None,
    )


async def publish_model_version(settings: StreamSettings, record: ModelVersion) -> None:
    """Send ``record`` to the compacted ``model-versions`` topic, keyed by model name, acknowledged by all."""
    await _check_access(settings)
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_config())
    try:
        await producer.start()
        await producer.send_and_wait(
            settings.topic(MODEL_VERSIONS_TOPIC), key=record.name.encode(), value=record.to_bytes()
        )
    except KafkaError as e:
        refused = explain_authorization(e, settings, f"publishing to {settings.topic(MODEL_VERSIONS_TOPIC)}")
        raise KafkaUnavailableError(
            str(refused) if refused else f"cannot publish to Kafka at {settings.bootstrap}: {e}"
        ) from e
    finally:
        await producer.stop()
    log.info("published %s v%d (%s) to %s", record.name, record.version, record.status, MODEL_VERSIONS_TOPIC)


def publish_model_version_sync(settings: StreamSettings, record: ModelVersion) -> None:
    asyncio.run(publish_model_version(settings, record))


def read_erasures_sync(settings: StreamSettings) -> dict[str, float]:
    return asyncio.run(read_erasures(settings))


def consume_pair_batch_sync(
    settings: StreamSettings, store: BatchStore, group_id: str, max_pairs: int, wait_s: float
) -> ConsumedBatch | None:
    return asyncio.run(consume_pair_batch(settings, store, group_id, max_pairs, wait_s))


async def _check_access(settings: StreamSettings) -> None:
    """Fail at once, in one line, when Kafka does not accept this client (wrong password, TLS, protocol)."""
    try:
        await check_connection(settings)
    except KafkaAccessError as e:
        raise KafkaUnavailableError(str(e)) from e


async def _stop(*clients: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    for client in clients:
        try:
            await client.stop()
        except Exception:  # stopping a client that never started is not worth a second error
            log.debug("stopping %s failed", type(client).__name__, exc_info=True)
