"""End-to-end latency: from the interaction that crosses the cold-start or drift threshold to the new profile on
``profiles``, at a sustainable input rate.

A producer sends real MovieLens ratings of many users, each user's in order, the users interleaved at random
(strict round-robin, as this benchmark did before, sends every user's cold-start trigger within a few seconds,
and every drift check too: bursts of 150-300 requests that queue whatever the average rate). Each interaction's
``ts`` is its wall-clock send time, and a profile carries its request's ``ts`` (the triggering event's), so
latency = the profile record's Kafka timestamp (set when the worker sends it) - that ``ts``. Receive-time
latency (when this process's consumer saw it) is reported beside it. Drift cooldown is 0 so drift can fire
within the run; exploration is off, so each profile is one serving generation.

Two phases on one worker. **Capacity**: the interactions of one set of users are sent as fast as the producer
goes, so the worker's regeneration queue fills; interactions per second from the first one sent to the last
profile written are its capacity (every part of the work included). **Paced**: the interactions of other users
are sent at :data:`LOAD` (70 %) of that rate, and latency is measured there: one profile's cost and its
batching wait, not queueing behind a backlog. Both phases run three times, each on a fresh worker: as the worker
ran before (:data:`BEFORE`), with the defaults but Python's GIL switch interval (:data:`SWITCH_5MS`), and with the
defaults. Beside the latency: what the worker did while paced (share of the time generating, batch sizes, CPU per
interaction), which says what a latency is made of.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import kafka_util
from bench.common import DATASET, HOME, Options, median, percentile, print_table, write_result
from bench.worker import BenchWorker, remove_home
from streams.kafka.topics import create_topics, delete_run_topics

LOAD = 0.7  # paced rate, as a share of the measured capacity
USER_WINDOW = 0.5  # share of a phase over which one user's ratings are sent
MAX_RATE = 200.0  # a writer policy's capacity is far above what one paced producer sends
# Session 13's defaults (tuned fetches, 0.05 s window) with Python's switch interval: what the GIL setting adds.
SWITCH_5MS = {"app_switch_interval_ms": 5.0}
# How the worker ran before issue 20's latency work: Faust's fetches (answered at the first byte, else held 1.5 s),
# a half-second regeneration batch window and Python's 5 ms GIL switch interval.
BEFORE = {"app_fetch_min_bytes": 1, "app_fetch_max_wait_ms": 1500, "regen_batch_seconds": 0.5, **SWITCH_5MS}


def schedule(users: int, per_user: int, run: str, skip: int = 0) -> tuple[list, Any]:  # the interactions, the dataset
    """Interactions of ``users`` users (their first ``per_user`` ratings each), each user's in order, the users
    interleaved as a steady stream would bring them: each user's ratings fall at sorted random moments of a window
    of :data:`USER_WINDOW` of the phase that starts at a random moment (seeded). Cold-start and drift fire at a
    user's k-th rating, so when every user's ratings spanned the whole phase (as a uniform shuffle does), every
    user's last drift checks fell in its last seconds, a burst of three times the mean request rate; in strict
    round-robin every trigger of a kind came in one round. The users are those after the first ``skip`` of those
    with enough ratings."""
    import random

    from lettingo.data import load_dataset
    from lettingo.records import Interaction, InteractionKind

    data = load_dataset(DATASET)
    chosen = [u for u, rs in sorted(data.ratings_by_user.items()) if len(rs) >= per_user][skip : skip + users]
    draw = random.Random(f"{skip}:{users}:{per_user}")
    moments = []
    for u in chosen:
        start = draw.uniform(0.0, 1.0 - USER_WINDOW)
        ratings = sorted(data.ratings_by_user[u], key=lambda r: (r.ts, r.item_id))[:per_user]
        at = sorted(start + draw.uniform(0.0, USER_WINDOW) for _ in ratings)
        moments += [(t, u, i, r) for i, (t, r) in enumerate(zip(at, ratings, strict=True))]
    out = [
        Interaction(
            event_id=f"{run}:{u}:{i}",
            user_id=u,
            item_id=r.item_id,
            kind=InteractionKind.RATING,
            rating=r.rating,
            ts=0.0,
        )
        for _, u, i, r in sorted(moments, key=lambda m: m[0])
    ]
    return out, data


async def drive(
    settings, events: list, rate: float | None, drain_s: float, quiet_s: float = 10.0
) -> tuple[list[dict], float, float]:
    """Send ``events`` at ``rate``/s (as fast as the producer goes when None; ts = send time) while reading
    ``profiles``, then read on until no profile came for ``quiet_s`` (at most ``drain_s``); returns the profiles
    of the events' users, the rate achieved and when the first event was sent (wall clock)."""
    from lettingo.records import Profile

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks=1, linger_ms=0)
    await consumer.start()
    await producer.start()
    seen: list[dict] = []
    users = {e.user_id for e in events}
    try:
        topic = settings.topic("profiles")
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        stop = asyncio.Event()

        async def read() -> None:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    now = time.time()
                    for r in records:
                        p = Profile.model_validate_json(r.value)
                        if p.user_id not in users:
                            continue
                        seen.append(
                            {
                                "user_id": p.user_id,
                                "reason": p.reason.value,
                                "event_ts": p.ts,
                                "record_ts": r.timestamp / 1000,
                                "received": now,
                            }
                        )

        reader = asyncio.create_task(read())
        started, sent_from = time.perf_counter(), time.time()
        for n, event in enumerate(events):
            due = n / rate - (time.perf_counter() - started) if rate else 0.0
            if due > 0:
                await asyncio.sleep(due)
            sent = event.model_copy(update={"ts": time.time()})
            await producer.send_and_wait(settings.topic("interactions"), sent.to_bytes(), key=sent.user_id.encode())
        achieved = len(events) / (time.perf_counter() - started)
        sent_at = time.time()
        drain_until = sent_at + drain_s
        while time.time() < drain_until:
            await asyncio.sleep(0.5)
            if time.time() - max(sent_at, seen[-1]["received"] if seen else 0.0) > quiet_s:
                break
        stop.set()
        await reader
        return seen, achieved, sent_from
    finally:
        await producer.stop()
        await consumer.stop()


