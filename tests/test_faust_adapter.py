"""streams.faust_adapter holds every private Faust / aiokafka access of the project; these tests pin the versions it
was written against and exercise each access on them, so that an upgrade that changes one fails here, loudly.

The accesses that need a running consumer or producer run in a small Faust worker on the real broker (a
subprocess: Faust's worker owns its event loop), which writes what it saw to a JSON file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import weakref
from importlib.metadata import version
from pathlib import Path

import faust
import faust.streams
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import faust_adapter

REPO = Path(__file__).resolve().parents[1]


def start_script_worker(tmp_path: Path, source: str, *args: str) -> subprocess.Popen:
    """A Faust worker from a script of this module (``source``), run in ``tmp_path`` (where Faust puts a data folder
    it is not given), its output in ``tmp_path / "worker.log"``."""
    script = tmp_path / "worker_script.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "worker.log").open("w")
    return subprocess.Popen(
        [sys.executable, str(script), *args, "worker"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_for_output(worker: subprocess.Popen, out: Path, tmp_path: Path, deadline: float) -> None:
    while not out.exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert out.exists(), (tmp_path / "worker.log").read_text()[-3000:]


def test_the_pinned_versions_are_the_installed_ones() -> None:
    """The adapter's private accesses hold for these versions only: upgrading either library means rerunning
    this file and updating the pins in streams/faust_adapter.py."""
    assert version("faust-streaming") == faust_adapter.FAUST_VERSION
    assert version("aiokafka") == faust_adapter.AIOKAFKA_VERSION


def test_current_event_is_what_faust_files_a_table_write_under_and_is_restored_after(tmp_path: Path) -> None:
    app = faust.App("adapter-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("t", key_type=bytes, value_type=bytes, partitions=4)
    event, outer = (
        faust.Event(app, key, b"v", {}, message(partition, key))
        for partition, key in ((3, b"k"), (1, b"o"))  # the batch's last event is the outer one, on partition 1
    )
    token = faust.streams._current_event.set(weakref.ref(outer))
    try:
        with faust_adapter.current_event(event):
            assert faust.streams.current_event() is event
            table.data[b"k"] = b"v"  # Faust's RocksDB store reads the current event's partition
        assert faust.streams.current_event() is outer
        table.data[b"o"] = b"v"  # after the block: the outer event's partition again
    finally:
        faust.streams._current_event.reset(token)
    assert table.data._db_for_partition(3).get(b"k") == b"v"
    assert all(table.data._db_for_partition(p).get(b"k") is None for p in (0, 1, 2))
    assert table.data._db_for_partition(1).get(b"o") == b"v"


def test_every_database_of_every_table_reads_through_the_one_shared_block_cache_and_memtable_budget(
    tmp_path: Path,
) -> None:
    """With Faust's own options each database opens a block cache of its own: the shared cache would see no use."""
    app = faust.App("adapter-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    memory = faust_adapter.RocksDBMemory(block_cache_bytes=8 * 2**20, memtable_bytes=4 * 2**20)
    tables = [app.Table(name, key_type=bytes, value_type=bytes, partitions=2) for name in ("a", "b")]
    for table in tables:
        faust_adapter.share_rocksdb_memory(table, memory)
    databases = [faust_adapter.database(table.data, partition) for table in tables for partition in (0, 1)]
    value = os.urandom(2000)  # incompressible: each read loads a block of its own size into the cache
    written = memory.usage()["memtables"]
    for n, db in enumerate(databases):
        for i in range(50):
            db[b"%d-%d" % (n, i)] = value
    assert memory.usage()["memtables"] > written  # every memtable is counted in the shared budget
    read = []
    for n, db in enumerate(databases):
        db.flush()  # to an SST file: reads now go through the block cache
        before = memory.usage()["block_cache"]
        assert all(db[b"%d-%d" % (n, i)] == value for i in range(50))
        read.append(memory.usage()["block_cache"] - before)
    assert all(grown >= 50 * 2000 for grown in read), read  # each database's blocks landed in the shared cache
    assert memory.usage()["block_cache"] <= memory.bounds["block_cache"]


def test_sharing_rocksdb_memory_refuses_a_table_not_on_rocksdict(tmp_path: Path) -> None:
    app = faust.App("adapter-test", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path))
    table = app.Table("t", key_type=bytes, value_type=bytes, partitions=1)
    with pytest.raises(TypeError, match="a RocksDB store on rocksdict"):
        faust_adapter.share_rocksdb_memory(table, faust_adapter.RocksDBMemory(2**20, 2**20))


