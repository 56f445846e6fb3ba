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
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import faust
import faust.streams
import faust.transport.drivers.aiokafka as faust_aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, TableT
from faust.types.transports import ConsumerT
from faust.types.tuples import ack_lock
from mode.utils.futures import notify
from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, WriteBatch, WriteBufferManager

FAUST_VERSION = "0.15.3"  # faust-streaming
AIOKAFKA_VERSION = "0.14.0"

log = logging.getLogger(__name__)


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

    async def submit(self) -> None:
        """Hand what is left to the producer, without waiting for the broker."""
        for topic, partition in list(self._batches):
            await self._submit(topic, partition)

    async def sent(self) -> None:
        """Submit what is left and wait until the broker has every batch."""
        await self.submit()
        sent, self._sent = self._sent, []
        await asyncio.gather(*sent)


# Records one getmany may return, and so the most one RocksDB write batch holds.
BULK_RESTORE_RECORDS = 10_000


class BulkRestore:
    """Reads table changelog partitions with a plain aiokafka consumer (``getmany``, large fetches) into their
    RocksDB databases in write batches, before Faust's recovery reads them one record at a time (about 100 µs of
    Faust's Python a record: its consumer's per-message handling and a task per record in its recovery loop).

    Hooked into :meth:`faust.tables.recovery.Recovery._build_offsets`, which Faust awaits once for the active and
    once for the standby changelog partitions of each rebalance, after it flushed its recovery buffers and built the
    active highwaters, and before it seeks its consumer to the offsets it builds there: a partition read here to its
    highwater has its offset at the highwater, and Faust's recovery finds nothing left to read in it.

    The records are applied as :meth:`faust.stores.rocksdb.Store.apply_changelog_batch` applies them (a value is
    put, a tombstone deletes the key), and each write batch also carries the store's persisted offset (the last
    offset applied, under Faust's own ``offset_key``), so that a worker killed mid-restore goes on from a
    consistent point: a database never holds records past its persisted offset.

    Faust awaits the hook under ``broker_request_timeout`` and gives its recovery service up when that runs out; the
    bulk read stops after half of it, and Faust's own recovery reads what is left.
    """

    def __init__(self, client_config: Mapping[str, Any], batch_records: int = BULK_RESTORE_RECORDS) -> None:
        self.client_config = dict(client_config)
        self.batch_records = batch_records

    async def restore(self, recovery: Recovery, tps: set[TP], offsets: dict[TP, int | None], title: str) -> int:
        """Restore ``tps`` (all of one kind, ``title``: active or standby) from their persisted offsets, moving
        ``offsets`` (Faust's active or standby offsets) to what was applied; the number of records applied."""
        app = recovery.app
        budget_s = float(app.conf.broker_request_timeout) / 2
        started = time.monotonic()
        stores: dict[TP, RocksDBStore] = {}
        for tp in tps:
            store = getattr(recovery.tp_to_table.get(tp), "data", None)
            if isinstance(store, RocksDBStore) and store.use_rocksdict:
                stores[tp] = store
        if not stores:
            return 0
        highwaters = recovery.active_highwaters if title == "active" else {}
        if all(tp in highwaters and _first_to_read(store, tp) > highwaters[tp] for tp, store in stores.items()):
            # Faust built the active highwaters (last offsets) a moment ago: every store holds its partition up to
            # it, so no consumer is started and no end offsets asked (each rebalance of a warm worker)
            log.debug("Bulk restore: the %d %s changelog partitions are up to date", len(stores), title)
            return 0
        consumer = AIOKafkaConsumer(
            **self.client_config,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a persisted offset below the log start: from the first record kept
            isolation_level="read_committed" if app.in_transaction else "read_uncommitted",
            max_partition_fetch_bytes=4 * 2**20,
            fetch_max_bytes=50 * 2**20,
        )
        await consumer.start()
        applied = 0
        try:
            kafka_tps = {tp: TopicPartition(tp.topic, tp.partition) for tp in stores}
            ends = await consumer.end_offsets(list(kafka_tps.values()))
            todo: dict[TopicPartition, tuple[RocksDBStore, int]] = {}
            firsts: dict[TopicPartition, int] = {}
            for tp, ktp in kafka_tps.items():
                end = ends[ktp]
                if title == "active" and tp in recovery.active_highwaters:
                    # Faust checks the active offsets against the highwaters it built a moment ago
                    end = min(end, recovery.active_highwaters[tp] + 1)
                firsts[ktp] = _first_to_read(stores[tp], tp)
                if firsts[ktp] < end:
                    todo[ktp] = (stores[tp], end)
            if not todo:
                return 0
            consumer.assign(list(todo))
            for ktp in todo:
                consumer.seek(ktp, firsts[ktp])
            log.info("Bulk restore of %d %s changelog partitions", len(todo), title)
            while todo and time.monotonic() - started < budget_s:
                fetched = await consumer.getmany(*todo, timeout_ms=1000, max_records=self.batch_records)
                for ktp in list(todo):
                    # a partition without records may still be done: what was left held no record (a transaction
                    # marker), and only its position says so
                    records = fetched.get(ktp, [])
                    store, end = todo[ktp]
                    tp = TP(ktp.topic, ktp.partition)
                    batch = WriteBatch(raw_mode=True)
                    last, written = None, 0
                    for record in records:
                        if record.offset >= end:
                            break
                        if record.value is None:
                            batch.delete(record.key)
                        else:
                            batch.put(record.key, record.value)
                        last, written = record.offset, written + 1
                    done = await consumer.position(ktp) >= end
                    if done:
                        last = end - 1  # offsets past the last record (compaction, transaction markers) hold nothing
                    if last is None:
                        continue
                    batch.put(store.offset_key, str(last).encode())
                    database(store, tp.partition).write(batch)
                    offsets[tp] = last
                    applied += written
                    log.debug("Bulk restore: %s to offset %d", tp, last)
                    if done:
                        del todo[ktp]
                        consumer.pause(ktp)
            seconds = time.monotonic() - started
            log.info(
                "Bulk restore read %d records of %s changelog partitions in %.2f s%s",
                applied,
                title,
                seconds,
                f"; {len(todo)} partitions left to Faust's recovery" if todo else "",
            )
            return applied
        finally:
            await consumer.stop()


