"""The bulk restore (``streams.faust_adapter.BulkRestore``) on the real broker: a table changelog with overwrites and
tombstones restored into a fresh worker's RocksDB equals the changelog's last value per key, with Faust's own
per-record recovery left nothing to read, for active and standby partitions; a worker killed in the middle of a
bulk restore restores correctly when it starts again.

The workers are small Faust apps with one raw table (a subprocess each: Faust's worker owns its event loop); each
writes what its table's RocksDB databases hold, per partition, to a JSON file once its recovery is complete."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rocksdict import AccessType, Rdict

REPO = Path(__file__).resolve().parents[1]
OFFSET_KEY = b"__faust\0offset__"  # Faust's RocksDB store keeps the persisted offset under this key

WORKER = r"""
import asyncio, json, logging, os, sys
import faust
from streams import faust_adapter

bootstrap, app_id, partitions, bulk, batch, out, datadir = sys.argv[1:8]
partitions = int(partitions)
# a line per write batch, in a file of its own (the worker's log handler takes its level from loglevel)
batches = logging.FileHandler(out + ".batches")
logging.getLogger("streams.faust_adapter").addHandler(batches)
logging.getLogger("streams.faust_adapter").setLevel(logging.DEBUG)
app = faust.App(
    app_id, broker="kafka://" + bootstrap, store="rocksdb://", datadir=datadir, web_enabled=False,
    consumer_auto_offset_reset="earliest", autodiscover=False, topic_partitions=partitions,
    table_standby_replicas=1,
    broker_session_timeout=10,  # a killed worker's partitions move on 10 s after (Faust: 60 s)
    TableManager=faust_adapter.table_manager(
        {"bootstrap_servers": os.environ.get("BULK_BOOTSTRAP", bootstrap)} if bulk == "1" else None, int(batch)
    ),
)
per_record = 0


async def counted(event):  # Faust calls it for each changelog record its own recovery applies
    global per_record
    per_record += 1


table = app.Table("t", key_type=bytes, value_type=bytes, partitions=partitions, on_changelog_event=counted)
source = app.topic(app_id + "-in", key_type=bytes, value_type=bytes, partitions=partitions)
changelog = app_id + "-t-changelog"


@app.agent(source)
async def agent(stream):
    async for _ in stream:
        pass


