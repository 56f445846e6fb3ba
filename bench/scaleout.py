"""Scale-out: 1, 2 and 4 workers in one consumer group on an 8-partition ``interactions`` topic; interactions
applied per second by the whole group and per CPU second the workers spent.

Each run has topics, app id and homes of its own. The catalogue is written, the workers are started together
(the project's fleet settings: one standby replica of each table partition) and the harness waits until every
worker has loaded the catalogue and the group has settled (every interactions partition active on exactly one
worker), so start-up and the join rebalances are not counted. Then the interactions are written as fast as the
broker takes them (a raw producer: about 100,000/s, far ahead of the workers, so they read a backlog) and the
group's progress, ``lettingo_events_total{topic="interactions"}`` summed over the workers, is polled. The rate is
taken from the first poll that sees an applied interaction to the one that sees the last, and over 10 % to 90 %
of them; the workers' CPU seconds (user + system, psutil, children included) over the same window give the rate
per CPU second. Ingest is isolated as in the ingest benchmark (the cheap ``writer:combined`` policy, exploration
off) and, further, no profile is requested (cold start after more interactions than any user has), so the figure
is ingest, state and drift scoring only.

The machine is reported beside each figure: the CPU seconds the machine could give in the window (cores x wall
seconds), what the workers used, what every process used (busy share of all cores: the broker, this harness and
other jobs included) and the load average. When the workers together use close to all the cores, more workers
cannot add throughput here; per CPU second is the figure that carries to a bigger machine.

Two and four workers run with the fleet's default of one standby replica and with none: a standby applies the
other workers' changelogs too, CPU that a group of one does not spend. The interactions are passes over the
MovieLens ratings, each with event ids of its own (200,000 in the full run, 30,000 quick), so the window is long
enough to time at a 0.25 s poll. ``python -m bench --only scaleout`` writes bench/results/scaleout.json; repeats
take turns (every configuration once, then again) so that a change in the machine's load touches each alike.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psutil

from bench import kafka_util
from bench.chaos import Fleet
from bench.common import Options, median, print_table, write_result
from bench.ingest import WORKER_SETTINGS as INGEST_SETTINGS
from bench.ingest import Feeder, Messages, produce, window_rate
from bench.soak import applied, interactions
from bench.worker import BenchWorker, remove_home
from streams.kafka.topics import delete_run_topics

PARTITIONS = 8
# No cold start and no drift request: every worker's time goes to ingest (MovieLens' busiest user has 2,698 ratings).
WORKER_SETTINGS = {**INGEST_SETTINGS, "worker_cold_start_after": 1_000_000}
POLL_S = 0.25
STALL_S = 90.0  # no interaction applied for this long: the run failed (it is tried once more, on new topics)
MACHINE_LIMITED = 0.9  # share of all cores busy over the window
QUICK_EVENTS, FULL_EVENTS = 30_000, 200_000
# (workers, table standby replicas): the fleet's default is one standby; none shows what keeping it costs.
CONFIGS = ((1, 1), (2, 1), (4, 1), (2, 0), (4, 0))


def load_messages(n: int) -> Messages:
    """The catalogue and ``n`` interactions: passes over the MovieLens ratings in time order, each pass with event
    ids of its own (the dataset has about 100,000), as (key, value) messages."""
    items, events = interactions(passes=-(-n // 100_000) + 1)
    return Messages(
        items=[(i.item_id.encode(), i.to_bytes()) for i in items],
        interactions=[(e.user_id.encode(), e.to_bytes()) for e in events[:n]],
    )


def worker_cpu(worker: BenchWorker) -> float:
    """User + system CPU seconds of a worker process and its live children."""
    try:
        proc = psutil.Process(worker.proc.pid)  # type: ignore[union-attr]
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def machine_busy() -> float:
    """CPU seconds every process of the machine has used since boot (all cores, idle and iowait excluded)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def partitions_of(health: dict, topic: str) -> list[str]:
    """A worker's active partitions of ``topic``, from its /health."""
    return sorted(p for p in health.get("active_partitions", []) if p.rsplit(":", 1)[0] == topic)