def message(partition: int, key: bytes) -> faust.types.Message:
    return faust.types.Message(
        topic="in",
        partition=partition,
        offset=7,
        timestamp=0.0,
        timestamp_type=0,
        headers=[],
        key=key,
        value=b"v",
        checksum=None,
    )


WORKER = r"""
import asyncio, json, os, sys
import faust
from streams import faust_adapter

bootstrap, topic_in, topic_out, out, datadir = sys.argv[1:6]
app = faust.App(
    "adapter-" + topic_in, broker="kafka://" + bootstrap, store="memory://", datadir=datadir, web_enabled=False,
    consumer_auto_offset_reset="earliest", autodiscover=False, topic_allow_declare=False,
)
source = app.topic(topic_in, key_type=bytes, value_type=bytes)
seen = []


@app.agent(source)
async def agent(stream):
    async for event in stream.events():
        tp = event.message.tp
        seen.append(event.message.offset)
        if len(seen) == 3:
            await asyncio.sleep(1)  # Faust sets the read offset once the message is in the stream's buffer
            handed = faust_adapter.read_offset(app.consumer, tp)
            await app.consumer.seek(tp, 1)
            after_seek = faust_adapter.read_offset(app.consumer, tp)
        if len(seen) < 5:
            continue
        producer = faust_adapter.aiokafka_producer(app)
        partitions = sorted(await producer.partitions_for(topic_out))
        keys = [f"user-{n}".encode() for n in range(40)]
        ours = {k.decode(): faust_adapter.partition_for(producer, k, partitions) for k in keys}
        fausts = {k.decode(): app.producer.key_partition(topic_out, k).partition for k in keys}
        sender = faust_adapter.BatchSender(app)
        for k in keys:
            await sender.add(topic_out, k, b"x")
        await sender.sent()
        for k in keys:  # queued only: flush() must wait for them
            await app.topic(topic_out).send(key=k, value=b"y")
        await faust_adapter.flush(app)
        with open(out + ".tmp", "w") as f:
            json.dump({"seen": seen, "handed": handed, "after_seek": after_seek, "ours": ours, "fausts": fausts}, f)
        os.replace(out + ".tmp", out)
        await asyncio.sleep(3600)


faust.Worker(app, loglevel="WARNING").execute_from_commandline()
"""


async def _create(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 1) for name, n in topics.items()])
    finally:
        await admin.close()


async def _delete(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, n: int, partition: int = 0) -> None:
    """``n`` records (values "0" to "n-1", key "k") into one partition of ``topic``, in order; each acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = [await producer.send(topic, key=b"k", value=str(i).encode(), partition=partition) for i in range(n)]
        await asyncio.gather(*sent)  # raises if the broker refused one
    finally:
        await producer.stop()


async def _end_offsets(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await faust_adapter.refresh_metadata(consumer)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def test_read_offset_partitioner_flush_on_a_running_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Faust's read offset is the last offset it handed to the streams and a seek sets it (records from there on
    are handed out again); the producer's partitioner puts a
    key where Faust's ``key_partition`` (and so ``Topic.send`` and the tables) puts it; a batch sent with
    :class:`BatchSender` and records queued with ``send`` are all on the broker once :func:`flush` returns."""
    run = uuid.uuid4().hex[:10]
    topic_in, topic_out = f"adapter-in-{run}", f"adapter-out-{run}"
    asyncio.run(_create(kafka_bootstrap, {topic_in: 1, topic_out: 4}))
    try:
        asyncio.run(_produce(kafka_bootstrap, topic_in, 3))
        out = tmp_path / "seen.json"
        worker = start_script_worker(
            tmp_path, WORKER, kafka_bootstrap, topic_in, topic_out, str(out), str(tmp_path / "data")
        )
        try:
            wait_for_output(worker, out, tmp_path, time.monotonic() + 120)
            result = json.loads(out.read_text())
            # The flushed records are on the broker before the worker is killed.
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(30)
        assert result["handed"] == 2 and result["after_seek"] == 1
        assert result["seen"] == [0, 1, 2, 1, 2]  # from the sought offset on, handed out again
        assert result["ours"] == result["fausts"] and len(set(result["ours"].values())) > 1
        assert asyncio.run(_end_offsets(kafka_bootstrap, topic_out)) == 80
    finally:
        asyncio.run(_delete(kafka_bootstrap, [topic_in, topic_out]))


