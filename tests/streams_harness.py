"""Helpers for worker tests: run ``python -m streams.cli.worker`` as a subprocess, produce raw messages, read
topics and table changelogs with plain aiokafka clients. No mocks: everything goes through the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.settings import StreamSettings

REPO = Path(__file__).resolve().parents[1]
DATASET = (REPO.parent / "shared" / "data" / "ml-latest-small").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    def __init__(self, settings: StreamSettings, log_path: Path, **overrides: object) -> None:
        self.settings = settings
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "LETTINGO_KAFKA_BOOTSTRAP": settings.bootstrap,
            "LETTINGO_TOPIC_PREFIX": settings.topics.prefix,
            "LETTINGO_APP_ID": settings.app.id,
            "LETTINGO_HOME": str(settings.home),
            "LETTINGO_WEB_PORT": str(self.port),
            "LETTINGO_TOPIC_PARTITIONS": str(settings.topics.partitions),
            "LETTINGO_DATASET": str(DATASET),
            # The persistent embedding cache, not one under each test's home: no worker re-embeds the catalogue.
            "LETTINGO_CACHE_DIR": str(REPO / ".lettingo" / "cache"),
            # The worker shares 2 cores with the broker and the test process: torch's spinning OpenMP threads
            # would make each of them several times slower.
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            **{f"LETTINGO_{k.upper()}": str(v) for k, v in overrides.items()},
        }
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 150, evaluator: bool = True) -> WorkerProcess:
        """Start the worker; return once its catalogue is read, partitions assigned and generators loaded (and,
        with ``evaluator``, the task evaluator's reader: a worker stopped before that waits for it to drain)."""
        return self.launch().ready(timeout_s, evaluator)

    def launch(self) -> WorkerProcess:
        """Start the worker's process and return at once: processes launched side by side load their models at
        the same time, then :meth:`ready` waits for each."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["nice", sys.executable, "-m", "streams.cli.worker", "-l", "warning"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def ready(self, timeout_s: float = 150, evaluator: bool = True) -> WorkerProcess:
        """Wait until the launched worker is ready as :meth:`start` says."""
        assert self.proc is not None, "launch() the worker first"
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            health = self.health()
            ready = ("catalog_ready", "generators_ready", "evaluator_ready" if evaluator else "catalog_ready")
            if health and all(health.get(k) for k in ready) and health.get("assigned_partitions"):
                return self
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready in {timeout_s}s:\n{self.log_tail()}")

    def get(self, path: str) -> dict | None:
        """The JSON body (also of an error status, such as /ready's 503), or None when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
        except Exception:
            return None
        return json.loads(body) if body.startswith((b"{", b"[")) else {"text": body.decode()}

    def health(self) -> dict | None:
        return self.get("/health")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


async def produce(settings: StreamSettings, messages: list[tuple[str, str | None, bytes | None]]) -> None:
    """Send (topic, key, value) messages in order; topic names without the prefix."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", max_request_size=2_000_000)
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(settings.topic(topic), value=value, key=None if key is None else key.encode())
    finally:
        await producer.stop()


async def read_all(full_topic: str, settings: StreamSettings, partitions: int) -> list:
    """Every message now in ``full_topic`` (all partitions), in partition then offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(full_topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def topic_records(settings: StreamSettings, topic: str, partitions: int | None = None) -> list:
    return asyncio.run(read_all(settings.topic(topic), settings, partitions or settings.topics.partitions))


def table_contents(settings: StreamSettings, table: str) -> dict[str, bytes]:
    """The table as its changelog says: the last value per key, deletions applied."""
    out: dict[str, bytes] = {}
    for r in asyncio.run(read_all(f"{settings.app.id}-{table}-changelog", settings, settings.topics.partitions)):
        if r.value is None:
            out.pop(r.key.decode(), None)
        else:
            out[r.key.decode()] = r.value
    return out


def wait_for(what: str, check: Callable[[], object], timeout_s: float = 60, every_s: float = 0.5):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@contextlib.contextmanager
def private_broker(home: Path) -> Iterator[StreamSettings]:
    """A broker of the test's own on free ports, with the shared jars: one a test may stop and start (the shared
    broker is never stopped)."""
    from streams.kafka import broker

    settings = StreamSettings(
        home=home,
        broker={"port": free_port(), "controller_port": free_port(), "heap": "256m"},
        kafka={"libs": (REPO / ".lettingo" / "kafka" / "libs").resolve()},
    )
    broker.start(settings)
    try:
        yield settings
    finally:
        broker.stop(settings, timeout_s=10)


def catalogue_settings(bootstrap: str, home: Path, items: list) -> StreamSettings:
    """StreamSettings of the test's own (topic prefix, app id), its topics created and ``items`` in the catalogue."""
    from streams.kafka.topics import create_topics
    from tests.conftest import unique_settings

    settings = unique_settings(bootstrap, home)
    asyncio.run(create_topics(settings))
    asyncio.run(produce(settings, [("items", i.item_id, i.to_bytes()) for i in items]))
    return settings


@contextlib.contextmanager
def running_worker(settings: StreamSettings, reader: Path, **overrides: object) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(settings, settings.home / "worker.log", reader_path=reader, **overrides)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
