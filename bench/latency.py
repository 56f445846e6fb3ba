"""End-to-end latency: from the interaction that crosses the cold-start or drift threshold to the new profile on
``profiles``, at a steady input rate.

A paced producer sends real MovieLens ratings of many users, interleaved round-robin, at a fixed rate; each
interaction's ``ts`` is its wall-clock send time, and a profile carries its request's ``ts`` (the triggering
event's), so latency = the profile record's Kafka timestamp (set when the worker sends it) - that ``ts``.
Receive-time latency (when this process's consumer saw it) is reported beside it. Drift cooldown is 0 so drift
can fire within the run; exploration is off, so each profile is one serving generation.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import kafka_util
from bench.common import DATASET, HOME, Options, median, percentile, print_table, write_result
from bench.worker import BenchWorker, remove_home
from streams.kafka.topics import delete_run_topics


def schedule(users: int, per_user: int, run: str) -> list:
    """Interactions of ``users`` users (their first ``per_user`` ratings each), interleaved round-robin."""
    from lettingo.data import load_dataset
    from lettingo.records import Interaction, InteractionKind

    data = load_dataset(DATASET)
    chosen = [u for u, rs in sorted(data.ratings_by_user.items()) if len(rs) >= per_user][:users]
    out = []
    for i in range(per_user):
        for u in chosen:
            r = sorted(data.ratings_by_user[u], key=lambda r: (r.ts, r.item_id))[i]
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


async def drive(settings, events: list, rate: float, drain_s: float) -> tuple[list[dict], float]:
    """Send ``events`` at ``rate``/s (ts = send time) while reading ``profiles``; returns the profiles seen."""
    from lettingo.records import Profile

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks=1, linger_ms=0)
    await consumer.start()
    await producer.start()
    seen: list[dict] = []
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
        started = time.perf_counter()
        for n, event in enumerate(events):
            due = n / rate - (time.perf_counter() - started)
            if due > 0:
                await asyncio.sleep(due)
            sent = event.model_copy(update={"ts": time.time()})
            await producer.send_and_wait(settings.topic("interactions"), sent.to_bytes(), key=sent.user_id.encode())
        achieved = len(events) / (time.perf_counter() - started)
        await asyncio.sleep(drain_s)
        stop.set()
        await reader
        return seen, achieved
    finally:
        await producer.stop()
        await consumer.stop()


def run(opts: Options) -> dict:
    started = time.perf_counter()
    rate = 20.0 if opts.quick else 50.0
    users, per_user = (60, 12) if opts.quick else (300, 20)
    settings = kafka_util.run_settings("latency")
    if opts.quick:
        policy = "writer:combined"
    else:
        from lettingo.nano.build import build_nano
        from lettingo.nano.config import NanoConfig

        policy = f"hf:{build_nano(DATASET, HOME / 'models', NanoConfig.quick())}?device=cpu"
    overrides = {"worker_policy": policy, "explore_rate": 0, "drift_cooldown_seconds": 0}
    events, data = schedule(users, per_user, uuid.uuid4().hex[:8])
    worker = BenchWorker(settings, **overrides)
    try:
        from streams.replay import to_item_record

        items = ((i.item_id.encode(), to_item_record(i).to_bytes()) for i in data.items.values())

        async def prepare() -> None:
            await kafka_util.ensure_topics(settings)
            await kafka_util.produce_raw(settings, "items", items)

        asyncio.run(prepare())
        worker.start()
        seen, achieved = asyncio.run(drive(settings, events, rate, drain_s=15.0))
    finally:
        worker.stop()
        asyncio.run(delete_run_topics(settings))
        remove_home(settings)
    lat = [s["record_ts"] - s["event_ts"] for s in seen]
    recv = [s["received"] - s["event_ts"] for s in seen]
    by_reason = {
        r: [s["record_ts"] - s["event_ts"] for s in seen if s["reason"] == r]
        for r in sorted({s["reason"] for s in seen})
    }
    rows = [
        [name, len(v), percentile(v, 50), percentile(v, 95), percentile(v, 99), max(v) if v else float("nan")]
        for name, v in [
            ("all (record timestamp)", lat),
            ("all (received)", recv),
            *[(f"{r} (record timestamp)", v) for r, v in by_reason.items()],
        ]
    ]
    print_table(
        f"end-to-end latency, seconds: {len(events)} interactions of {users} users at {achieved:.1f}/s, "
        f"policy {policy.split('?')[0].rsplit('/', 1)[-1]}",
        ["profiles", "n", "p50 s", "p95 s", "p99 s", "max s"],
        rows,
        note="regen batch window 0.5 s (LETTINGO_REGEN_BATCH_SECONDS); exploration off; drift cooldown 0",
    )
    figures = {
        "interactions": len(events),
        "users": users,
        "target_rate_per_second": rate,
        "achieved_rate_per_second": achieved,
        "policy": policy,
        "worker_settings": overrides,
        "profiles": len(seen),
        "latency_s": {
            "p50": percentile(lat, 50),
            "p95": percentile(lat, 95),
            "p99": percentile(lat, 99),
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
