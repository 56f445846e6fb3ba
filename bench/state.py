"""State at scale: synthetic users through ingest; RocksDB bytes per user (du of the worker's data folder),
worker peak RSS (psutil, the process and its children), and the changelog restore rate after the worker's data
folder is wiped and it restarts (records/s, from Faust's own recovery log lines).

Each synthetic user sends one rating of a random catalogue item (below the cold-start threshold, so no profile is
generated): the state per user is the smallest a real user has, and the figure scales with the user count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import shutil
import time

from bench import kafka_util
from bench.common import DATASET, Options, print_table, write_result
from bench.worker import BenchWorker, du, remove_home
from streams.kafka.topics import delete_run_topics

OVERRIDES = {"worker_policy": "writer:combined", "explore_rate": 0}
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def synthetic(users: int, item_ids: list[str]):
    from lettingo.records import Interaction, InteractionKind

    rng = random.Random(7)
    for u in range(users):
        event = Interaction(
            event_id=f"synthetic:{u}",
            user_id=f"s{u}",
            item_id=rng.choice(item_ids),
            kind=InteractionKind.RATING,
            rating=rng.choice((1.0, 2.5, 3.0, 4.0, 5.0)),
            ts=1_600_000_000.0 + u,
        )
        yield event.user_id.encode(), event.to_bytes()


def log_time(worker: BenchWorker, marker: str) -> float | None:
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if marker in line:
            m = LOG_TIME.match(line)
            if m:
                return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def wait_count(worker: BenchWorker, n: int, timeout_s: float, t0: float | None = None) -> tuple[float, float]:
    """Events done and the seconds since ``t0`` (default: now)."""
    t0 = time.perf_counter() if t0 is None else t0
    done = 0.0
    while time.perf_counter() - t0 < timeout_s:
        done = worker.counter("lettingo_events_total", topic="interactions")
        if done >= n:
            break
        time.sleep(0.5)
    return done, time.perf_counter() - t0


def run(opts: Options) -> dict:
    started = time.perf_counter()
    users = 10_000 if opts.quick else 1_000_000
    settings = kafka_util.run_settings("state")
    figures: dict = {"users": users, "events_per_user": 1, "worker_settings": OVERRIDES}
    try:
        from lettingo.data import load_dataset
        from streams.replay import to_item_record

        data = load_dataset(DATASET)
        items = ((i.item_id.encode(), to_item_record(i).to_bytes()) for i in data.items.values())

        async def fill() -> int:
            await kafka_util.ensure_topics(settings)
            await kafka_util.produce_raw(settings, "items", items)
            return await kafka_util.produce_raw(settings, "interactions", synthetic(users, sorted(data.items)))

        sent = asyncio.run(fill())
        first = BenchWorker(settings, **OVERRIDES)
        try:
            first_launch = time.perf_counter()
            first.start()
            # from the launch: a fast worker ingests 10,000 events before it answers its first health check
            done, seconds = wait_count(first, sent, timeout_s=3600, t0=first_launch)
            time.sleep(3)  # a commit and a RocksDB write-out after the last event
            data_dir = first.data_dir
            rocks = du(data_dir)
            figures.update(
                {
                    "ingested": int(done),
                    "ingest_seconds": seconds,
                    "ingest_per_second": done / seconds,
                    "rocksdb_bytes": rocks,
                    "rocksdb_bytes_per_user": rocks / max(done, 1),
                    "peak_rss_mib": first.peak_rss / 2**20,
                }
            )
        finally:
            first.stop()
        changelog = asyncio.run(kafka_util.end_offsets(settings, f"{settings.app.id}-user_state-changelog"))
        shutil.rmtree(data_dir, ignore_errors=True)  # wipe the data folder: the restart must restore it all
        second = BenchWorker(settings, **OVERRIDES)
        try:
            launched = time.time()
            # the worker answers only once every table is restored: at 1M users that is minutes, not the default 240 s
            second.start(loglevel="info", timeout_s=240 + users / 500)
            deadline = time.time() + 1800
            while time.time() < deadline and log_time(second, "Recovery complete") is None:
                time.sleep(0.5)
            t_start = log_time(second, "Restoring state from changelog topics")
            t_done = log_time(second, "Done reading from changelog topics") or log_time(second, "Recovery complete")
            restore_s = (t_done - t_start) if t_start and t_done else float("nan")
            figures.update(
                {
                    "changelog_records": changelog,
                    "restore_seconds": restore_s,
                    "restore_records_per_second": changelog / restore_s
                    if restore_s == restore_s and restore_s
                    else None,
                    "restart_to_recovered_seconds": (t_done - launched) if t_done else None,
                    "restored_rocksdb_bytes": du(second.data_dir),
                    "restart_peak_rss_mib": second.peak_rss / 2**20,
                }
            )
        finally:
            second.stop()
    finally:
        asyncio.run(delete_run_topics(settings))
        remove_home(settings)
    f = figures
    rows = [
        ["users ingested", f"{f.get('ingested', 0):,}"],
        ["ingest rate from launch (events/s)", f.get("ingest_per_second", float("nan"))],
        ["RocksDB bytes per user", f.get("rocksdb_bytes_per_user", float("nan"))],
        ["worker peak RSS (MiB)", f.get("peak_rss_mib", float("nan"))],
        ["changelog records", f"{f.get('changelog_records', 0):,}"],
        ["restore rate (records/s)", f.get("restore_records_per_second") or float("nan")],
        ["restore seconds", f.get("restore_seconds", float("nan"))],
    ]
    print_table(f"state at scale: {users:,} synthetic users, 1 event each", ["figure", "value"], rows)
    write_result("state", opts, figures, started)
    return figures