def wait_settled(workers: list[BenchWorker], topic: str, items_topic: str, items: int, timeout_s: float = 300) -> float:
    """Seconds until the group has validated the catalogue, every worker holds it (the valid items), and each
    interactions partition is active on exactly one worker, every worker holding some, the same on two polls in a
    row."""
    started = time.monotonic()
    previous: list[list[str]] | None = None
    while time.monotonic() - started < timeout_s:
        healths = [w.get("/health") or {} for w in workers]
        parts = [partitions_of(h, topic) for h in healths]
        flat = [p for ps in parts for p in ps]
        validated = sum(  # the grouped agent's share of the start-up work: valid items and dead letters
            w.counter("lettingo_events_total", topic="items")
            + w.counter("lettingo_dead_letters_total", topic=items_topic)
            for w in workers
        )
        catalogue = validated >= items and all(h.get("catalog_items", 0) >= items * 9 // 10 for h in healths)
        if catalogue and all(parts) and len(flat) == len(set(flat)) == PARTITIONS and parts == previous:
            return time.monotonic() - started
        previous = parts
        time.sleep(1.0)
    raise TimeoutError(f"the group did not settle in {timeout_s} s: {previous}")


def run_group(size: int, standby: int, messages: Messages, timeout_s: float = 900) -> dict[str, Any]:
    """Start ``size`` workers keeping ``standby`` standby replicas, write the interactions and time the group
    until it has applied all of them."""
    settings = kafka_util.run_settings(f"scaleout{size}", partitions=PARTITIONS)
    n = len(messages.interactions)
    fleet = Fleet(settings, size, {**WORKER_SETTINGS, "table_standby_replicas": standby})
    try:
        produce(settings, "items", messages.items)
        fleet.start()  # together: create_topics makes the changelogs before Faust starts
        workers = fleet.workers
        settle_s = wait_settled(workers, settings.topic("interactions"), settings.topic("items"), len(messages.items))
        before = applied(workers)
        load_before = os.getloadavg()
        feeder = Feeder(settings, messages)
        samples: list[tuple[float, float, float, float]] = []  # time, applied, workers' CPU, machine busy CPU
        deadline = time.monotonic() + timeout_s
        progressed = time.monotonic()
        while time.monotonic() < deadline:
            dead = [w for w in workers if w.proc is not None and w.proc.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker exited with {dead[0].proc.returncode}:\n{dead[0].log_tail()}")  # type: ignore[union-attr]
            feeder.check()
            done = applied(workers) - before
            samples.append((time.monotonic(), done, sum(worker_cpu(w) for w in workers), machine_busy()))
            if done >= n:
                break
            if len(samples) > 1 and done > samples[-2][1]:
                progressed = time.monotonic()
            elif time.monotonic() - progressed > STALL_S:
                raise TimeoutError(
                    f"no progress for {STALL_S} s at {done:.0f} of {n}:\n"
                    + "\n".join(w.log_tail(1500) for w in workers)
                )
            time.sleep(POLL_S)
        sent = feeder.join()
        first = next((s for s in samples if s[1] > 0), None)
        last = samples[-1]
        if first is None or last[1] < n:
            raise TimeoutError(f"{last[1]:.0f} of {n} interactions applied in {timeout_s} s")
        wall = last[0] - first[0]
        cpu = last[2] - first[2]
        busy = last[3] - first[3]
        count = last[1] - first[1]
        cores = psutil.cpu_count() or 1
        return {
            "workers": size,
            "standby_replicas": standby if size > 1 else 0,
            "events": n,
            "written": sent,
            "settle_seconds": settle_s,
            "seconds_first_to_last": wall,
            "interactions_per_s": count / wall if wall > 0 else float("nan"),
            "interactions_per_s_10_90": window_rate([(t, d) for t, d, _, _ in samples], n),
            "worker_cpu_seconds": cpu,
            "per_cpu_second": count / cpu if cpu > 0 else float("nan"),
            "cpu_seconds_available": cores * wall,
            "worker_cpu_share_of_machine": cpu / (cores * wall) if wall > 0 else float("nan"),
            "machine_busy_share": busy / (cores * wall) if wall > 0 else float("nan"),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "peak_rss_mib": [w.peak_rss / 2**20 for w in workers],
        }
    finally:
        fleet.stop()
        asyncio.run(delete_run_topics(settings))
        remove_home(settings)


def summarise(runs: list[dict[str, Any]], configs: tuple[tuple[int, int], ...]) -> list[dict[str, Any]]:
    """Medians per (workers, standby replicas), and the throughput relative to one worker."""
    rows = []
    for size, standby in configs:
        mine = [r for r in runs if r["workers"] == size and r["standby_replicas"] == (standby if size > 1 else 0)]
        rows.append(
            {
                "workers": size,
                "standby_replicas": standby if size > 1 else 0,
                "runs": len(mine),
                "interactions_per_s": median([r["interactions_per_s"] for r in mine]),
                "interactions_per_s_10_90": median([r["interactions_per_s_10_90"] for r in mine]),
                "per_cpu_second": median([r["per_cpu_second"] for r in mine]),
                "worker_cpu_share_of_machine": median([r["worker_cpu_share_of_machine"] for r in mine]),
                "machine_busy_share": median([r["machine_busy_share"] for r in mine]),
                "load_average_1m_after": median([r["load_average_after"][0] for r in mine]),
            }
        )
    one = next((r["interactions_per_s"] for r in rows if r["workers"] == 1), float("nan"))
    for row in rows:
        row["speedup_vs_one_worker"] = row["interactions_per_s"] / one
    return rows


def run(opts: Options, configs: tuple[tuple[int, int], ...] = CONFIGS) -> dict[str, Any]:
    started = time.perf_counter()
    messages = load_messages(QUICK_EVENTS if opts.quick else FULL_EVENTS)
    runs, failures = [], []
    for repeat in range(opts.repeats):
        for size, standby in configs:
            for attempt in range(2):
                try:
                    runs.append(run_group(size, standby, messages))
                    break
                except (RuntimeError, TimeoutError) as e:
                    print(
                        f"scale-out {size} workers, standby {standby}, try {attempt + 1}: {str(e)[:3000]}", flush=True
                    )
                    failures.append(
                        {"workers": size, "standby_replicas": standby, "repeat": repeat, "error": str(e)[:500]}
                    )
    rows = summarise(runs, configs)
    cores = psutil.cpu_count() or 1
    print_table(
        f"scale-out: {len(messages.interactions):,} MovieLens interactions, {PARTITIONS} partitions, one group "
        "(medians)",
        [
            "workers",
            "standby",
            "interactions/s",
            "10-90 %",
            "per CPU s",
            "speedup",
            "workers' CPU / machine",
            "machine busy",
        ],
        [
            [
                r["workers"],
                r["standby_replicas"],
                r["interactions_per_s"],
                r["interactions_per_s_10_90"],
                r["per_cpu_second"],
                f"{r['speedup_vs_one_worker']:.2f}x",
                f"{r['worker_cpu_share_of_machine']:.0%}",
                f"{r['machine_busy_share']:.0%}",
            ]
            for r in rows
        ],
        note=(
            f"{cores} cores: the machine gives {cores} CPU seconds a second; once the workers' share nears 100 % "
            "(the broker and the harness take the rest), more workers add no throughput here, and "
            "per CPU second is what carries over"
        ),
    )
    figures = {
        "partitions": PARTITIONS,
        "events": len(messages.interactions),
        "worker_settings": WORKER_SETTINGS,
        "cores": cores,
        "by_workers": rows,
        "workers": [r["workers"] for r in rows],
        "standby_replicas": [r["standby_replicas"] for r in rows],
        "interactions_per_s": [r["interactions_per_s"] for r in rows],
        "per_cpu_second": [r["per_cpu_second"] for r in rows],
        # every core busy (the broker, the harness and other jobs included): more workers cannot help here
        "machine_limited": [r["machine_busy_share"] >= MACHINE_LIMITED for r in rows],
        "runs": runs,
        "failed_runs": failures,
    }
    write_result("scaleout", opts, figures, started)
    return figures
