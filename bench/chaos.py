"""Chaos: interactions replayed into a fleet of workers while SIGKILLs hit them at random moments, compared with a
clean single-worker run of the same events.

The clean run applies every event with one worker and snapshots each user's state (count and kept event ids) and
serving profile. The chaos run starts ``workers`` workers in one group, replays the same events at a paced rate
and, meanwhile, SIGKILLs a random live worker every ``kill_every_s`` (during steady processing, rebalances, table
flushes and generation batches alike: the moments are random), restarting each at once. Once every event is sent
and the killing stops, the fleet drains, and every user's state and profile is compared:

- ``lost``: events of the clean run the chaos run's states do not count;
- ``doubled``: events counted more than once (a count above the clean one);
- ``mismatched_profiles``: users whose serving profile (id and text) differs.

Failover time is the time from a kill to every partition the dead worker was serving being active on a live
worker again; measured with standby replicas (the default) and without (``table_standby_replicas=0``).
``python -m bench --only chaos`` writes bench/results/chaos.json; tests/test_streams_chaos.py runs a short one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import DATASET, HOME, Options, median, print_table, write_result
from bench.kafka_util import run_settings, table_contents
from bench.worker import BenchWorker, remove_home
from lettingo.data import load_dataset
from lettingo.user_state import UserState
from streams.kafka.producer import record_producer
from streams.kafka.topics import create_topics, delete_run_topics
from streams.replay import to_interaction, to_item_record
from streams.settings import StreamSettings

KEPT_LOGS = HOME / "bench-logs" / "chaos"
# Quick streams: small explore, cold start after 5, no model: profiles from a deterministic writer.
WORKER = dict(
    explore_rate=0.0,
    worker_cold_start_after=5,
    regen_batch_seconds=0.2,
    kafka_session_timeout_seconds=6,
    kafka_heartbeat_seconds=1,
)


@dataclass
class Snapshot:
    counts: dict[str, int]
    events: dict[str, tuple[str, ...]]
    profiles: dict[str, tuple[str, str, str]]  # profile id, text, the history it describes
    requested: dict[str, str]  # the history of each user's last profile request

    @property
    def answered(self) -> bool:
        """Every user's last request has its profile: a regenerate partition still catching up (sought back
        after a kill, waiting out a rebalance) can leave the tables unchanged for longer than ``stable_s``."""
        return all(self.profiles.get(u, ("", "", ""))[2] == ref for u, ref in self.requested.items())


@dataclass
class Fleet:
    settings: StreamSettings
    size: int
    overrides: dict[str, Any]
    workers: list[BenchWorker] = field(default_factory=list)
    failovers: list[float] = field(default_factory=list)
    kills: int = 0

    def start(self, timeout_s: float = 420) -> None:
        """Start every worker at once (one after the other, each joining rebalances the group again)."""
        self.workers = [BenchWorker(self.settings, **self.overrides) for _ in range(self.size)]
        errors: list[BaseException] = []

        def start(worker: BenchWorker) -> None:
            try:
                worker.start(timeout_s=timeout_s)
            except (RuntimeError, TimeoutError) as e:
                errors.append(e)

        threads = [threading.Thread(target=start, args=(w,)) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a random live worker, start a new one in its place, and time the failover in a thread."""
        live = [w for w in self.workers if w.proc and w.proc.poll() is None]
        if not live:
            return
        victim = rng.choice(live)
        serving = active(victim, self.settings)
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(30)
        killed = time.monotonic()
        self.kills += 1
        self.workers.remove(victim)
        replacement = BenchWorker(self.settings, **self.overrides)
        self.workers.append(replacement)
        threading.Thread(target=self._start_quietly, args=(replacement,), daemon=True).start()
        threading.Thread(target=self._time_failover, args=(serving, killed), daemon=True).start()

    def _start_quietly(self, worker: BenchWorker) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):  # killed again before it was ready: replaced later
            worker.start(timeout_s=300)

    def _time_failover(self, serving: set[str], killed: float, timeout_s: float = 180) -> None:
        while serving and time.monotonic() - killed < timeout_s:
            covered = set().union(*(active(w, self.settings) for w in list(self.workers)))
            if serving <= covered:
                self.failovers.append(time.monotonic() - killed)
                return
            time.sleep(0.25)

    def settle(self, timeout_s: float = 300) -> None:
        """Every worker of the fleet up and ready: a replacement that died is started again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [w for w in self.workers if w.proc is not None and w.proc.poll() is not None]
            for w in dead:
                self.workers.remove(w)
                self.workers.append(BenchWorker(self.settings, **self.overrides).start())
            if not dead and all((w.get("/ready") or {}).get("ready") for w in self.workers):
                return
            time.sleep(1)
        raise TimeoutError(f"the fleet did not settle in {timeout_s}s")

    def stop(self) -> None:
        # All asked at once: stopped one by one, each leaving worker makes the others rebalance before they stop.
        for w in self.workers:
            w.terminate()
        for w in self.workers:
            w.stop()


def active(worker: BenchWorker, settings: StreamSettings) -> set[str]:
    health = worker.get("/health") or {}
    prefix = settings.topic("interactions") + ":"
    return {p for p in health.get("active_partitions", []) if p.startswith(prefix)}


def events_of(limit: int) -> tuple[list, list]:
    dataset = load_dataset(DATASET)
    ratings = sorted((r for rs in dataset.ratings_by_user.values() for r in rs), key=lambda r: (r.ts, r.user_id))
    interactions = [to_interaction(dataset.name, r) for r in ratings[:limit]]
    return [to_item_record(i) for i in dataset.items.values()], interactions


async def send(settings: StreamSettings, items: list, interactions: list, rate: float) -> None:
    async with record_producer(settings) as producer:
        for item in items:
            await producer.send("items", item.item_id, item)
        started = time.monotonic()
        for n, interaction in enumerate(interactions):
            if rate and n % 50 == 0:
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            await producer.send("interactions", interaction.user_id, interaction)


def snapshot(settings: StreamSettings) -> Snapshot:
    states = {k: UserState.from_bytes(v) for k, v in table_contents(settings, "user_state").items()}
    profiles = {}
    for user, value in table_contents(settings, "profiles").items():
        current = json.loads(value)["current"]  # lettingo.regeneration.ProfileHistory, read without the Faust app
        profiles[user] = (current["profile_id"], current["text"], current.get("history_ref", ""))
    return Snapshot(
        {u: s.count for u, s in states.items()},
        {u: tuple(e.event_id for e in s.events) for u, s in states.items()},
        profiles,
        {u: json.loads(s.last_request)["history_ref"] for u, s in states.items() if s.last_request},
    )


def drained(
    fleet: list[BenchWorker], settings: StreamSettings, expected: int, stable_s: float = 8.0, timeout_s: float = 900
) -> Snapshot:
    """Wait until every event is applied, every user's last profile request answered, and the state and profiles
    stop changing for ``stable_s``."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        snap = snapshot(settings)
        if sum(snap.counts.values()) >= expected and snap.answered and snap == last:
            if time.monotonic() - since >= stable_s:
                return snap
        else:
            last, since = snap, time.monotonic()
        time.sleep(2)
    raise TimeoutError(f"not drained in {timeout_s}s: {sum((last or snap).counts.values())} of {expected} applied")