def capacity(seen: list[dict], interactions: int, sent_from: float) -> dict:
    """What the worker got through a backlog: interactions, and the profiles they triggered, per second from the
    first interaction sent to the last profile written (every part of the work included, start-up of the
    burst too, so it errs low); the profiles/s between the first and the last profile beside it."""
    stamps = sorted(s["record_ts"] for s in seen)
    span = stamps[-1] - sent_from if stamps else float("nan")
    between = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return {
        "interactions": interactions,
        "profiles": len(seen),
        "seconds_first_sent_to_last_profile": span,
        "profiles_per_s": len(seen) / span if span > 0 else float("nan"),
        "profiles_per_s_first_to_last_profile": (len(stamps) - 1) / between if between > 0 else float("nan"),
        "profiles_per_interaction": len(seen) / interactions,
        "interactions_per_s": interactions / span if span > 0 else float("nan"),
    }


def worker_meter(worker: BenchWorker) -> dict:
    """The worker's generation counters and CPU seconds (all threads, and the main thread's: Faust's event loop)
    now: the difference of two readings is what a phase cost."""
    import psutil

    proc = psutil.Process(worker.proc.pid) if worker.proc else None
    cpu = proc.cpu_times() if proc else None
    main = next((t for t in proc.threads() if t.id == proc.pid), None) if proc else None
    return {
        "batches": worker.counter("lettingo_generation_seconds_count"),
        "generation_seconds": worker.counter("lettingo_generation_seconds_sum"),
        "profiles": worker.counter("lettingo_regenerations_total"),
        "cpu_seconds": (cpu.user + cpu.system) if cpu else 0.0,
        "main_thread_cpu_seconds": (main.user_time + main.system_time) if main else 0.0,
        "wall": time.time(),
    }


def phase_cost(before: dict, after: dict, interactions: int) -> dict:
    """What the worker did between two :func:`worker_meter` readings: generation batches, their mean size and
    wall time, the share of the phase spent generating, CPU seconds per wall second, and CPU ms per interaction."""
    d = {k: after[k] - before[k] for k in before}
    wall, batches = d["wall"], d["batches"]
    return {
        "seconds": wall,
        "generation_batches": batches,
        "profiles": d["profiles"],
        "mean_batch": d["profiles"] / batches if batches else float("nan"),
        "seconds_per_batch": d["generation_seconds"] / batches if batches else float("nan"),
        "generating_share": d["generation_seconds"] / wall if wall else float("nan"),
        "cpu_per_second": d["cpu_seconds"] / wall if wall else float("nan"),
        "main_thread_cpu_per_second": d["main_thread_cpu_seconds"] / wall if wall else float("nan"),
        "cpu_ms_per_interaction": 1000 * d["cpu_seconds"] / interactions,
    }


def latency_summary(seen: list[dict]) -> dict:
    lat = [s["record_ts"] - s["event_ts"] for s in seen]
    recv = [s["received"] - s["event_ts"] for s in seen]
    by_reason = {
        r: [s["record_ts"] - s["event_ts"] for s in seen if s["reason"] == r]
        for r in sorted({s["reason"] for s in seen})
    }
    return {"all": lat, "received": recv, "by_reason": by_reason}


