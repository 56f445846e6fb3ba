"""Workers as a fleet on the real broker: two workers share one consumer group, standby replicas keep the other's
tables warm, a SIGKILLed worker's partitions move to the survivor within the session timeout, and nothing is lost
or applied twice; a 30-second broker outage mid-stream is ridden out by the worker and `lettingo replay`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lettingo import records
from lettingo.user_state import UserState
from streams.kafka import broker
from streams.kafka.topics import create_topics
from streams.settings import StreamSettings
from tests.conftest import DATASET, REPO, delete_test_topics, unique_settings
from tests.streams_harness import WorkerProcess, private_broker, produce, table_contents, wait_for

pytestmark = pytest.mark.kafka

ITEMS = [records.Item(item_id=f"i{n}", title=f"Film {n} (2001)", attributes=["Drama"]) for n in range(10)]
FLEET = dict(
    worker_cold_start_after=1000,
    explore_rate=0.0,
    kafka_session_timeout_seconds=6,
    kafka_heartbeat_seconds=1,
    table_standby_replicas=1,
)


def ratings(users: range, events: range) -> list[tuple[str, str, bytes]]:
    out = []
    for n in events:
        for u in users:
            event = records.Interaction(
                event_id=f"u{u}-{n}", user_id=f"u{u}", item_id=f"i{n % 10}", kind="rating", rating=4.0, ts=1.5e9 + n
            )
            out.append(("interactions", f"u{u}", event.to_bytes()))
    return out


def counts(settings: StreamSettings) -> dict[str, int]:
    return {k: UserState.from_bytes(v).count for k, v in table_contents(settings, "user_state").items()}


def interactions_of(worker: WorkerProcess, settings: StreamSettings) -> set[str]:
    health = worker.health() or {}
    return {p for p in health.get("active_partitions", []) if p.startswith(settings.topic("interactions") + ":")}


def test_two_workers_share_the_partitions_and_the_survivor_takes_over_a_killed_one(
    kafka_bootstrap: str, tmp_path: Path, frozen_reader: Path
) -> None:
    s = unique_settings(kafka_bootstrap, tmp_path / "home")
    try:
        asyncio.run(create_topics(s))
        asyncio.run(produce(s, [("items", i.item_id, i.to_bytes()) for i in ITEMS]))
        a = WorkerProcess(s, tmp_path / "a.log", reader_path=frozen_reader, **FLEET)
        b = WorkerProcess(s, tmp_path / "b.log", reader_path=frozen_reader, **FLEET)
        try:
            # Launched side by side: their start-ups (model loading) overlap, and the group's rebalances settle once.
            for worker in (a, b):
                worker.launch()
            for worker in (a, b):
                worker.ready()
            all_partitions = {f"{s.topic('interactions')}:{p}" for p in range(s.topics.partitions)}
            wait_for(
                "the partitions split between the two",
                lambda: (
                    interactions_of(a, s)
                    and interactions_of(b, s)
                    and interactions_of(a, s) | interactions_of(b, s) == all_partitions
                ),
                60,
            )
            # Standby replicas: each worker keeps warm copies of table partitions the other serves.
            wait_for(
                "standby partitions on both",
                lambda: all((w.health() or {}).get("standby_partitions") for w in (a, b)),
                60,
            )
            users = range(40)
            asyncio.run(produce(s, ratings(users, range(5))))
            wait_for("the first half applied", lambda: Counter(counts(s).values()) == {5: 40}, 60)

            b.kill()
            killed = time.monotonic()
            asyncio.run(produce(s, ratings(users, range(5, 10))))
            wait_for("the survivor serving every partition", lambda: interactions_of(a, s) == all_partitions, 60)
            failover_s = time.monotonic() - killed
            final = wait_for(
                "every event applied once", lambda: (c := counts(s)) and Counter(c.values()) == {10: 40} and c, 90
            )
            assert len(final) == 40 and set(final.values()) == {10}  # none lost, none applied twice
            assert failover_s < 30, f"failover took {failover_s:.1f} s"
        finally:
            # Nothing is checked after this: SIGKILL ends them at once, where Faust's graceful stop spends seconds
            # (a full gc.collect() per table store).
            a.kill()
            b.kill()
    finally:
        delete_test_topics(s)


def test_a_30_second_broker_outage_mid_stream_loses_nothing(tmp_path: Path, frozen_reader: Path) -> None:
    """`lettingo replay` sends 600 interactions at 20/s; the broker is stopped for 30 s in the middle and started
    again: replay finishes, and the worker ends with every interaction applied exactly once."""
    with private_broker(tmp_path / "broker") as base:
        s = unique_settings(base.bootstrap, tmp_path / "home").replace(
            broker={"port": base.broker.port, "controller_port": base.broker.controller_port, "heap": base.broker.heap},
            kafka={"libs": base.kafka.libs},
        )
        asyncio.run(create_topics(s))
        worker = WorkerProcess(
            s, tmp_path / "worker.log", reader_path=frozen_reader, worker_cold_start_after=1000, explore_rate=0.0
        )
        worker.start()
        env = {**worker.env}
        replay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lettingo.cli.main",
                "replay",
                str(DATASET),
                "--limit",
                "600",
                "--rate",
                "20",
                "--no-items",
            ],
            cwd=REPO,
            env=env,
            stdout=(tmp_path / "replay.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for("the stream under way", lambda: sum(counts(s).values()) >= 100, 240)
            broker.stop(base, timeout_s=20)  # the same data folder and ports as `base`
            time.sleep(30)
            broker.start(base)
            assert replay.wait(240) == 0, (tmp_path / "replay.log").read_text()[-3000:]
            final = wait_for("all 600 applied", lambda: sum((c := counts(s)).values()) >= 600 and c, 120)
            assert sum(final.values()) == 600
            assert worker.proc.poll() is None
        finally:
            if replay.poll() is None:
                os.kill(replay.pid, signal.SIGKILL)
            worker.kill()  # nothing is checked after this (see the fleet test)
