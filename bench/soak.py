"""Soak: steady load at 70 % of the measured capacity into two workers for ten minutes, sampling each worker's
resident memory and lag (interactions on its partitions past its applied offset) every 10 s; both series and their
slopes go to bench/results/soak.json.

Capacity is the fleet's *sustained* rate under a live input, measured first on the same two workers, in two
phases. (1) A backlog of interactions (60,000 in the full run, tens of seconds of work) is written unpaced and the
applied count (``lettingo_events_total{topic="interactions"}`` summed over the workers) is polled; its rate is
taken from 30 % to 95 % of the backlog, after the warm-up (the profile requests the first events cause, fetch
buffers filling). (2) Input is then paced at that backlog rate for ``SATURATE_SECONDS``: on two cores the producer
and the broker take CPU from the workers while input arrives, which a backlog written in a few seconds does not
show (session 8: a backlog rate of 1,791/s, then 70 % of it, 1,254/s, was applied at only 1,122/s). The fleet falls
behind, and what it applies over the phase's second half is the capacity. (A 10,000-event burst timed from its
first send measured 3,004/s where the fleet then applied 1,262/s: a few seconds of work mostly measure the
read-ahead.) The steady phase starts once the saturating input is applied; it cycles through the MovieLens ratings
(each pass with new event ids, so every event is applied), with the same workers and settings as the chaos run
(deterministic writer, no model).

Memory is *bounded* when the RSS slope over the second half of the run, after warm-up, is under one megabyte a
minute. The worker's in-process caches (``lettingo_cache_bytes``: text vectors, profile vectors, sent pairs) fill
up to their bounds (``lettingo_cache_max_bytes``) over tens of minutes, faster than a ten-minute run's RSS may
grow, and so do RocksDB's block cache and memtables (``lettingo_rocksdb_memory_bytes``, one bound per worker); their
bytes are sampled with the RSS, and memory is also judged *bounded net of the caches* when the slope of the RSS
minus the caches' bytes is under the same limit, telling caches filling up to their caps from a leak.

Lag is spiky (it swings between 0 and a few commit intervals of input as the workers commit), so a
least-squares slope says little about it. Lag is *bounded* when, over the second half, (1) its trend, the
Theil-Sen slope (the median of the slopes between every two samples, which spikes barely move) times the half's
length, adds less than ``LAG_GROWTH_LIMIT_SECONDS`` of input, and (2) its median is under ``LAG_LIMIT_SECONDS`` of
input. A backlog that grows fails (1) however slowly it began; a plateau far behind the input fails (2). And, as
a check from outside the workers, (3) the fleet applied at least ``KEPT_UP_SHARE`` of what the steady phase sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psutil
from scipy.stats import theilslopes

from bench.chaos import WORKER, Fleet
from bench.common import DATASET, Options, median, print_table, write_result
from bench.ingest import window_rate
from bench.kafka_util import run_settings
from bench.worker import BenchWorker, remove_home
from lettingo.data import load_dataset
from lettingo.records import Interaction
from streams.kafka.producer import record_producer
from streams.kafka.topics import create_topics, delete_run_topics
from streams.replay import to_interaction, to_item_record
from streams.settings import StreamSettings

LOAD_SHARE = 0.7
# Interactions on the worker's partitions not yet applied (past its own applied offset), not merely not fetched.
LAG_METRIC = "lettingo_applied_offset_lag_messages"
RSS_SLOPE_LIMIT_MB_PER_MIN = 1.0
LAG_LIMIT_SECONDS = 10.0
LAG_GROWTH_LIMIT_SECONDS = 5.0
KEPT_UP_SHARE = 0.95  # of the interactions sent in the steady phase, the share the fleet must have applied
# What fills up to a bound inside a worker, as (gauge, label, value): its in-process caches, and RocksDB's shared
# block cache and memtables. Each gauge has a twin of the bounds, named with "_max" before "_bytes".
CACHES = {
    **{name: ("lettingo_cache_bytes", "cache", name) for name in ("text_vectors", "profile_vectors", "sent_pairs")},
    **{f"rocksdb_{part}": ("lettingo_rocksdb_memory_bytes", "part", part) for part in ("block_cache", "memtables")},
}
CAPACITY_WINDOW = (0.3, 0.95)  # share of the capacity backlog applied: after the warm-up, before the tail
SATURATE_SECONDS = 60.0  # input paced at the backlog rate: its second half is past the warm-up


def interactions(passes: int, first: int = 0) -> tuple[list, list[Interaction]]:
    """The catalogue, and ``passes`` passes over every rating in time order, each pass with its own event ids
    (pass ``first`` onwards: phases that ask for events one after the other never repeat an id)."""
    dataset = load_dataset(DATASET)
    ratings = sorted((r for rs in dataset.ratings_by_user.values() for r in rs), key=lambda r: (r.ts, r.user_id))
    base = [to_interaction(dataset.name, r) for r in ratings]
    events = [
        e if n == 0 else e.model_copy(update={"event_id": f"{e.event_id}:soak{n}"})
        for n in range(first, first + passes)
        for e in base
    ]
    return [to_item_record(i) for i in dataset.items.values()], events


class EventSupply:
    """Interactions for one phase after another, each phase's from passes over the ratings no earlier phase used."""

    def __init__(self) -> None:
        self.next_pass = 0
        self.pass_size = len(interactions(1)[1])

    def take(self, count: int) -> list[Interaction]:
        passes = -(-count // self.pass_size)
        _, events = interactions(passes, first=self.next_pass)
        self.next_pass += passes
        return events[:count]


async def send(
    settings: StreamSettings, topic: str, events: list, rate: float, stop: threading.Event | None = None
) -> int:
    """Send ``events`` to ``topic`` at ``rate``/s (0: as fast as the broker takes them), each keyed by its id (a
    user's for an interaction, an item's for an item); returns how many were sent."""
    sent = 0
    async with record_producer(settings) as producer:
        started = time.monotonic()
        for sent, event in enumerate(events):
            if stop is not None and stop.is_set():
                return sent
            if rate and sent % 20 == 0:
                await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
            await producer.send(topic, event.user_id if topic == "interactions" else event.item_id, event)
    return len(events)


def applied(fleet: list[BenchWorker]) -> float:
    return sum(w.counter("lettingo_events_total", topic="interactions") for w in fleet)


def rss_mb(worker: BenchWorker) -> float:
    try:
        p = psutil.Process(worker.proc.pid)
        return (p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))) / 2**20
    except (psutil.Error, AttributeError):
        return float("nan")


