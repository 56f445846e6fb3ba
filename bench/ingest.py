"""Ingest: interactions/s through one worker process's ingest and drift path on the real broker, beside a raw
aiokafka consumer (getmany + JSON decode, nothing else) reading the same pre-filled topic in the same run.

The worker serves the cheap ``writer:combined`` policy with exploration off, so regeneration costs little and
the measured path is ingest (decode, validate, user state in RocksDB + changelog) and drift. Its progress is its
``lettingo_events_total{topic="interactions"}`` counter, polled every 0.2 s; the rate is taken between 10 % and
90 % of the events (start-up and the tail left out), and checked against the group's committed offsets.
"""

from __future__ import annotations

import asyncio
import time

from bench import kafka_util
from bench.common import DATASET, Options, median, print_table, write_result
from bench.profiling import profile_worker
from bench.worker import BenchWorker, remove_home

GOAL = 0.5
WORKER_SETTINGS = {"worker_policy": "writer:combined", "explore_rate": 0}


def fill(settings, n: int) -> int:
    """The catalogue to ``items`` and the dataset's first ``n`` ratings (time order) to ``interactions``."""
    from lettingo.data import load_dataset
    from streams.replay import to_interaction, to_item_record

    data = load_dataset(DATASET)
    ratings = data.all_ratings_in_time_order()[:n]
    items = ((i.item_id.encode(), to_item_record(i).to_bytes()) for i in data.items.values())
    events = ((r.user_id.encode(), to_interaction(data.name, r).to_bytes()) for r in ratings)

    async def go() -> int:
        await kafka_util.ensure_topics(settings)
        await kafka_util.produce_raw(settings, "items", items)
        return await kafka_util.produce_raw(settings, "interactions", events)

    return asyncio.run(go())


def window_rate(samples: list[tuple[float, float]], total: int, lo: float = 0.1, hi: float = 0.9) -> float:
    """Events/s between the first samples at or past ``lo`` and ``hi`` of ``total``."""
    a = next((s for s in samples if s[1] >= lo * total), None)
    b = next((s for s in samples if s[1] >= hi * total), None)
    if a is None or b is None or b[0] <= a[0]:
        return float("nan")
    return (b[1] - a[1]) / (b[0] - a[0])


def run_worker(settings, n: int, timeout_s: float) -> dict:
    worker = BenchWorker(settings, **WORKER_SETTINGS)
    try:
        worker.start()
        ready = time.perf_counter()
        samples: list[tuple[float, float]] = []
        deadline = ready + timeout_s
        while time.perf_counter() < deadline:
            done = worker.counter("lettingo_events_total", topic="interactions")
            samples.append((time.perf_counter(), done))
            if done >= n:
                break
            time.sleep(0.2)
        finished = samples[-1]
        time.sleep(1.5)  # one commit interval, so the committed offsets include the last events
        committed = asyncio.run(kafka_util.committed_total(settings, settings.app_id, "interactions"))
        return {
            "events": int(finished[1]),
            "window_per_second": window_rate(samples, n),
            "overall_per_second": finished[1] / (finished[0] - ready),
            "committed_offsets": committed,
            "profile_requests": worker.counter("lettingo_profile_requests_total"),
            "peak_rss_mib": worker.peak_rss / 2**20,
        }
    finally:
        worker.stop()


def run(opts: Options) -> dict:
    started = time.perf_counter()
    n = 10_000 if opts.quick else 100_000
    base = kafka_util.run_settings("ingest")
    try:
        sent = fill(base, n)
        raw_runs = [asyncio.run(kafka_util.raw_consume(base, "interactions", sent)) for _ in range(opts.repeats)]
        worker_runs = []
        for i in range(opts.repeats):
            # a fresh consumer group (app id) per repeat reads the same pre-filled topic from the start
            settings = base.model_copy(update={"app_id": f"{base.app_id}-w{i}"})
            worker_runs.append(run_worker(settings, sent, timeout_s=600))
        raw = median([r["per_second"] for r in raw_runs])
        worker = median([r["window_per_second"] for r in worker_runs])
        ratio = worker / raw
        profile = None
        if ratio < GOAL:
            settings = base.model_copy(update={"app_id": f"{base.app_id}-prof"})
            profile = profile_worker(settings, sent, WORKER_SETTINGS, base.home / "ingest-profile.txt")
    finally:
        asyncio.run(kafka_util.delete_run_topics(base))
        remove_home(base)
    rows = [
        ["raw aiokafka (getmany + json)", raw, "", len(raw_runs)],
        ["worker ingest + drift", worker, f"{ratio:.3f}", len(worker_runs)],
    ]
    print_table(
        f"ingest: {sent:,} MovieLens interactions, {base.topic_partitions} partitions (medians)",
        ["reader", "events/s", "ratio", "runs"], rows,
        note=f"goal: worker >= {GOAL} x raw consumer; {'met' if ratio >= GOAL else 'NOT met'}",
    )  # fmt: skip
    figures = {
        "events": sent,
        "partitions": base.topic_partitions,
        "worker_settings": WORKER_SETTINGS,
        "raw_consumer_per_second_median": raw,
        "worker_per_second_median": worker,
        "ratio_worker_to_raw": ratio,
        "goal_ratio": GOAL,
        "goal_met": ratio >= GOAL,
        "raw_runs": raw_runs,
        "worker_runs": worker_runs,
        "profile": profile,
    }
    write_result("ingest", opts, figures, started)
    return figures
