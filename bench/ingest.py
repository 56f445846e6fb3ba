"""Ingest: interactions/s through one worker process's ingest and drift path on the real broker, beside a raw
aiokafka consumer (getmany + JSON decode, nothing else) reading the same topic.

The worker serves the cheap ``writer:combined`` policy with exploration off, so regeneration costs little and
the measured path is ingest (decode, validate, user state in RocksDB + changelog, rated events and requests sent)
and drift. Each repeat has topics of its own: the catalogue is written first and the worker started; once it is
ready (models loaded, partitions assigned) and has validated the whole catalogue, the interactions are written
as fast as the broker takes them, so start-up work is not counted as ingest. Progress is the worker's
``lettingo_events_total{topic="interactions"}`` counter (counted once a batch is stored and sent), polled every
0.2 s; the rate is taken between 10 % and 90 % of the events, and checked against the group's committed offsets.
The worker's CPU seconds per event over the same window are reported too: on a shared machine they move less
than the rate. The raw consumer then reads the same, now complete, topic from the start.

Both ingest paths run in every repeat, on topics of their own and beside the same raw consumer: ``take_events``
(Faust's per-event stream, ``LETTINGO_APP_BULK_INGEST=false``: the before) and the bulk path (whole fetched
chunks, the default: the after). The top-level ``ratio_worker_to_raw`` is the default path's.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil

from bench import kafka_util
from bench.common import DATASET, Options, median, print_table, write_result
from bench.profiling import profile_worker
from bench.worker import BenchWorker, remove_home
from streams.kafka.topics import create_topics, delete_run_topics

GOAL = 0.1  # issue 20: a worker applies at least a tenth of what a raw consumer reads
WORKER_SETTINGS = {"worker_policy": "writer:combined", "explore_rate": 0}
POLL_S = 0.2


@dataclass
class Messages:
    items: list[tuple[bytes, bytes]]
    interactions: list[tuple[bytes, bytes]]


def load_messages(n: int) -> Messages:
    """The catalogue and the dataset's first ``n`` ratings (time order) as (key, value) messages."""
    from lettingo.data import load_dataset
    from streams.replay import to_interaction, to_item_record

    data = load_dataset(DATASET)
    ratings = data.all_ratings_in_time_order()[:n]
    return Messages(
        items=[(i.item_id.encode(), to_item_record(i).to_bytes()) for i in data.items.values()],
        interactions=[(r.user_id.encode(), to_interaction(data.name, r).to_bytes()) for r in ratings],
    )


def produce(settings, topic: str, messages: list[tuple[bytes, bytes]]) -> int:
    async def go() -> int:
        await create_topics(settings)
        return await kafka_util.produce_raw(settings, topic, messages)

    return asyncio.run(go())


def window_rate(samples: list[tuple[float, float]], total: int, lo: float = 0.1, hi: float = 0.9) -> float:
    """Events/s between the first samples at or past ``lo`` and ``hi`` of ``total``."""
    a = next((s for s in samples if s[1] >= lo * total), None)
    b = next((s for s in samples if s[1] >= hi * total), None)
    if a is None or b is None or b[0] <= a[0]:
        return float("nan")
    return (b[1] - a[1]) / (b[0] - a[0])


def window_cpu_per_event(samples: list[tuple[float, float, float]], total: int, lo=0.1, hi=0.9) -> float:
    """Worker CPU seconds per event between the first samples at or past ``lo`` and ``hi`` of ``total``."""
    a = next((s for s in samples if s[1] >= lo * total), None)
    b = next((s for s in samples if s[1] >= hi * total), None)
    if a is None or b is None or b[1] <= a[1]:
        return float("nan")
    return (b[2] - a[2]) / (b[1] - a[1])


def start_ready(settings, messages: Messages, bulk: bool = True) -> BenchWorker:
    """Write the catalogue, start a worker and wait until it has validated all of it."""
    produce(settings, "items", messages.items)
    worker = BenchWorker(settings, **WORKER_SETTINGS, app_bulk_ingest=str(bulk).lower()).start()
    deadline = time.perf_counter() + 300

    def validated() -> float:  # valid items count as events, invalid ones as dead letters
        items = settings.topic("items")
        return worker.counter("lettingo_events_total", topic="items") + worker.counter(
            "lettingo_dead_letters_total", topic=items
        )

    while validated() < len(messages.items):
        if time.perf_counter() > deadline:
            worker.stop()
            raise TimeoutError(f"the worker did not validate the catalogue:\n{worker.log_tail()}")
        time.sleep(POLL_S)
    return worker


class Feeder:
    """Writes the interactions from a thread, so the worker is timed while they arrive."""

    def __init__(self, settings, messages: Messages) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._written = self._pool.submit(produce, settings, "interactions", messages.interactions)
        self._pool.shutdown(wait=False)

    def check(self) -> None:
        """Raise at once if writing failed (the broker went away): nothing more will arrive."""
        if self._written.done() and self._written.exception() is not None:
            raise RuntimeError("writing the interactions failed") from self._written.exception()

    def join(self) -> int:
        """Wait for the writer; the count written."""
        try:
            return self._written.result()
        except Exception as e:
            raise RuntimeError("writing the interactions failed") from e