def _first_to_read(store: RocksDBStore, tp: TP) -> int:
    """The first changelog offset ``store`` does not hold yet (the one after its persisted offset)."""
    persisted = store.persisted_offset(tp)
    return 0 if persisted is None else persisted + 1


def database(store: RocksDBStore, partition: int) -> Any:
    """The RocksDB database (a rocksdict ``Rdict``) of one table partition, opened if it is not yet."""
    return store._db_for_partition(partition)


class RocksDBMemory:
    """One block cache and one memtable budget for every RocksDB database of a worker.

    Faust opens a database per table and partition a worker holds (active or standby), each with a block cache of
    its own: the caches kept the blocks of SST files compaction had already deleted until each reached its cap
    (``python -m bench.memory_probe``: 38 MB of cache over 4.4 MB of live SST files, still growing), so a worker's
    memory crept towards partitions x tables x cap. One cache bounds the worker instead, and blocks of hot
    databases push out those of idle ones. The write buffer manager (RocksDB's, without stalling writers) flushes
    the largest memtable once all of them together pass ``memtable_bytes``, so idle databases do not each keep a
    memtable near full.
    """

    def __init__(self, block_cache_bytes: int, memtable_bytes: int) -> None:
        self.block_cache = Cache(block_cache_bytes)
        self.memtables = WriteBufferManager(memtable_bytes, False)
        self.bounds = {"block_cache": block_cache_bytes, "memtables": memtable_bytes}

    def usage(self) -> dict[str, int]:
        """Bytes the block cache and the memtables of every database hold now (RocksDB's own accounting)."""
        return {"block_cache": self.block_cache.get_usage(), "memtables": self.memtables.get_usage()}


class _SharedMemoryOptions(RocksDBOptions):
    """Faust's options of a store, opening each database on the worker's :class:`RocksDBMemory`."""

    def __init__(self, options: RocksDBOptions, memory: RocksDBMemory) -> None:
        vars(self).update(vars(options))
        self.memory = memory

    def as_options(self) -> Any:
        options = super().as_options()
        # Faust's table factory (RocksDBOptions.as_options, pinned by source in the tests) but for the cache.
        table_factory = BlockBasedOptions()
        table_factory.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table_factory.set_block_cache(self.memory.block_cache)
        table_factory.set_index_type(BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table_factory)
        options.set_write_buffer_manager(self.memory.memtables)
        return options


def share_rocksdb_memory(table: TableT, memory: RocksDBMemory) -> None:
    """Open every database of ``table`` (a RocksDB table on rocksdict, Faust's default driver) on ``memory``;
    before the table opens any (when it is declared)."""
    store = table.data
    if not (isinstance(store, RocksDBStore) and store.use_rocksdict):
        raise TypeError(f"{table.name}: a RocksDB store on rocksdict, not {store!r}")
    store.rocksdb_options = _SharedMemoryOptions(store.rocksdb_options, memory)