def test_refresh_metadata_makes_a_topic_created_after_start_known(kafka_bootstrap: str) -> None:
    topic = f"adapter-new-{uuid.uuid4().hex[:10]}"

    async def scenario() -> tuple[object, set[int] | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            before = consumer.partitions_for_topic(topic)
            await _create(kafka_bootstrap, {topic: 3})
            for _ in range(20):  # the new topic's metadata may reach the broker's cache a moment after it is made
                await faust_adapter.refresh_metadata(consumer)
                if consumer.partitions_for_topic(topic):
                    break
                await asyncio.sleep(0.5)
            return before, consumer.partitions_for_topic(topic)  # else only after metadata_max_age_ms (5 min)
        finally:
            await consumer.stop()

    try:
        before, after = asyncio.run(scenario())
    finally:
        asyncio.run(_delete(kafka_bootstrap, [topic]))
    assert before is None
    assert after == {0, 1, 2}


CONSUMER_NAMES = [
    "_read_offset",
    "_wait_next_records",
    "_add_gap",
    "_acked",
    "_acked_index",
    "_committed_offset",
    "_unacked_messages",
    "_waiting_for_ack",
    "_buffered_partitions",
    "_commit_every",
    "_n_acked",
]


@pytest.mark.parametrize(
    "name", [*CONSUMER_NAMES, "_to_message", "_ensure_producer", "_partitioner", "force_metadata_update"]
)
def test_each_private_name_the_adapter_uses_exists_on_the_pinned_classes(name: str) -> None:
    """A renamed attribute fails here by name, before the behaviour tests above start a worker."""
    import faust.transport.drivers.aiokafka as faust_aiokafka
    from aiokafka import AIOKafkaProducer
    from aiokafka.client import AIOKafkaClient
    from faust.transport.consumer import Consumer

    # an attribute is annotated on the class, defined on it, or set in __init__
    consumer_names = set(Consumer.__annotations__) | set(vars(Consumer)) | set(Consumer.__init__.__code__.co_names)
    owners = {
        **{n: consumer_names for n in CONSUMER_NAMES},
        "_to_message": vars(faust_aiokafka.Consumer),
        "_ensure_producer": vars(faust_aiokafka.Producer),
        "_partitioner": AIOKafkaProducer.__init__.__code__.co_names,  # set in __init__
        "force_metadata_update": vars(AIOKafkaClient),
    }
    assert name in owners[name]


def test_the_recovery_steps_the_bulk_restore_hooks_into_run_in_the_order_it_relies_on() -> None:
    """:class:`faust_adapter.BulkRestore` runs inside ``Recovery._build_offsets(consumer, tps, destination, title)``:
    Faust must build the active highwaters before the active offsets, build both kinds of offsets before seeking to
    them, and decide ``need_recovery`` after that; the hook runs under ``broker_request_timeout`` (its budget is
    half of it). ``TableManager.recovery`` must build the recovery lazily into ``_recovery`` (the subclass swaps the
    class there). The restore's behaviour on the real broker: tests/test_bulk_restore.py."""
    import inspect

    from faust.stores.rocksdb import Store
    from faust.tables import TableManager
    from faust.tables.recovery import Recovery

    assert list(inspect.signature(Recovery._build_offsets).parameters) == [
        "self",
        "consumer",
        "tps",
        "destination",
        "title",
    ]
    steps = inspect.getsource(Recovery._restart_recovery.fun)  # a mode ServiceTask around the coroutine
    order = [
        'consumer, assigned_active_tps, active_highwaters, "active"',
        'consumer, assigned_active_tps, active_offsets, "active"',
        'consumer, assigned_standby_tps, standby_offsets, "standby"',
        "T(self._seek_offsets)(",
        "if self.need_recovery():",
    ]
    at = [steps.index(step) for step in order]
    assert at == sorted(at)
    assert steps.count("timeout=self.app.conf.broker_request_timeout") >= 3
    manager = inspect.getsource(TableManager.recovery.fget)
    assert "if self._recovery is None:" in manager and "Recovery(" in manager
    init = inspect.getsource(Recovery.__init__)
    assert "self.tp_to_table = {}" in init and "self.active_highwaters = Counter()" in init
    # The store's persisted offset: under this key, read by persisted_offset, and what apply_changelog_batch sets.
    assert Store.offset_key == b"__faust\0offset__"
    import faust.stores.rocksdb

    assert faust.stores.rocksdb.USE_ROCKSDICT  # the stores write with rocksdict, as the bulk restore does
    assert "_db_for_partition" in vars(Store) and "self.use_rocksdict = True" in inspect.getsource(Store.__init__)
    assert "self._db_for_partition(tp.partition).get(self.offset_key)" in inspect.getsource(Store.persisted_offset)
    batch = inspect.getsource(Store.apply_changelog_batch)
    assert "if msg.value is None:" in batch and ".delete(msg.key)" in batch and ".put(msg.key, msg.value)" in batch


# sha256 (first 16 hex digits) of inspect.getsource of the Faust functions the adapter copies or relies on, in
# faust-streaming 0.15.3: a change upstream must be read before the pins are moved.
PINNED_SOURCES = {
    "faust.transport.consumer.Consumer._drain_messages": "44a2500309e83c63",
    "faust.transport.consumer.Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.consumer.Consumer._wait_next_records": "6218e1969a636b3f",
    "faust.transport.consumer.Consumer.ack": "5fcf41cf45153475",
    "faust.transport.drivers.aiokafka.Consumer._to_message": "7c24f6511b2fcef7",
    # RocksDBMemory's options copy the table factory of as_options and rely on open() building its options there
    "faust.stores.rocksdb.RocksDBOptions.as_options": "d2a1bea17736d2eb",
    "faust.stores.rocksdb.RocksDBOptions.open": "ff87e92d69e2f487",
    "faust.stores.rocksdb.Store._open_for_partition": "1dc4e0113d67379d",
}


@pytest.mark.parametrize("qualified", sorted(PINNED_SOURCES))
def test_the_faust_code_the_adapter_copies_or_relies_on_is_the_pinned_source(qualified: str) -> None:
    """BulkConsumer.getmany is Faust's getmany with the bulk topics taken out, fed to Faust's Fetcher loop
    (_drain_messages, which sets the read offsets of what it yields), and ack_chunks is Consumer.ack for many
    offsets; RocksDBMemory's options rebuild as_options' table factory: any change to these functions must be
    re-read against streams/faust_adapter.py."""
    import hashlib
    import importlib
    import inspect

    module, cls, fn = qualified.rsplit(".", 2)
    source = inspect.getsource(getattr(getattr(importlib.import_module(module), cls), fn))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == PINNED_SOURCES[qualified], f"{qualified} changed"


BULK_WORKER = r"""
import asyncio, json, os, sys
import faust
from streams import faust_adapter

bootstrap, bulk_name, plain_name, out, n = sys.argv[1:6]
n = int(n)
app = faust.App(
    "adapter-" + bulk_name, broker="kafka://" + bootstrap, store="memory://", web_enabled=False,
    consumer_auto_offset_reset="earliest", autodiscover=False, topic_allow_declare=False,
    broker_commit_interval=0.5,
)
bulk = app.topic(bulk_name, key_type=bytes, value_type=bytes)
plain = app.topic(plain_name, key_type=bytes, value_type=bytes)
sink = faust_adapter.BulkSink(maxsize=1)  # the second partition's chunk waits while the agent takes the first
faust_adapter.install_bulk(app, {bulk_name: sink})
seen = {"bulk": {}, "plain": [], "batches": 0}
sought = []


def done():
    if len(seen["plain"]) == n and sum(map(len, seen["bulk"].values())) == 3 * n - 1 and not os.path.exists(out):
        seen["consumer"] = type(app.consumer).__name__
        with open(out + ".tmp", "w") as f:
            json.dump(seen, f)
        os.replace(out + ".tmp", out)


@app.agent(bulk)
async def take_bulk(stream):
    async for chunks in sink.batches(7):
        seen["batches"] += 1
        for chunk in chunks:
            assert all(type(e) is faust_adapter.BulkEvent for e in chunk.events)
            seen["bulk"].setdefault(str(chunk.tp.partition), []).extend(e.message.offset for e in chunk.events)
        if not sought:
            # The other partition's chunk is waiting for the sink (both were fetched before this batch): the seek
            # must stand once the chunk is in, so that records from the sought offset on are handed out again.
            waiting = faust.types.TP(bulk_name, 1 - chunks[0].tp.partition)
            sought.append(waiting.partition)
            seen["sought"] = waiting.partition
            await app.consumer.seek(waiting, 1)
        faust_adapter.ack_chunks(app.consumer, chunks)
        done()


@app.agent(plain)
async def take_plain(stream):
    async for event in stream.events():
        seen["plain"].append(event.message.offset)
        done()


faust.Worker(app, loglevel="WARNING").execute_from_commandline()
"""


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()


def test_a_bulk_topic_reaches_its_sink_in_chunks_and_its_acks_commit_it(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A worker with a bulk topic (2 partitions) and a plain one: the bulk records reach the sink as chunks of one
    partition in offset order, each once, except after a seek, which hands out again from the sought offset, also
    when the seek came while that partition's chunk waited for the full sink; the plain topic's events go through
    Faust's own path; the acked chunks are committed up to the end."""
    run = uuid.uuid4().hex[:10]
    bulk, plain, n = f"adapter-bulk-{run}", f"adapter-plain-{run}", 40
    asyncio.run(_create(kafka_bootstrap, {bulk: 2, plain: 1}))
    try:
        asyncio.run(_produce(kafka_bootstrap, plain, n))
        for partition in (0, 1):
            asyncio.run(_produce(kafka_bootstrap, bulk, n, partition))
        out = tmp_path / "seen.json"
        worker = start_script_worker(tmp_path, BULK_WORKER, kafka_bootstrap, bulk, plain, str(out), str(n))
        try:
            deadline = time.monotonic() + 120
            wait_for_output(worker, out, tmp_path, deadline)
            committed: list[int | None] = []
            while time.monotonic() < deadline:
                committed = asyncio.run(_committed(kafka_bootstrap, f"adapter-{bulk}", bulk, 2))
                if committed == [n, n]:
                    break
                time.sleep(1)
        finally:
            worker.kill()
            worker.wait(30)
        seen = json.loads(out.read_text())
        assert seen["consumer"] == "AppBulkConsumer"
        assert seen["plain"] == list(range(n))
        sought = seen["sought"]
        assert seen["bulk"][str(1 - sought)] == list(range(n))
        # all of the partition in the first fetch (produced before the worker started), then again from the seek's 1
        assert seen["bulk"][str(sought)] == list(range(n)) + list(range(1, n))
        assert committed == [n, n]
    finally:
        asyncio.run(_delete(kafka_bootstrap, [bulk, plain]))


def test_each_install_of_bulk_sinks_keeps_the_sinks_installed_before() -> None:
    """Ingest and task evaluation each install their own sink on the one app: the second must not drop the first
    (its topic's records would then go to Faust's per-event stream, which no agent reads on the bulk path)."""
    app = faust.App(f"adapter-install-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", autodiscover=False)
    interactions, rated = faust_adapter.BulkSink(), faust_adapter.BulkSink()
    faust_adapter.install_bulk(app, {"interactions": interactions})
    faust_adapter.install_bulk(app, {"rated-events": rated})
    consumer = app.transport.Consumer
    assert issubclass(consumer, faust_adapter.BulkConsumer)
    assert consumer.bulk_sinks == {"interactions": interactions, "rated-events": rated}


def test_tuned_fetches_reach_the_consumer_faust_creates_and_survive_the_bulk_sinks() -> None:
    """Faust passes aiokafka neither fetch_min_bytes (so 1 byte) nor a fetch wait of the app's choosing (1.5 s):
    tune_fetches sets both on the aiokafka consumer Faust's consumer thread creates, with or without bulk sinks
    installed before or after it."""
    app = faust.App(f"adapter-fetch-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", autodiscover=False)
    interactions, rated = faust_adapter.BulkSink(), faust_adapter.BulkSink()
    faust_adapter.install_bulk(app, {"interactions": interactions})
    faust_adapter.tune_fetches(app, min_bytes=4096, max_wait_ms=50)
    faust_adapter.install_bulk(app, {"rated-events": rated})
    assert app.transport.Consumer.bulk_sinks == {"interactions": interactions, "rated-events": rated}

    async def create() -> AIOKafkaConsumer:  # aiokafka creates its consumer inside a running loop only
        return app.consumer._thread._create_worker_consumer(app.transport)

    created = asyncio.run(create())
    assert (created._fetch_min_bytes, created._fetch_max_wait_ms) == (4096, 50)


def test_a_fetch_setting_set_on_an_unstarted_consumer_is_what_its_fetcher_uses(kafka_bootstrap: str) -> None:
    """What tune_fetches relies on: aiokafka's consumer builds its Fetcher at start() from these two attributes."""

    async def started_fetcher() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = 4096, 50
        await consumer.start()
        try:
            await consumer.topics()  # a started consumer that talked to the broker (and stops cleanly)
            return consumer._fetcher._fetch_min_bytes, consumer._fetcher._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(started_fetcher()) == (4096, 50)