def memory_split_mb(worker: BenchWorker) -> dict[str, float]:
    """The worker's resident memory by kind of mapping: ``heap`` (glibc's main arena, the brk heap: the main
    thread's mallocs, RocksDB writes on the event loop included), ``anon`` (anonymous mappings: glibc's thread
    arenas, large mallocs, Python's object arenas) and ``file`` (libraries and other mapped files), in MB."""
    split = {"heap": 0.0, "anon": 0.0, "file": 0.0}
    try:
        for m in psutil.Process(worker.proc.pid).memory_maps(grouped=True):
            kind = "heap" if m.path == "[heap]" else "file" if m.path.startswith("/") else "anon"
            split[kind] += m.rss / 2**20
    except (psutil.Error, AttributeError):
        return {k: float("nan") for k in split}
    return {k: round(v, 1) for k, v in split.items()}


def cache_mb(worker: BenchWorker, bounds: bool = False) -> dict[str, float]:
    """The bytes of each of :data:`CACHES` (with ``bounds``, its bound) as the worker serves them, and their
    ``total``, in MB (0 for one not reported yet)."""
    out = {
        name: round(
            worker.counter(metric.replace("_bytes", "_max_bytes") if bounds else metric, **{label: value}) / 2**20, 2
        )
        for name, (metric, label, value) in CACHES.items()
    }
    return {**out, "total": round(sum(out.values()), 2)}