@app.task
async def dump():
    recovery = app.tables.recovery
    while True:
        await asyncio.sleep(0.3)
        if not recovery.completed.is_set() or recovery.in_recovery:
            continue
        store = table.data
        data = {
            str(p): {k.hex(): v.hex() for k, v in db.items() if k != store.offset_key}
            for p, db in list(store._dbs.items())
        }
        result = {
            "data": data,
            "per_record": per_record,
            "active": sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog),
            "standby": sorted(tp.partition for tp in app.assignor.assigned_standbys() if tp.topic == changelog),
        }
        with open(out + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(out + ".tmp", out)


faust.Worker(app, loglevel="INFO").execute_from_commandline()
"""


def changelog_records(partitions: int, keys: int, records: int) -> list[tuple[int, bytes, bytes | None]]:
    """(partition, key, value) in order: each key overwritten many times, every seventh write a tombstone."""
    out: list[tuple[int, bytes, bytes | None]] = []
    for n in range(records):
        k = (n * 7919) % keys
        value = None if n % 7 == 3 else f"v{n}-{'x' * (n % 50)}".encode()
        out.append((k % partitions, f"k{k}".encode(), value))
    return out


def last_values(records: list[tuple[int, bytes, bytes | None]]) -> dict[str, dict[str, str]]:
    """What a restored table holds: per partition, each key's last value; a tombstone deletes the key."""
    tables: dict[str, dict[str, str]] = {}
    for partition, key, value in records:
        table = tables.setdefault(str(partition), {})
        if value is None:
            table.pop(key.hex(), None)
        else:
            table[key.hex()] = value.hex()
    return tables


async def fill(bootstrap: str, app_id: str, partitions: int, records: list[tuple[int, bytes, bytes | None]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(f"{app_id}-t-changelog", partitions, 1, topic_configs={"cleanup.policy": "compact"}),
                NewTopic(f"{app_id}-in", partitions, 1),
            ]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        sent = [await producer.send(f"{app_id}-t-changelog", value, key, partition=p) for p, key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def delete_topics(bootstrap: str, app_id: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(app_id)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


class Worker:
    def __init__(
        self,
        tmp: Path,
        bootstrap: str,
        app_id: str,
        partitions: int,
        bulk: bool,
        name: str,
        batch: int = 10_000,
        bulk_bootstrap: str | None = None,  # the bulk restore's consumer's broker, if not the worker's
    ) -> None:
        script = tmp / "worker.py"
        script.write_text(WORKER)
        self.out = tmp / f"{name}.json"
        self.out.unlink(missing_ok=True)
        self.log_path = tmp / f"{name}.log"
        self.datadir = tmp / f"{name}-data"
        args = [bootstrap, app_id, str(partitions), "1" if bulk else "0", str(batch), str(self.out), str(self.datadir)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        if bulk_bootstrap is not None:
            env["BULK_BOOTSTRAP"] = bulk_bootstrap
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), *args, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def batches(self) -> str:
        """The bulk restore's lines, one per write batch among them."""
        try:
            return Path(f"{self.out}.batches").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def dump(self) -> dict | None:
        try:
            return json.loads(self.out.read_text())
        except FileNotFoundError:
            return None

    def wait(self, ready, timeout_s: float = 180) -> dict:
        """The worker's latest dump once ``ready(dump)`` holds (or the last one at the deadline)."""
        deadline = time.monotonic() + timeout_s
        dump = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            dump = self.dump()
            if dump is not None and ready(dump):
                return dump
            time.sleep(0.3)
        assert dump is not None, self.log()[-4000:]
        return dump

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def held(dump: dict, partitions: list[int]) -> dict[str, dict[str, str]]:
    return {str(p): dump["data"].get(str(p), {}) for p in partitions}


@pytest.fixture
def app_id(kafka_bootstrap: str):
    app_id = f"bulk-{uuid.uuid4().hex[:10]}"
    yield app_id
    asyncio.run(delete_topics(kafka_bootstrap, app_id))


@pytest.mark.parametrize("bulk", [True, False])
def test_a_fresh_worker_restores_each_keys_last_value(kafka_bootstrap: str, app_id: str, tmp_path: Path, bulk: bool):
    """With the bulk restore the table equals the changelog's last values and Faust's per-record recovery applies
    no record; without it (Faust's recovery alone) the same table, every record applied one at a time: the bulk
    path keeps Faust's semantics."""
    records = changelog_records(partitions=4, keys=3000, records=20_000)
    asyncio.run(fill(kafka_bootstrap, app_id, 4, records))
    expected = last_values(records)
    worker = Worker(tmp_path, kafka_bootstrap, app_id, 4, bulk, "w")
    try:
        dump = worker.wait(lambda d: d["active"] == [0, 1, 2, 3] and held(d, [0, 1, 2, 3]) == expected)
    finally:
        worker.kill()
    assert dump["active"] == [0, 1, 2, 3]
    assert held(dump, [0, 1, 2, 3]) == expected
    assert sum(map(len, expected.values())) > 2000  # overwritten and deleted keys, and many kept
    if bulk:
        assert dump["per_record"] == 0
        assert "Bulk restore read 20000 records of active changelog partitions" in worker.log()
    else:
        assert dump["per_record"] == len(records)
        assert "Bulk restore" not in worker.log()


def test_a_worker_killed_mid_bulk_restore_restores_correctly_when_started_again(
    kafka_bootstrap: str, app_id: str, tmp_path: Path
):
    records = changelog_records(partitions=4, keys=20_000, records=240_000)
    asyncio.run(fill(kafka_bootstrap, app_id, 4, records))
    expected = last_values(records)
    # small write batches: many of them, and time to stop the worker between two
    worker = Worker(tmp_path, kafka_bootstrap, app_id, 4, True, "w", batch=200)
    try:
        deadline = time.monotonic() + 180
        while "Bulk restore: " not in worker.batches() and worker.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        worker.proc.send_signal(signal.SIGSTOP)  # frozen at once: its lines say whether the restore had finished
        lines = worker.batches()
    finally:
        worker.kill()
    assert "Bulk restore: " in lines and "Bulk restore read" not in lines, worker.log()[-4000:]
    # Some partition's database holds part of its changelog: the kill came between two write batches.
    ends = {str(p): sum(1 for r in records if r[0] == p) - 1 for p in range(4)}  # each partition's last offset
    persisted = {}
    for path in worker.datadir.rglob("t-*.db"):
        partition = path.name.removesuffix(".db").rsplit("-", 1)[1]
        db = Rdict(str(path), access_type=AccessType.read_only())
        try:
            offset = db.get(OFFSET_KEY)
            persisted[partition] = int(offset) if offset is not None else None
            if persisted[partition] is not None:  # no record past the persisted offset was written
                applied = last_values([r for r in records if r[0] == int(partition)][: persisted[partition] + 1])
                stored = {k.hex(): v.hex() for k, v in db.items() if k != OFFSET_KEY}
                assert stored == applied.get(partition, {})
        finally:
            db.close()
    assert any(offset is not None for offset in persisted.values()), persisted
    assert any(persisted.get(p) is None or persisted[p] < end for p, end in ends.items()), (persisted, ends)

    again = Worker(tmp_path, kafka_bootstrap, app_id, 4, True, "w")
    try:
        dump = again.wait(lambda d: d["active"] == [0, 1, 2, 3] and held(d, [0, 1, 2, 3]) == expected)
    finally:
        again.kill()
    assert held(dump, [0, 1, 2, 3]) == expected
    assert dump["per_record"] == 0
    restored = len(records) - sum(offset + 1 for offset in persisted.values() if offset is not None)
    assert f"Bulk restore read {restored} records of active changelog partitions" in again.log()


def test_a_joining_worker_bulk_restores_its_active_and_standby_partitions(
    kafka_bootstrap: str, app_id: str, tmp_path: Path
):
    records = changelog_records(partitions=2, keys=3000, records=20_000)
    asyncio.run(fill(kafka_bootstrap, app_id, 2, records))
    expected = last_values(records)
    first = Worker(tmp_path, kafka_bootstrap, app_id, 2, True, "a")
    second = None
    try:
        first.wait(lambda d: d["active"] == [0, 1] and held(d, [0, 1]) == expected)
        second = Worker(tmp_path, kafka_bootstrap, app_id, 2, True, "b")

        def split(d: dict) -> bool:
            return len(d["active"]) == 1 and len(d["standby"]) == 1 and held(d, [0, 1]) == expected

        dump_b = second.wait(split)
        dump_a = first.wait(split)
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert {*dump_a["active"], *dump_b["active"]} == {0, 1}
    assert dump_b["standby"] == dump_a["active"]
    assert held(dump_b, [0, 1]) == expected == held(dump_a, [0, 1])
    # The joining worker's active and standby partitions came in write batches, none through Faust's recovery.
    assert dump_b["per_record"] == 0
    assert "of standby changelog partitions" in second.log()


def test_a_worker_whose_stores_are_up_to_date_starts_no_bulk_restore_consumer(
    kafka_bootstrap: str, app_id: str, tmp_path: Path
):
    """Restarted on its restored stores, a worker's bulk restore finds each persisted offset at the highwater Faust
    built a moment ago and reads nothing: it starts no consumer, so even a bulk restore whose broker cannot be
    reached does not fail (it would, and log that it stopped, if it asked the broker for end offsets)."""
    records = changelog_records(partitions=2, keys=500, records=2000)
    asyncio.run(fill(kafka_bootstrap, app_id, 2, records))
    expected = last_values(records)
    first = Worker(tmp_path, kafka_bootstrap, app_id, 2, True, "w")
    try:
        first.wait(lambda d: d["active"] == [0, 1] and held(d, [0, 1]) == expected)
    finally:
        first.kill()
    logged, batched = len(first.log()), len(first.batches())
    again = Worker(tmp_path, kafka_bootstrap, app_id, 2, True, "w", bulk_bootstrap="127.0.0.1:1")
    try:
        dump = again.wait(lambda d: d["active"] == [0, 1] and held(d, [0, 1]) == expected)
    finally:
        again.kill()
    log = again.log()[logged:]
    assert held(dump, [0, 1]) == expected and dump["per_record"] == 0
    assert "Bulk restore of active changelog partitions stopped" not in log, log[-3000:]
    assert "Bulk restore: the 2 active changelog partitions are up to date" in again.batches()[batched:]