PATHS = {"take_events": False, "bulk": True}  # path name -> LETTINGO_APP_BULK_INGEST; the last one is the default


def run_worker(settings, messages: Messages, timeout_s: float, bulk: bool = True) -> dict:
    n = len(messages.interactions)
    worker = start_ready(settings, messages, bulk)
    try:
        proc = psutil.Process(worker.proc.pid)
        cpu = lambda: sum(proc.cpu_times()[:2])  # noqa: E731  (user + system)
        before = worker.counter("lettingo_events_total", topic="interactions")
        started = time.perf_counter()
        feeder = Feeder(settings, messages)
        samples: list[tuple[float, float, float]] = []
        while time.perf_counter() < started + timeout_s:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.proc.returncode}:\n{worker.log_tail()}")
            feeder.check()
            done = worker.counter("lettingo_events_total", topic="interactions")
            samples.append((time.perf_counter(), done, cpu()))
            if done >= n:
                break
            time.sleep(POLL_S)
        finished = samples[-1]
        sent = feeder.join()
        time.sleep(1.5)  # one commit interval, so the committed offsets include the last events
        committed = asyncio.run(kafka_util.committed_total(settings, settings.app.id, "interactions"))
        return {
            "events": int(finished[1]),
            "written": sent,
            "applied_before_feeding": int(before),
            "window_per_second": window_rate([(t, d) for t, d, _ in samples], n),
            "overall_per_second": finished[1] / (finished[0] - started),
            "cpu_ms_per_event": 1000 * window_cpu_per_event(samples, n),
            "committed_offsets": committed,
            "profile_requests": worker.counter("lettingo_profile_requests_total"),
            "peak_rss_mib": worker.peak_rss / 2**20,
        }
    finally:
        worker.stop()


def cleanup(settings) -> None:
    asyncio.run(delete_run_topics(settings))
    remove_home(settings)


def run(opts: Options) -> dict:
    started = time.perf_counter()
    messages = load_messages(10_000 if opts.quick else 100_000)
    n = len(messages.interactions)
    raw_runs: list[dict] = []
    worker_runs: dict[str, list[dict]] = {path: [] for path in PATHS}
    partitions = 0
    for _ in range(opts.repeats):
        for path, bulk in PATHS.items():
            settings = kafka_util.run_settings(f"ingest-{path}")  # topics, app id and home of this run only
            partitions = settings.topics.partitions
            try:
                worker_runs[path].append(run_worker(settings, messages, timeout_s=600, bulk=bulk))
                if path == "take_events":  # the raw consumer between the two paths, on the same topic as one
                    raw_runs.append(asyncio.run(kafka_util.raw_consume(settings, "interactions", n)))
            finally:
                cleanup(settings)
    raw = median([r["per_second"] for r in raw_runs])
    paths = {}
    for path, runs in worker_runs.items():
        per_second = median([r["window_per_second"] for r in runs])
        paths[path] = {
            "worker_per_second": per_second,
            "cpu_ms_per_event": median([r["cpu_ms_per_event"] for r in runs]),
            "ratio_worker_to_raw": per_second / raw,
            "runs": runs,
        }
    default = paths["bulk"]
    worker, cpu_ms, ratio = default["worker_per_second"], default["cpu_ms_per_event"], default["ratio_worker_to_raw"]
    profile = None
    if ratio < GOAL:
        settings = kafka_util.run_settings("ingest-prof")
        try:
            seconds = max(3.0, min(15.0, 0.8 * n / worker))  # while it ingests, not after
            profile = profile_worker(start_ready(settings, messages), lambda: Feeder(settings, messages).join, seconds)
        finally:
            cleanup(settings)
    rows = [["raw aiokafka (getmany + json)", raw, "", "", len(raw_runs)]]
    for path, figures in paths.items():
        rows.append(
            [
                f"worker ingest + drift, {path}",
                figures["worker_per_second"],
                f"{figures['ratio_worker_to_raw']:.3f}",
                f"{figures['cpu_ms_per_event']:.3f}",
                len(figures["runs"]),
            ]
        )
    print_table(
        f"ingest: {n:,} MovieLens interactions, {partitions} partitions (medians)",
        ["reader", "events/s", "ratio", "worker CPU ms/event", "runs"],
        rows,
        note=f"goal: worker >= {GOAL} x raw consumer; {'met' if ratio >= GOAL else 'NOT met'} (bulk, the default)",
    )
    figures = {
        "events": n,
        "partitions": partitions,
        "worker_settings": WORKER_SETTINGS,
        "raw_consumer_per_second_median": raw,
        "worker_per_second_median": worker,
        "worker_cpu_ms_per_event_median": cpu_ms,
        "ratio_worker_to_raw": ratio,
        "paths": {path: {k: v for k, v in f.items() if k != "runs"} for path, f in paths.items()},
        "bulk_over_take_events": worker / paths["take_events"]["worker_per_second"],
        "goal_ratio": GOAL,
        "goal_met": ratio >= GOAL,
        "raw_runs": raw_runs,
        "worker_runs": worker_runs,
        "profile": profile,
    }
    write_result("ingest", opts, figures, started)
    return figures