def net_of(rss: list[tuple[float, float]], caches: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(seconds, RSS minus the caches' bytes) of samples taken together."""
    return [(t, v - c) for (t, v), (_, c) in zip(rss, caches, strict=True)]


def slope_per_min(series: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(series) < 2:
        return 0.0
    xs, ys = [t / 60 for t, _ in series], [v for _, v in series]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def first_half(series: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return series[: len(series) // 2]


def second_half(series: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return series[len(series) // 2 :]


def peak(series: list[tuple[float, float]]) -> float:
    return max((v for _, v in series), default=0.0)


def robust_slope_per_min(series: list[tuple[float, float]]) -> float:
    """Theil-Sen slope of (seconds, value) points, per minute: the median of the pairwise slopes."""
    if len(series) < 2:
        return 0.0
    return float(theilslopes([v for _, v in series], [t / 60 for t, _ in series]).slope)


def lag_growth(series: list[tuple[float, float]]) -> float:
    """Messages the second half's Theil-Sen trend adds across the second half."""
    half = second_half(series)
    if len(half) < 2:
        return 0.0
    return robust_slope_per_min(half) * (half[-1][0] - half[0][0]) / 60


def lag_bounded(series: list[tuple[float, float]], rate: float) -> bool:
    """Over the second half, the lag's trend adds under ``LAG_GROWTH_LIMIT_SECONDS`` of input and its median is
    under ``LAG_LIMIT_SECONDS`` of input (``rate`` interactions/s)."""
    half = [v for _, v in second_half(series)]
    if not half:
        return False
    return lag_growth(series) < LAG_GROWTH_LIMIT_SECONDS * rate and median(half) < LAG_LIMIT_SECONDS * rate


def measure_backlog_rate(settings: StreamSettings, fleet: list[BenchWorker], backlog: list, timeout_s: float) -> dict:
    """The fleet's rate on a backlog: ``backlog`` written unpaced, the applied count polled, the rate taken over
    ``CAPACITY_WINDOW`` of it."""
    before = applied(fleet)
    sender = threading.Thread(target=lambda: asyncio.run(send(settings, "interactions", backlog, rate=0)))
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    sender.start()
    while (done := applied(fleet) - before) < len(backlog):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{done:.0f} of {len(backlog)} interactions applied in {timeout_s} s")
        samples.append((time.monotonic(), done))
        time.sleep(0.5)
    samples.append((time.monotonic(), done))
    sender.join()
    lo, hi = (next(s for s in samples if s[1] >= share * len(backlog)) for share in CAPACITY_WINDOW)
    burst_rate = len(backlog) / (samples[-1][0] - started)
    window = window_rate(samples, len(backlog), *CAPACITY_WINDOW)
    return {
        "backlog_window_rate_per_s": window if window == window else burst_rate,  # nan: the window had no width
        "capacity_backlog": len(backlog),
        "capacity_window": list(CAPACITY_WINDOW),
        "capacity_window_seconds": hi[0] - lo[0],
        "backlog_seconds": samples[-1][0] - started,
        "backlog_rate_per_s": burst_rate,
    }


def measure_saturated_rate(
    settings: StreamSettings, fleet: list[BenchWorker], events: list, rate: float, seconds: float, timeout_s: float
) -> dict:
    """The fleet's rate while input arrives at ``rate``/s (above what it keeps up with) for ``seconds``: applied
    over the phase's second half. Returns once everything sent is applied, so the next phase starts level."""
    before = applied(fleet)
    stop = threading.Event()
    sent: list[int] = []
    sender = threading.Thread(
        target=lambda: sent.append(asyncio.run(send(settings, "interactions", events, rate, stop))), daemon=True
    )
    started = time.monotonic()
    sender.start()
    time.sleep(seconds / 2)
    half_at, half_done = time.monotonic(), applied(fleet) - before
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    end_at, end_done = time.monotonic(), applied(fleet) - before
    stop.set()
    sender.join(30)
    deadline = time.monotonic() + timeout_s
    while (done := applied(fleet) - before) < (sent[0] if sent else 0):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done:.0f} of {sent[0]} saturating interactions applied in {timeout_s} s")
        time.sleep(0.5)
    return {
        "capacity_per_s": (end_done - half_done) / (end_at - half_at),
        "saturate_rate_per_s": rate,
        "saturate_seconds": seconds,
        "saturate_sent": sent[0] if sent else 0,
        "saturate_drain_seconds": time.monotonic() - end_at,
    }


def run_soak(
    duration_s: float, sample_s: float, backlog: int, saturate_s: float, overrides: dict | None = None
) -> dict[str, Any]:
    """The soak's figures; ``overrides`` are worker settings on top of the chaos run's (``{"app_...": ...}``)."""
    settings = run_settings("soak")
    fleet = Fleet(settings, 2, {**WORKER, "table_standby_replicas": 1, **(overrides or {})})
    try:
        asyncio.run(create_topics(settings))
        items, _ = interactions(0)
        asyncio.run(send(settings, "items", items, rate=0))
        fleet.start()
        # Each phase's events are made once its rate is known, from passes no earlier phase used: a phase that
        # ran out of input would measure an idle fleet (a run whose steady input ran out after 3 minutes did).
        supply = EventSupply()
        measured = measure_backlog_rate(settings, fleet.workers, supply.take(backlog), timeout_s=900)
        saturate_rate = measured["backlog_window_rate_per_s"]
        measured |= measure_saturated_rate(
            settings,
            fleet.workers,
            supply.take(int(saturate_rate * saturate_s) + 1),
            saturate_rate,
            saturate_s,
            timeout_s=900,
        )
        capacity = measured["capacity_per_s"]
        rate = LOAD_SHARE * capacity
        steady_events = supply.take(int(rate * duration_s * 1.2) + 1)

        stop = threading.Event()
        sent: list[int] = []
        sender = threading.Thread(
            target=lambda: sent.append(asyncio.run(send(settings, "interactions", steady_events, rate, stop))),
            daemon=True,
        )
        rss: list[list[tuple[float, float]]] = [[] for _ in fleet.workers]
        lag: list[list[tuple[float, float]]] = [[] for _ in fleet.workers]
        split: list[list[dict[str, float]]] = [[] for _ in fleet.workers]
        caches: list[list[dict[str, float]]] = [[] for _ in fleet.workers]
        started = time.monotonic()
        applied_at_start = applied(fleet.workers)
        sender.start()
        while (elapsed := time.monotonic() - started) < duration_s:
            for n, worker in enumerate(fleet.workers):
                rss[n].append((elapsed, rss_mb(worker)))
                split[n].append({"t": round(elapsed, 1), **memory_split_mb(worker)})
                caches[n].append({"t": round(elapsed, 1), **cache_mb(worker)})
                lag[n].append((elapsed, worker.counter(LAG_METRIC, topic=settings.topic("interactions"))))
            time.sleep(max(0.0, started + (len(rss[0])) * sample_s - time.monotonic()))
        stop.set()
        sender.join(30)
        elapsed = time.monotonic() - started
        steady_rate = (applied(fleet.workers) - applied_at_start) / elapsed
        sent_rate = (sent[0] if sent else float("nan")) / elapsed

        rss_slopes = [slope_per_min(second_half(s)) for s in rss]
        cache_totals = [[(p["t"], p["total"]) for p in c] for c in caches]
        net_slopes = [slope_per_min(second_half(net_of(r, c))) for r, c in zip(rss, cache_totals, strict=True)]
        lag_slopes = [slope_per_min(second_half(s)) for s in lag]
        series_bounded = all(lag_bounded(s, rate) for s in lag)
        # the input held its pace: else the fleet was measured idle and no verdict stands
        on_pace = bool(sent_rate >= KEPT_UP_SHARE * rate)
        kept_up = bool(sent_rate and steady_rate >= KEPT_UP_SHARE * sent_rate)
        return {
            "workers": 2,
            "duration_s": duration_s,
            "sample_s": sample_s,
            **measured,
            "load_share": LOAD_SHARE,
            "input_rate_per_s": rate,
            "sent_rate_per_s": sent_rate,
            "applied_rate_per_s": steady_rate,
            "applied_share_of_sent": steady_rate / sent_rate if sent_rate else None,
            "rss_mb": [[[round(t, 1), round(v, 1)] for t, v in s] for s in rss],
            # where RSS growth lands: the main malloc heap, other anonymous memory, mapped files
            "rss_split_mb": split,
            "rss_split_slope_mb_per_min": [
                {k: slope_per_min([(p["t"], p[k]) for p in s]) for k in ("heap", "anon", "file")} for s in split
            ],
            "consumer_lag": [[[round(t, 1), v] for t, v in s] for s in lag],
            "rss_slope_mb_per_min": rss_slopes,
            "rss_slope_whole_run_mb_per_min": [slope_per_min(s) for s in rss],
            "lag_slope_per_min": lag_slopes,
            "lag_theil_sen_slope_per_min": [robust_slope_per_min(second_half(s)) for s in lag],
            "lag_growth_second_half": [lag_growth(s) for s in lag],
            "lag_median_second_half": [median([v for _, v in second_half(s)]) for s in lag],
            "lag_growth_limit": LAG_GROWTH_LIMIT_SECONDS * rate,
            "lag_level_limit": LAG_LIMIT_SECONDS * rate,
            "lag_median": [median([v for _, v in s]) for s in lag],
            "lag_peak_first_half": [peak(first_half(s)) for s in lag],
            "lag_peak_second_half": [peak(second_half(s)) for s in lag],
            "lag_peak_seconds_of_input": [peak(s) / rate if rate else None for s in lag],
            "rss_peak_mb": [peak(s) for s in rss],
            "rss_bounded": all(s < RSS_SLOPE_LIMIT_MB_PER_MIN for s in rss_slopes),
            # the caches' bytes sampled with rss_mb, their bounds, and the RSS slope without them
            "cache_mb": caches,
            "cache_caps_mb": [cache_mb(w, bounds=True) for w in fleet.workers],
            "cache_slope_mb_per_min": [slope_per_min(second_half(c)) for c in cache_totals],
            "rss_net_of_caches_slope_mb_per_min": net_slopes,
            "rss_bounded_net_of_caches": all(s < RSS_SLOPE_LIMIT_MB_PER_MIN for s in net_slopes),
            "lag_series_bounded": series_bounded,
            "input_kept_up": kept_up,
            # the lag metric is read from each worker: the applied count against the sent one checks it from outside
            "input_on_pace": on_pace,
            "lag_bounded": series_bounded and kept_up and on_pace,
        }
    finally:
        fleet.stop()
        asyncio.run(delete_run_topics(settings))
        remove_home(settings)


def run(opts: Options) -> dict[str, Any]:
    started = time.perf_counter()
    figures = (
        run_soak(60, 5, backlog=6_000, saturate_s=20)
        if opts.quick
        else run_soak(600, 10, backlog=60_000, saturate_s=SATURATE_SECONDS)
    )
    rows = [
        [
            f"worker {n}",
            f"{figures['rss_mb'][n][0][1]:.0f} -> {figures['rss_mb'][n][-1][1]:.0f}",
            f"{figures['rss_slope_mb_per_min'][n]:+.2f}",
            f"{figures['rss_net_of_caches_slope_mb_per_min'][n]:+.2f}",
            f"{figures['cache_mb'][n][-1]['total']:.0f} / {figures['cache_caps_mb'][n]['total']:.0f}",
            f"{figures['lag_median'][n]:.0f}",
            f"{figures['lag_peak_first_half'][n]:.0f} -> {figures['lag_peak_second_half'][n]:.0f}",
        ]
        for n in range(figures["workers"])
    ]
    print_table(
        "soak",
        [
            "worker",
            "RSS MB first -> last",
            "RSS slope MB/min (2nd half)",
            "net of caches",
            "caches MB / cap",
            "lag median",
            "lag peak 1st -> 2nd half",
        ],
        rows,
        note=(
            f"capacity {figures['capacity_per_s']:.0f}/s, input {figures['input_rate_per_s']:.0f}/s, applied "
            f"{figures['applied_rate_per_s']:.0f}/s; "
            f"bounded: rss {figures['rss_bounded']}, rss net of caches {figures['rss_bounded_net_of_caches']}, "
            f"lag {figures['lag_bounded']}; input on pace {figures['input_on_pace']}"
        ),
    )
    write_result("soak", opts, figures, started)
    return figures