def measure(settings, policy: str, burst: list, events: list, items: list, **settings_overrides: object) -> dict:
    """The two phases on one fresh worker with ``settings_overrides``: its capacity, then latency paced at
    :data:`LOAD` of it."""
    overrides = {"worker_policy": policy, "explore_rate": 0, "drift_cooldown_seconds": 0, **settings_overrides}
    worker = BenchWorker(settings, **overrides)
    try:

        async def prepare() -> None:
            await create_topics(settings)
            await kafka_util.produce_raw(settings, "items", iter(items))

        asyncio.run(prepare())
        worker.start()
        before = worker_meter(worker)
        burst_seen, burst_rate, burst_from = asyncio.run(drive(settings, burst, None, drain_s=180.0))
        burst_cost = phase_cost(before, before := worker_meter(worker), len(burst))
        cap = capacity(burst_seen, len(burst), burst_from)
        rate = min(MAX_RATE, LOAD * cap["interactions_per_s"])
        print(
            f"capacity: {cap['profiles']} profiles from {len(burst)} interactions sent at {burst_rate:.0f}/s: "
            f"{cap['profiles_per_s']:.2f} profiles/s, {cap['profiles_per_interaction']:.3f} profiles/interaction, "
            f"{cap['interactions_per_s']:.1f} interactions/s; pacing at {rate:.1f}/s",
            flush=True,
        )
        seen, achieved, _ = asyncio.run(drive(settings, events, rate, drain_s=120.0))
        paced_cost = phase_cost(before, worker_meter(worker), len(events))
    finally:
        worker.stop()
        asyncio.run(delete_run_topics(settings))
        remove_home(settings)
    summary = latency_summary(seen)
    lat, recv, by_reason = summary["all"], summary["received"], summary["by_reason"]
    rows = [
        [name, len(v), percentile(v, 50), percentile(v, 95), percentile(v, 99), max(v) if v else float("nan")]
        for name, v in [
            ("all (record timestamp)", lat),
            ("all (received)", recv),
            *[(f"{r} (record timestamp)", v) for r, v in by_reason.items()],
        ]
    ]
    print_table(
        f"end-to-end latency, seconds: {len(events)} interactions at {achieved:.1f}/s "
        f"({LOAD:.0%} of the measured {cap['interactions_per_s']:.1f}/s), {settings_overrides or 'the defaults'}",
        ["profiles", "n", "p50 s", "p95 s", "p99 s", "max s"],
        rows,
        note=f"worker while paced: {paced_cost['generating_share']:.0%} of the time generating, mean batch "
        f"{paced_cost['mean_batch']:.1f} in {paced_cost['seconds_per_batch']:.2f} s, "
        f"{paced_cost['cpu_ms_per_interaction']:.1f} CPU ms per interaction",
    )
    p99 = percentile(lat, 99)
    return {
        "worker_settings": overrides,
        "p99_seconds": p99,
        "capacity": {**cap, "sent_per_second": burst_rate, "worker": burst_cost},
        "target_rate_per_second": rate,
        "achieved_rate_per_second": achieved,
        "profiles": len(seen),
        "profiles_per_interaction": len(seen) / len(events),
        "profiles_per_s_needed": achieved * len(seen) / len(events),
        "worker_while_paced": paced_cost,
        "latency_s": {
            "p50": percentile(lat, 50),
            "p95": percentile(lat, 95),
            "p99": p99,
            "max": max(lat) if lat else None,
            "median": median(lat),
        },
        "received_latency_s": {"p50": percentile(recv, 50), "p95": percentile(recv, 95), "p99": percentile(recv, 99)},
        "by_reason": {
            r: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95), "p99": percentile(v, 99)}
            for r, v in by_reason.items()
        },
    }


def run(opts: Options) -> dict:
    started = time.perf_counter()
    # (users, ratings each) of the capacity phase, then of the paced phase (other users)
    burst_users, users, per_user = (40, 60, 12) if opts.quick else (80, 150, 20)
    if opts.quick:
        policy = "writer:combined"
    else:
        from lettingo.nano.build import build_nano
        from lettingo.nano.config import NanoConfig

        policy = f"hf:{build_nano(DATASET, HOME / 'models', NanoConfig.quick())}?device=cpu"
    run_id = uuid.uuid4().hex[:8]
    burst, data = schedule(burst_users, per_user, f"{run_id}-capacity")
    events, _ = schedule(users, per_user, run_id, skip=burst_users)
    from streams.replay import to_item_record

    items = [(i.item_id.encode(), to_item_record(i).to_bytes()) for i in data.items.values()]
    variants = {"before": BEFORE, "switch_interval_5ms": SWITCH_5MS, "defaults": {}}
    measured = {}
    for name, overrides in variants.items():  # a fresh run's topics for each: one's output is not the other's
        measured[name] = measure(kafka_util.run_settings(f"latency-{name}"), policy, burst, events, items, **overrides)
    after = measured["defaults"]
    p99 = after["p99_seconds"]
    figures = {
        "p99_seconds": p99,
        "p99_goal_seconds": 2.0,
        "p99_goal_met": bool(p99 <= 2.0),
        "p99_seconds_before": measured["before"]["p99_seconds"],
        "p99_seconds_switch_interval_5ms": measured["switch_interval_5ms"]["p99_seconds"],
        "load_share_of_capacity": LOAD,
        "interactions": len(events),
        "users": users,
        "capacity_users": burst_users,
        "user_window_share": USER_WINDOW,
        "policy": policy,
        "variants": measured,
    }
    write_result("latency", opts, figures, started)
    return figures