def table_manager(
    client_config: Mapping[str, Any] | None, batch_records: int = BULK_RESTORE_RECORDS
) -> type[TableManager]:
    """The ``TableManager`` class for ``faust.App``: Faust's own, or with ``client_config`` (aiokafka client
    keyword arguments) one whose recovery first runs a :class:`BulkRestore`."""
    if client_config is None:
        return TableManager
    bulk = BulkRestore(client_config, batch_records)

    class BulkRecovery(Recovery):
        async def _build_offsets(self, consumer: ConsumerT, tps: Any, destination: Any, title: str) -> None:
            try:
                await bulk.restore(self, set(tps), destination, title)
            except (KafkaError, OSError) as error:
                # Every write batch left its database at a consistent offset: Faust's recovery goes on from there.
                log.warning(
                    "Bulk restore of %s changelog partitions stopped (%r); Faust's recovery reads the rest",
                    title,
                    error,
                )
            await super()._build_offsets(consumer, tps, destination, title)

    class BulkRestoreTableManager(TableManager):
        @property
        def recovery(self) -> Recovery:
            # Faust's property, with the recovery class swapped
            if self._recovery is None:
                self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
            return self._recovery

    return BulkRestoreTableManager


class BulkEvent:
    """An event of a bulk topic: only its message. Weak-referenceable, as ``faust.streams._current_event`` holds a
    weak reference (:func:`current_event`)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


@dataclass
class Chunk:
    """The records of one topic partition from one fetch, in offset order."""

    tp: TP
    events: list[BulkEvent]

    @property
    def tracked(self) -> Any:
        """The chunk's last message, tracked by the consumer: a revoke's wait_empty() waits for its ack."""
        return self.events[-1].message


@dataclass(eq=False)  # hashable: Faust's flow control keeps the queues it clears in a weak set
class BulkSink:
    """The chunks of one bulk topic waiting for its agent: at most ``maxsize``, the fetcher waits when full."""

    maxsize: int = 8
    queue: asyncio.Queue[Chunk] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.maxsize)

    def clear(self) -> None:
        """Drop the queued chunks (Faust's ``flow_control.clear()`` on a revoke, as it clears its channel queues):
        they were not acked, so the commit stays behind them and they are fetched again."""
        while not self.queue.empty():
            self.queue.get_nowait()

    async def batches(self, max_events: int) -> AsyncIterator[list[Chunk]]:
        """Every chunk waiting (at least one), up to ``max_events`` events or one chunk past it."""
        while True:
            chunks = [await self.queue.get()]
            n = len(chunks[0].events)
            while n < max_events and not self.queue.empty():
                chunk = self.queue.get_nowait()
                chunks.append(chunk)
                n += len(chunk.events)
            yield chunks


def ack_chunks(consumer: ConsumerT, chunks: list[Chunk]) -> None:
    """Ack every offset of ``chunks`` as ``Consumer.ack`` acks one message, under its lock taken once: Faust's
    commit timer then commits up to the last contiguous acked offset."""
    faust_consumer = cast(Any, consumer)
    with ack_lock:
        for chunk in chunks:
            tp = chunk.tp
            if faust_consumer.app.topics.acks_enabled_for(tp.topic):
                committed = faust_consumer._committed_offset[tp]
                index = faust_consumer._acked_index[tp]
                fresh = [
                    e.message.offset
                    for e in chunk.events
                    if (committed is None or e.message.offset >= committed) and e.message.offset not in index
                ]
                index.update(fresh)
                faust_consumer._acked[tp].extend(fresh)
                faust_consumer._n_acked += len(fresh)
            chunk.tracked.acked = True
            faust_consumer._unacked_messages.discard(chunk.tracked)
        notify(faust_consumer._waiting_for_ack)  # a revoke's wait_empty() wakes now, not at its next 1 s poll


class _FetchTunedThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose aiokafka consumer fetches as its Faust consumer class says."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        created = super()._create_worker_consumer(transport)
        tuned = cast(BulkConsumer, self.consumer)  # created by BulkConsumer._new_consumer_thread
        # read by AIOKafkaConsumer.start() when it builds its Fetcher; Faust passes neither
        created._fetch_min_bytes = tuned.fetch_min_bytes
        created._fetch_max_wait_ms = tuned.fetch_max_wait_ms
        return created


class BulkConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetches hand the records of each bulk topic partition to the topic's sink as
    one chunk; the records of every other topic go on, one message at a time, to Faust's Fetcher loop
    (``Consumer._drain_messages``) as Faust's own ``getmany`` yields them. Its fetches wait for the data
    :func:`tune_fetches` sets."""

    bulk_sinks: ClassVar[dict[str, BulkSink]] = {}  # full topic name -> sink; set per app by install_bulk
    fetch_min_bytes: ClassVar[int] = 1  # aiokafka's default, which Faust keeps
    fetch_max_wait_ms: ClassVar[int] = 1500  # what Faust passes

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _FetchTunedThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        # Faust's getmany (pinned by source hash in tests/test_faust_adapter.py), with the bulk topics taken out.
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return
        sinks = self.bulk_sinks
        plain = {}
        for tp, recs in records.items():
            sink = sinks.get(tp.topic)
            if sink is None:
                plain[tp] = recs
                continue
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return  # a rebalance started: what is left is fetched again
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                await self._hand_over(sink, tp, recs)
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(plain):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)

    async def _hand_over(self, sink: BulkSink, tp: TP, records: list[Any]) -> None:
        """One chunk of ``tp`` into ``sink``: what Faust's Fetcher loop and its Conductor do per message, once."""
        read_offset = self._read_offset[tp]
        fresh = [r for r in records if read_offset is None or r.offset >= read_offset]  # below it: before a seek
        if not fresh:
            return
        if self.app.topics.acks_enabled_for(tp.topic):
            previous = read_offset
            for record in fresh:  # offsets missing before or inside the chunk (compaction, transaction markers)
                if previous and record.offset - previous > 1:
                    await self._add_gap(tp, previous + 1, record.offset)
                previous = record.offset
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
        await self.app.flow_control.acquire()
        events = [BulkEvent(self._to_message(tp, r)) for r in fresh]
        chunk = Chunk(tp, events)
        self.track_message(chunk.tracked)
        self.app.monitor.stream_inbound_time[tp] = time.monotonic()
        if sink.queue.full():
            # Blocks the whole fetch loop until the agent takes a batch, or a rebalance suspends the flow. Pausing
            # the partition instead (Faust's on_buffer_full) is not done: Faust keeps a paused partition in
            # _buffered_partitions across a revoke, so resuming it later would fetch a partition no longer assigned.
            put = sink.queue.put(chunk)
            waited = await self.wait_first(put, self.suspend_flow.wait())
            if put not in waited.done:
                self._unacked_messages.discard(chunk.tracked)
                return
        else:
            sink.queue.put_nowait(chunk)
        if self._read_offset[tp] == read_offset:  # else a seek while the chunk waited: the seek's offset stands
            self._read_offset[tp] = fresh[-1].offset


