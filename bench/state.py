"""State at scale: synthetic users through ingest; RocksDB bytes per user (du of the worker's data folder),
worker peak RSS (psutil, the process and its children), and the changelog restore rate after the worker's data
folder is wiped and it restarts (records/s, from Faust's own recovery log lines).

:func:`restore_comparison` measures the restore alone, without the long ingest: it writes user states straight
into the ``user_state`` changelog and times fresh workers (each with an empty data folder) restoring it, one per
set of worker settings, taking turns, optionally under py-spy.

Each synthetic user sends one rating of a random catalogue item (below the cold-start threshold, so no profile is
generated): the state per user is the smallest a real user has, and the figure scales with the user count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

from bench import kafka_util
from bench.common import DATASET, REPO, Options, print_table, write_result
from bench.worker import BenchWorker, du, remove_home
from streams.kafka.topics import create_topics, delete_run_topics

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


def synthetic_states(users: int, item_ids: list[str]):
    """(key, value) of ``users`` user states as ingest writes them for one rating each: a changelog to restore."""
    from lettingo.user_state import HistoryEvent, UserState

    rng = random.Random(7)
    for u in range(users):
        item = rng.choice(item_ids)
        ts = 1_600_000_000.0 + u
        state = UserState(
            user_id=f"s{u}",
            count=1,
            counts_by_kind={"rating": 1},
            events=[HistoryEvent(seq=1, event_id=f"synthetic:{u}", item_id=item, kind="rating", rating=4.0, ts=ts)],
            attribute_counts={"Drama": 1.0, "Comedy": 1.0},
            sentiment_counts={"positive": 1.0},
            last_event_id=f"synthetic:{u}",
            last_ts=ts,
            positions={"interactions:0": u},
        )
        yield state.user_id.encode(), state.to_bytes()


async def fill_changelog(settings, users: int, item_ids: list[str]) -> int:
    """Create the ``user_state`` changelog as Faust declares it (compacted, the table's partitions) and fill it."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"{settings.app.id}-user_state-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, settings.topics.partitions, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    # produce_raw prefixes topic names with the run's topic prefix; the changelog is named after the app id
    unprefixed = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": ""})})
    return await kafka_util.produce_raw(unprefixed, topic, synthetic_states(users, item_ids))


# The restore's start and end in a worker's log, whichever path restores: Faust logs the active highwaters before
# the bulk restore (streams.faust_adapter.BulkRestore) runs and before its own per-record recovery starts, and
# "Recovery complete" after either.
RESTORE_START = "Highwater for active changelog partitions"
RESTORE_END = "Recovery complete"


def restore_once(settings, overrides: dict, records: int, profile: Path | None = None) -> dict:
    """Start a worker with an empty data folder and ``overrides``; the seconds its changelog restore took, and the
    CPU seconds the worker used meanwhile (on a busy machine the steadier figure: waits for a core do not count)."""
    worker = BenchWorker(settings, **overrides)
    spies: list[subprocess.Popen] = []
    cpu: dict[str, float] = {}

    def cpu_seconds() -> float:
        times = psutil.Process(worker.proc.pid).cpu_times()
        return times.user + times.system

    def watch_restore() -> None:
        # the worker answers /health only once it is restored: the log says when the restore starts and ends
        for marker in (RESTORE_START, RESTORE_END):
            while worker.proc is None or marker not in worker.log_path.read_text(errors="replace"):
                if worker.proc is not None and worker.proc.poll() is not None:
                    return
                time.sleep(0.05)
            cpu[marker] = cpu_seconds()
            if profile is not None and not spies:
                # --gil: only the thread holding the GIL is sampled: the shares are of Python work, not of waits
                command = [str(REPO / ".venv/bin/py-spy"), "record", "--pid", str(worker.proc.pid), "--gil"]
                spies.append(
                    subprocess.Popen(
                        [*command, "--format", "raw", "--rate", "50", "-o", str(profile)], stdout=subprocess.DEVNULL
                    )
                )

    watcher = threading.Thread(target=watch_restore, daemon=True)
    watcher.start()
    try:
        figures = timed_restore(worker, records)
        watcher.join(5)
        cpu_s = cpu.get(RESTORE_END, float("nan")) - cpu.get(RESTORE_START, float("nan"))
        return {
            **figures,
            "restore_cpu_seconds": cpu_s,
            "restore_records_per_cpu_second": records / cpu_s if cpu_s == cpu_s and cpu_s else None,
            "load_average": os.getloadavg()[0],
        }
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            spy.wait(60)
        worker.stop()
        shutil.rmtree(worker.data_dir, ignore_errors=True)


def timed_restore(worker: BenchWorker, records: int) -> dict:
    """Start ``worker`` (its data folder empty) and wait, at most 30 minutes, for its changelog restore of
    ``records`` to end: the restore's seconds and rate (from the log's times), the seconds from the launch to the
    end, and what the restored worker holds."""
    launched = time.time()
    # the worker answers only once every table is restored: at 1M users that is minutes, not the default 240 s
    worker.start(loglevel="info", timeout_s=240 + records / 500)
    deadline = time.time() + 1800
    while time.time() < deadline and log_time(worker, RESTORE_END) is None:
        time.sleep(0.5)
    t_start, t_done = log_time(worker, RESTORE_START), log_time(worker, RESTORE_END)
    seconds = (t_done - t_start) if t_start and t_done else float("nan")
    return {
        "restore_seconds": seconds,
        "restore_records_per_second": records / seconds if seconds == seconds and seconds else None,
        "restart_to_recovered_seconds": (t_done - launched) if t_done else None,
        "restart_peak_rss_mib": worker.peak_rss / 2**20,
        "restored_rocksdb_bytes": du(worker.data_dir),
    }


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
            await create_topics(settings)
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
            figures.update({"changelog_records": changelog, **timed_restore(second, changelog)})
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


def profile_summary(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Shares of py-spy's raw (collapsed) samples: by the innermost frame (self) and by any frame (inclusive)."""
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        # "function (path/file.py:line)" -> "function (file.py)"
        frames = [re.sub(r"\(.*/([^/]+?)(:\d+)?\)$", r"(\1)", f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            anywhere[f] = anywhere.get(f, 0) + n

    def share(counts: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(n / max(total, 1), 3)) for f, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": [("total", total)], "self": share(own), "inclusive": share(anywhere)}


async def raw_restore(settings, expected: int, path: Path) -> dict[str, float]:
    """The ``user_state`` changelog read with aiokafka's getmany and written to one RocksDB database in batches:
    what one Python process does at least for a restore, without Faust's per-record work."""
    from aiokafka import TopicPartition
    from rocksdict import Options as RocksOptions
    from rocksdict import Rdict, WriteBatch

    topic = f"{settings.app.id}-user_state-changelog"
    consumer = kafka_util.bulk_consumer(settings)
    await consumer.start()
    db = Rdict(str(path), RocksOptions(raw_mode=True))
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = 0
        started = time.perf_counter()
        while n < expected:
            batch = WriteBatch(raw_mode=True)
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for r in records:
                    batch.put(r.key, r.value)
                n += len(records)
            db.write(batch)
        seconds = time.perf_counter() - started
        return {"records": n, "seconds": seconds, "per_second": n / seconds}
    finally:
        db.close()
        await consumer.stop()
        shutil.rmtree(path, ignore_errors=True)


def restore_comparison(users: int, variants: dict[str, dict], rounds: int = 1, profile_dir: Path | None = None) -> dict:
    """The restore rate of ``users`` user states, per named set of worker setting overrides, taking turns."""
    from lettingo.data import load_dataset

    settings = kafka_util.run_settings("restore")
    figures: dict = {"users": users, "rounds": rounds, "variants": variants, "runs": {}}
    try:
        item_ids = sorted(load_dataset(DATASET).items)

        async def fill() -> int:
            await create_topics(settings)
            return await fill_changelog(settings, users, item_ids)

        records = asyncio.run(fill())
        figures["changelog_records"] = records
        figures["raw_restore"] = asyncio.run(raw_restore(settings, records, settings.home / "raw-restore"))
        print("raw restore (aiokafka getmany + RocksDB write batches):", figures["raw_restore"], flush=True)
        for r in range(rounds):
            for name, overrides in variants.items():
                profile = profile_dir / f"{name}-{r}.txt" if profile_dir else None
                run = restore_once(settings, {**OVERRIDES, **overrides}, records, profile)
                figures["runs"].setdefault(name, []).append(run)
                print(name, r, run, flush=True)
                if profile is not None and profile.exists():
                    figures["runs"][name][-1]["profile"] = profile_summary(profile)
    finally:
        asyncio.run(delete_run_topics(settings))
        remove_home(settings)
    return figures


# Faust's own defaults for what streams.app sets from the settings: the restore as it ran before they were tuned
# (but for the block cache, which Faust gives each database and this project the worker: 2 GiB either way here).
FAUST_DEFAULTS = {
    "app_bulk_restore": False,
    "app_recovery_buffer": 1000,
    "app_stream_buffer": 4096,
    "app_fetch_max_mib": 1,
    "app_rocksdb_write_buffer_mib": 64,
    "app_rocksdb_write_buffers": 3,
    "app_rocksdb_block_cache_mib": 2048,
    "app_rocksdb_memtables_mib": 2**20,  # no budget over the memtables of all databases: Faust sets none
}


# Restore batches, read-ahead and fetches larger than Faust's (and this project's) defaults.
LARGER_BATCHES = {
    "app_bulk_restore": False,
    "app_recovery_buffer": 10_000,
    "app_stream_buffer": 16_384,
    "app_fetch_max_mib": 4,
}
# This project's settings with Faust's recovery alone, and with the bulk restore (the default) before it.
VARIANTS = {
    "faust_defaults": FAUST_DEFAULTS,
    "settings": {"app_bulk_restore": False},
    "larger_batches": LARGER_BATCHES,
    "bulk_restore": {"app_bulk_restore": True},
}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.state [--users N] [--rounds N] [--profile] [--variants A,B]``: the restore alone, with
    Faust's defaults, this project's settings and larger batches (each with Faust's recovery alone) and with the bulk
    restore taking turns, into bench/results/restore.json (py-spy summaries with --profile)."""
    import argparse
    import sys

    from streams.kafka import broker
    from streams.settings import StreamSettings

    parser = argparse.ArgumentParser(prog="python -m bench.state", description=main.__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="py-spy (--gil) on each restore")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, of {', '.join(VARIANTS)}; fewer than all write restore-<users>.json instead",
    )
    args = parser.parse_args(argv)
    print(broker.start(StreamSettings.load()), flush=True)
    started = time.perf_counter()
    profiles = REPO / ".lettingo" / "restore-profiles" if args.profile else None
    if profiles is not None:
        profiles.mkdir(parents=True, exist_ok=True)
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    figures = restore_comparison(args.users, variants, rounds=args.rounds, profile_dir=profiles)
    for name, runs in figures["runs"].items():
        rates = [r["restore_records_per_second"] or float("nan") for r in runs]
        figures[f"{name}_records_per_second"] = sorted(rates)[len(rates) // 2]
    rows = [[name, figures[f"{name}_records_per_second"]] for name in variants]
    print_table(f"changelog restore of {args.users:,} user states", ["worker settings", "records/s"], rows)
    argv_shown = ["python -m bench.state", *(sys.argv[1:] if argv is None else argv)]
    name = "restore" if variants == VARIANTS else f"restore-{args.users}"
    write_result(name, Options(quick=False, repeats=args.rounds, argv=argv_shown), figures, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
