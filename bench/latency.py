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
batching wait, not queueing behind a backlog.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import kafka_util
from bench.common import DATASET, HOME, Options, median, percentile, print_table, write_result
from bench.worker import BenchWorker, remove_home
from streams.kafka.topics import create_topics, delete_run_topics

LOAD = 0.7  # paced rate, as a share of the measured capacity


def schedule(users: int, per_user: int, run: str, skip: int = 0) -> list:
    """Interactions of ``users`` users (their first ``per_user`` ratings each), each user's in order, the users
    merged at random (seeded): in strict round-robin every user would cross the cold-start threshold, and then
    the drift checks, in the same round, a burst of requests no input rate smooths out. The users are those
    after the first ``skip`` of those with enough ratings."""
    import random

    from lettingo.data import load_dataset
    from lettingo.records import Interaction, InteractionKind

    data = load_dataset(DATASET)
    chosen = [u for u, rs in sorted(data.ratings_by_user.items()) if len(rs) >= per_user][skip : skip + users]
    # each draw is a user with events left, in proportion to how many: a uniform random interleaving
    order = [u for u in chosen for _ in range(per_user)]
    random.Random(f"{skip}:{users}:{per_user}").shuffle(order)
    taken = dict.fromkeys(chosen, 0)
    ratings = {u: sorted(data.ratings_by_user[u], key=lambda r: (r.ts, r.item_id)) for u in chosen}
    out = []
    for u in order:
        i = taken[u]
        taken[u] += 1
        r = ratings[u][i]
        out.append(
            Interaction(
                event_id=f"{run}:{u}:{i}",
                user_id=u,
                item_id=r.item_id,
                kind=InteractionKind.RATING,
                rating=r.rating,
                ts=0.0,
            )
        )
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


def latency_summary(seen: list[dict]) -> dict:
    lat = [s["record_ts"] - s["event_ts"] for s in seen]
    recv = [s["received"] - s["event_ts"] for s in seen]
    by_reason = {
        r: [s["record_ts"] - s["event_ts"] for s in seen if s["reason"] == r]
        for r in sorted({s["reason"] for s in seen})
    }
    return {"all": lat, "received": recv, "by_reason": by_reason}


def run(opts: Options) -> dict:
    started = time.perf_counter()
    # (users, ratings each) of the capacity phase, then of the paced phase (other users)
    burst_users, users, per_user = (40, 60, 12) if opts.quick else (80, 150, 20)
    max_rate = 200.0  # a writer policy's capacity is far above what one paced producer sends
    settings = kafka_util.run_settings("latency")
    if opts.quick:
        policy = "writer:combined"
    else:
        from lettingo.nano.build import build_nano
        from lettingo.nano.config import NanoConfig

        policy = f"hf:{build_nano(DATASET, HOME / 'models', NanoConfig.quick())}?device=cpu"
    overrides = {"worker_policy": policy, "explore_rate": 0, "drift_cooldown_seconds": 0}
    run_id = uuid.uuid4().hex[:8]
    burst, data = schedule(burst_users, per_user, f"{run_id}-capacity")
    events, _ = schedule(users, per_user, run_id, skip=burst_users)
    worker = BenchWorker(settings, **overrides)
    try:
        from streams.replay import to_item_record

        items = ((i.item_id.encode(), to_item_record(i).to_bytes()) for i in data.items.values())

        async def prepare() -> None:
            await create_topics(settings)
            await kafka_util.produce_raw(settings, "items", items)

        asyncio.run(prepare())
        worker.start()
        burst_seen, burst_rate, burst_from = asyncio.run(drive(settings, burst, None, drain_s=180.0))
        cap = capacity(burst_seen, len(burst), burst_from)
        rate = min(max_rate, LOAD * cap["interactions_per_s"])
        print(
            f"capacity: {cap['profiles']} profiles from {len(burst)} interactions sent at {burst_rate:.0f}/s: "
            f"{cap['profiles_per_s']:.2f} profiles/s, {cap['profiles_per_interaction']:.3f} profiles/interaction, "
            f"{cap['interactions_per_s']:.1f} interactions/s; pacing at {rate:.1f}/s",
            flush=True,
        )
        seen, achieved, _ = asyncio.run(drive(settings, events, rate, drain_s=120.0))
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
        f"end-to-end latency, seconds: {len(events)} interactions of {users} users at {achieved:.1f}/s "
        f"({LOAD:.0%} of the measured {cap['interactions_per_s']:.1f}/s), policy "
        f"{policy.split('?')[0].rsplit('/', 1)[-1]}",
        ["profiles", "n", "p50 s", "p95 s", "p99 s", "max s"],
        rows,
        note="regen batch window 0.5 s (LETTINGO_REGEN_BATCH_SECONDS); exploration off; drift cooldown 0",
    )
    p99 = percentile(lat, 99)
    figures = {
        "p99_seconds": p99,
        "p99_goal_seconds": 2.0,
        "p99_goal_met": bool(p99 <= 2.0),
        "capacity": {**cap, "sent_per_second": burst_rate, "users": burst_users},
        "load_share_of_capacity": LOAD,
        "interactions": len(events),
        "users": users,
        "target_rate_per_second": rate,
        "achieved_rate_per_second": achieved,
        "policy": policy,
        "worker_settings": overrides,
        "profiles": len(seen),
        "profiles_per_interaction": len(seen) / len(events),
        "profiles_per_s_needed": achieved * len(seen) / len(events),
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
    write_result("latency", opts, figures, started)
    return figures