def install_bulk(app: faust.App, sinks: dict[str, BulkSink]) -> None:
    """Make ``app``'s consumer a :class:`BulkConsumer` for ``sinks`` (full topic name -> sink), beside the sinks
    installed on it before (each agent installs its own); before ``app.consumer`` is first used. Faust's flow
    control clears the sinks on a revoke."""
    for sink in sinks.values():
        # typed for mode's FlowControlQueue; of a managed queue mode's flow control calls only clear()
        app.flow_control.manage_queue(cast(Any, sink))
    base = _app_consumer(app)
    cast(Any, app.transport).Consumer = type("AppBulkConsumer", (base,), {"bulk_sinks": {**base.bulk_sinks, **sinks}})


def tune_fetches(app: faust.App, min_bytes: int, max_wait_ms: int) -> None:
    """Make each fetch of ``app``'s consumer wait, up to ``max_wait_ms``, for ``min_bytes`` of new records; before
    ``app.consumer`` is first used. Faust leaves aiokafka's 1 byte: a trickle of events is then fetched a few
    records per round trip, and the round trips (fetch requests in the consumer thread, Faust's fetch loop in the
    worker's) cost far more CPU than the records."""
    base = _app_consumer(app)
    cast(Any, app.transport).Consumer = type(
        "AppTunedConsumer", (base,), {"fetch_min_bytes": min_bytes, "fetch_max_wait_ms": max_wait_ms}
    )


def _app_consumer(app: faust.App) -> type[BulkConsumer]:
    """The consumer class installed on ``app`` so far, or :class:`BulkConsumer`: each install subclasses it."""
    current = cast(Any, app.transport).Consumer
    return current if issubclass(current, BulkConsumer) else BulkConsumer


def bulk_sink(app: faust.App, topic: str, enabled: bool) -> BulkSink | None:
    """A sink installed on ``app`` for ``topic`` (its full name) when ``enabled`` (``app.bulk_ingest``); None: the
    topic's agent reads Faust's own stream."""
    if not enabled:
        return None
    sink = BulkSink()
    install_bulk(app, {topic: sink})
    return sink


async def consume_batches(
    app: faust.App,
    stream: faust.Stream,
    sink: BulkSink | None,
    max_events: int,
    within: float,
    handle: Callable[[Sequence[Any]], Awaitable[None]],
) -> None:
    """Hand ``handle`` an agent's events a batch at a time: every chunk waiting in ``sink`` (up to ``max_events`` or
    one chunk past it), or without a sink what Faust's ``take_events`` takes (``max_events`` within ``within`` s).
    A batch is acked once handled, also when ``handle`` raised, as ``take_events`` acks it; an agent that must not
    lose such a batch keeps its own guard (ingest's applied offsets seek back to it)."""
    if sink is None:
        async for events in stream.take_events(max_events, within=within):
            await handle(events)
        return
    async for chunks in sink.batches(max_events):
        try:
            await handle([event for chunk in chunks for event in chunk.events])
        finally:
            ack_chunks(app.consumer, chunks)