def compare(clean: Snapshot, chaos: Snapshot) -> dict[str, int]:
    lost = sum(max(0, n - chaos.counts.get(u, 0)) for u, n in clean.counts.items())
    doubled = sum(max(0, n - clean.counts.get(u, 0)) for u, n in chaos.counts.items())
    history = sum(clean.events[u] != chaos.events.get(u) for u in clean.events)
    differ = sorted(
        u for u in clean.profiles.keys() | chaos.profiles.keys() if clean.profiles.get(u) != chaos.profiles.get(u)
    )
    examples = [
        {"user": u, "clean": describe(clean.profiles.get(u)), "chaos": describe(chaos.profiles.get(u))}
        for u in differ[:5]
    ]
    return {
        "lost": lost,
        "doubled": doubled,
        "mismatched_histories": history,
        "mismatched_profiles": len(differ),
        "mismatch_examples": examples,
    }


def describe(profile: tuple[str, str, str] | None) -> dict[str, str] | None:
    return None if profile is None else {"profile_id": profile[0], "history_ref": profile[2], "text": profile[1][:160]}


def run_chaos(events: int, kills: int, workers: int, rate: float, seed: int = 7, standby: int = 1) -> dict[str, Any]:
    """One clean run and one chaos run of the first ``events`` interactions; the comparison and timings."""
    items, interactions = events_of(events)
    rng = random.Random(seed)
    clean_settings, chaos_settings = run_settings("chaos-clean"), run_settings("chaos")
    overrides = {**WORKER, "table_standby_replicas": standby}
    out: dict[str, Any] = {
        "events": events,
        "users": len({i.user_id for i in interactions}),
        "workers": workers,
        "standby_replicas": standby,
        "rate_per_s": rate,
    }
    fleets: list[Fleet] = []
    try:
        # The catalogue goes in before the workers start: a rating of an item the worker does not know yet is
        # applied without its attributes, and which items a worker knows would then depend on timing.
        asyncio.run(create_topics(clean_settings))
        asyncio.run(send(clean_settings, items, [], rate=0))
        clean = Fleet(clean_settings, 1, overrides)
        fleets.append(clean)
        clean.start()
        asyncio.run(send(clean_settings, [], interactions, rate=0))
        clean_snap = drained(clean.workers, clean_settings, events)
        clean.stop()

        asyncio.run(create_topics(chaos_settings))
        asyncio.run(send(chaos_settings, items, [], rate=0))
        fleet = Fleet(chaos_settings, workers, overrides)
        fleets.append(fleet)
        fleet.start()
        sender = threading.Thread(target=lambda: asyncio.run(send(chaos_settings, [], interactions, rate)))
        started = time.monotonic()
        sender.start()
        duration = events / rate
        for k in range(kills):  # evenly spread with jitter: each kill lands at a random moment of its slot
            slot = duration / kills
            time.sleep(max(0.0, started + k * slot + rng.uniform(0, slot) - time.monotonic()))
            fleet.kill_one(rng)
        sender.join()
        fleet.settle()
        chaos_snap = drained(fleet.workers, chaos_settings, events)
        out.update(
            compare(clean_snap, chaos_snap),
            kills=fleet.kills,
            chaos_seconds=time.monotonic() - started,
            failover_s=sorted(fleet.failovers),
            failover_median_s=median(fleet.failovers) if fleet.failovers else None,
            failover_max_s=max(fleet.failovers, default=None),
        )
        fleet.stop()
        return out
    finally:
        for fleet in fleets:  # also after a failure: no worker outlives the run
            fleet.stop()
        for s in (clean_settings, chaos_settings):  # the workers' logs outlive the run's folder
            for log in s.home.glob("worker-*.log"):
                KEPT_LOGS.mkdir(parents=True, exist_ok=True)
                shutil.copy(log, KEPT_LOGS / f"{s.app.id}-{log.name}")
        for s in (clean_settings, chaos_settings):
            asyncio.run(delete_run_topics(s))
            remove_home(s)


def run(opts: Options) -> dict[str, Any]:
    started = time.perf_counter()
    if opts.quick:
        main = run_chaos(events=3000, kills=8, workers=2, rate=60)
        without = run_chaos(events=1000, kills=3, workers=2, rate=60, standby=0)
    else:
        main = run_chaos(events=20_000, kills=50, workers=3, rate=60)
        without = run_chaos(events=4000, kills=10, workers=2, rate=60, standby=0)
    figures = {
        **main,
        "failover_without_standby": {
            k: without[k]
            for k in ("kills", "failover_median_s", "failover_max_s", "lost", "doubled", "mismatched_profiles")
        },
    }
    print_table(
        "chaos",
        ["run", "events", "kills", "lost", "doubled", "mismatched profiles", "failover median s"],
        [
            [
                "standby 1",
                main["events"],
                main["kills"],
                main["lost"],
                main["doubled"],
                main["mismatched_profiles"],
                main["failover_median_s"],
            ],
            [
                "standby 0",
                without["events"],
                without["kills"],
                without["lost"],
                without["doubled"],
                without["mismatched_profiles"],
                without["failover_median_s"],
            ],
        ],
    )
    write_result("chaos", opts, figures, started)
    return figures
