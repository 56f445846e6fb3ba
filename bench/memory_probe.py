"""Memory probe: one or more stream workers side by side, each on its own topics at the same paced load of
MovieLens interactions (as the soak sends them), sampling every worker's RSS, its split (``bench.soak``'s main
heap / other anonymous / mapped files) and its number of live SST files; prints and writes each worker's RSS
slope over the second half. A variant is ``name`` plus worker settings and environment, and may run its worker
under a wrapper (``heaptrack``) to attribute the native allocations by stack.

    python -m bench.memory_probe --shared --inside --minutes 6 --rate 600 \\
        --variant before:MEMPROBE_STANDBY_BUFFER=1000 --variant after [--wrap before="heaptrack -o /tmp/ht/w"]

``--inside`` puts ``bench/memory_probe_site`` on each worker's ``PYTHONPATH``: its ``sitecustomize`` writes glibc's
malloc figures and the RocksDB memory properties from inside the worker every 10 s to ``--out``'s folder
(``<pid>.tsv``, ``<pid>.rocks.tsv``) and reads the ``MEMPROBE_*`` variables a variant may set (see its docstring).

Each worker is stopped with SIGTERM to its Python process only, so a wrapper can finish writing its trace.
The figures go to ``--out`` (default ``/tmp/memory_probe/figures.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.chaos import WORKER
from bench.common import REPO
from bench.kafka_util import run_settings
from bench.soak import cache_mb, interactions, net_of, second_half, send, slope_per_min
from bench.worker import BenchWorker, remove_home
from streams.kafka.topics import create_topics, delete_run_topics
from streams.settings import StreamSettings

SITE = Path(__file__).with_name("memory_probe_site")


@dataclass
class Variant:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    wrap: list[str] = field(default_factory=list)


def parse_variant(text: str) -> Variant:
    """``name[:KEY=VALUE,KEY=VALUE]``: environment of the variant's worker on top of the soak's settings."""
    name, _, rest = text.partition(":")
    env = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return Variant(name, env)


class ProbeWorker(BenchWorker):
    """A :class:`BenchWorker` whose command may run under a wrapper, and whose memory is its Python process's."""

    def __init__(self, settings: StreamSettings, variant: Variant, **overrides: object) -> None:
        super().__init__(settings, **overrides)
        self.variant = variant
        self.env.update(variant.env)

    def start(self, loglevel: str = "info", timeout_s: float = 420) -> ProbeWorker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.variant.wrap, sys.executable, "-m", "streams.cli.worker", "-l", loglevel],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            h = self.get("/health")
            ready = h and all(h.get(k) for k in ("catalog_ready", "generators_ready", "evaluator_ready"))
            if ready and h.get("assigned_partitions"):
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"worker not ready in {timeout_s}s:\n{self.log_tail()}")

    def python(self) -> psutil.Process | None:
        """The worker's Python process: the child itself, or the wrapper's descendant running the worker."""
        try:
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                if "streams.cli.worker" in " ".join(p.cmdline()) and Path(p.exe()).name.startswith("python"):
                    return p
        except psutil.Error:
            pass
        return None

    def sample(self) -> dict[str, float]:
        p = self.python()
        out = {"rss": float("nan"), "heap": 0.0, "anon": 0.0, "file": 0.0}
        if p is None:
            return out
        try:
            out["rss"] = p.memory_info().rss / 2**20
            for m in p.memory_maps(grouped=True):
                kind = "heap" if m.path == "[heap]" else "file" if m.path.startswith("/") else "anon"
                out[kind] += m.rss / 2**20
            out["threads"] = p.num_threads()
        except psutil.Error:
            pass
        out["sst_files"] = sum(1 for _ in self.data_dir.rglob("*.sst")) if self.data_dir.exists() else 0
        return {k: round(v, 1) for k, v in out.items()}

    def stop(self, timeout_s: float = 120) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        p = self.python()
        if p is not None:
            p.send_signal(signal.SIGTERM)
        else:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def probe(variants: list[Variant], minutes: float, rate: float, sample_s: float, shared: bool = False) -> dict:
    """Each variant's worker on its own topics at ``rate``, or with ``shared`` all of them on one set of topics
    and one consumer group (as the soak's fleet, standbys included) at ``rate`` in all."""
    if shared:
        one = run_settings("memprobe")
        runs = [(v, one) for v in variants]
    else:
        runs = [(v, run_settings(f"memprobe-{v.name}")) for v in variants]
    topics = list({id(s): s for _, s in runs}.values())
    items, _ = interactions(0)
    _, events = interactions(passes=1 + int(minutes * 60 * rate // 100_000))
    workers: list[ProbeWorker] = []
    senders: list[threading.Thread] = []
    stop = threading.Event()
    try:
        for settings in topics:
            asyncio.run(create_topics(settings))
            asyncio.run(send(settings, "items", items, rate=0))
        for v, settings in runs:
            workers.append(ProbeWorker(settings, v, **WORKER, table_standby_replicas=1))
        threads = [threading.Thread(target=w.start) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for settings in topics:
            senders.append(
                threading.Thread(
                    target=lambda s=settings: asyncio.run(send(s, "interactions", events, rate, stop)), daemon=True
                )
            )
            senders[-1].start()
        series: list[list[dict]] = [[] for _ in workers]
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < minutes * 60:
            for n, w in enumerate(workers):
                series[n].append(
                    {
                        "t": round(elapsed, 1),
                        **w.sample(),
                        "applied": w.counter("lettingo_events_total", topic="interactions"),
                        "caches": cache_mb(w),
                    }
                )
            s = series[0][-1]
            print(
                " | ".join(f"{v.name} {x[-1]['rss']:.0f} MB" for v, x in zip(variants, series, strict=True)),
                f"t={s['t']:.0f}s",
                flush=True,
            )
            time.sleep(max(0.0, started + len(series[0]) * sample_s - time.monotonic()))
        out = {
            "minutes": minutes,
            "rate_per_s": rate,
            "shared_topics": shared,
            "load_average": os.getloadavg(),
            "variants": {},
        }
        for v, s, w in zip(variants, series, workers, strict=True):
            pts = [(p["t"], p["rss"]) for p in s]
            cached = {name: [(p["t"], p["caches"][name]) for p in s] for name in s[-1]["caches"]}
            out["variants"][v.name] = {
                "env": v.env,
                "wrap": v.wrap,
                "rss_first_last_mb": [pts[0][1], pts[-1][1]],
                "rss_slope_second_half_mb_per_min": round(slope_per_min(second_half(pts)), 2),
                "rss_slope_whole_mb_per_min": round(slope_per_min(pts), 2),
                "heap_slope_mb_per_min": round(slope_per_min([(p["t"], p["heap"]) for p in s]), 2),
                "anon_slope_mb_per_min": round(slope_per_min([(p["t"], p["anon"]) for p in s]), 2),
                "caches_first_last_mb": {name: [c[0][1], c[-1][1]] for name, c in cached.items()},
                "cache_slope_mb_per_min": {name: round(slope_per_min(c), 2) for name, c in cached.items()},
                "cache_caps_mb": cache_mb(w, bounds=True),
                "rss_net_of_caches_slope_second_half_mb_per_min": round(
                    slope_per_min(second_half(net_of(pts, cached["total"]))), 2
                ),
                "applied": s[-1]["applied"],
                "series": s,
            }
        return out
    finally:
        stop.set()
        for t in senders:
            t.join(30)
        for w in workers:
            w.stop()
        for settings in topics:
            asyncio.run(delete_run_topics(settings))
            remove_home(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=float, default=300, help="interactions/s sent to each worker")
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--variant", action="append", default=[], help="name[:KEY=VALUE,...] (repeatable)")
    parser.add_argument("--wrap", action="append", default=[], help="name=COMMAND: run that variant's worker under it")
    parser.add_argument("--shared", action="store_true", help="all workers on one set of topics, as a fleet")
    parser.add_argument("--inside", action="store_true", help="probe malloc and RocksDB from inside each worker")
    parser.add_argument("--out", type=Path, default=Path("/tmp/memory_probe/figures.json"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v) for v in args.variant or ["default"]]
    if args.inside:
        for v in variants:
            v.env = {"PYTHONPATH": f"{SITE}:{REPO}", "MEMPROBE_DIR": str(args.out.parent), **v.env}
    for w in args.wrap:
        name, _, command = w.partition("=")
        next(v for v in variants if v.name == name).wrap = command.split()
    out = probe(variants, args.minutes, args.rate, args.sample_seconds, args.shared)
    args.out.write_text(json.dumps(out, indent=1))
    for name, v in out["variants"].items():
        print(
            f"{name}: RSS {v['rss_first_last_mb'][0]:.0f} -> {v['rss_first_last_mb'][1]:.0f} MB, "
            f"slope {v['rss_slope_second_half_mb_per_min']:+.2f} MB/min (second half), "
            f"heap {v['heap_slope_mb_per_min']:+.2f}, anon {v['anon_slope_mb_per_min']:+.2f}, "
            f"caches {v['cache_slope_mb_per_min']} MB/min, "
            f"net of caches {v['rss_net_of_caches_slope_second_half_mb_per_min']:+.2f} MB/min, "
            f"applied {v['applied']:.0f}"
        )
    print(f"load average {out['load_average']}; figures in {args.out}")


if __name__ == "__main__":
    main()
