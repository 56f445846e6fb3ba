"""The main job on its local defaults: broker, nano policy, frozen f_Rec, a worker and the trainer, a replay of
the dataset, live progress, and a report under ``runs/<timestamp>/``.

The test users' validation and target ratings are never replayed, so they cannot feed rewards or pairs: the
report's table measures generalisation to held-out items of held-out users.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from rich.console import Console
from rich.live import Live

from lettingo.data import Dataset, DatasetSplit, load_dataset, split_dataset
from lettingo.errors import LettingoError
from lettingo.logsafe import configure_safe_logging
from lettingo.registry import ModelRegistry
from lettingo.serving import label_of
from streams.demo.processes import Children
from streams.demo.progress import WATCHED, Progress, Snapshot, worker_events, worker_health
from streams.kafka import broker
from streams.kafka.offsets import TopicCounter
from streams.kafka.topics import create_topics
from streams.replay import replay
from streams.settings import StreamSettings

log = logging.getLogger(__name__)


class DemoError(LettingoError, RuntimeError):
    """A part of the demo failed; the message names its log."""


@dataclass(frozen=True)
class DemoConfig:
    dataset: Path
    quick: bool = False
    users: int | None = None  # a subset of users (quick mode picks 60)
    # Each user's latest ratings only (quick mode: 120): a few heavy raters would otherwise set the stream's length.
    max_ratings_per_user: int | None = None
    rate: float = 300.0  # interactions/s: steady enough for generation and task evaluation to keep up
    # The trainer's round size. A full replay closed about 260 rounds in all (one pair each), so 200 lets the
    # first round land while the replay still runs, and the rest of it runs under the new version.
    min_pairs: int = 200
    # DESIGN's recipe for pairs DPO can learn from: several samples per round, each scored on many later ratings,
    # best against worst; a first profile only once there is some history for the styles to differ on.
    explore_rate: float = 1.0
    explore_k: int = 7  # explored beside the served profile: 8 candidates a round
    pairs_min_rewards: int = 10
    cold_start_after: int = 20
    trainer_kind: str = "full"
    report_users: int | None = None  # test users in the report (None: all)
    gate_users: int = 60  # validation users the trainer's gate writes profiles for
    samples_per_user: int = 4  # generator profiles per test user in the report, at temperature 1.0
    settle_timeout_s: float = 900.0  # how long to wait for the worker and trainer after the replay
    runs_root: Path = Path("runs")
    seed: int = 13

    @classmethod
    def for_mode(cls, dataset: Path, quick: bool, **overrides: Any) -> DemoConfig:
        base = cls(dataset=dataset, quick=quick)
        if quick:
            base = replace(
                base,
                users=60,
                max_ratings_per_user=120,
                rate=1000.0,
                min_pairs=16,
                gate_users=10,
                samples_per_user=2,
                settle_timeout_s=300,
                explore_k=3,
                pairs_min_rewards=3,
                cold_start_after=10,
                trainer_kind="lora",
            )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def held_out(dataset: Dataset, split: DatasetSplit) -> set[tuple[str, str, int]]:
    """(user, item, ts) of the ratings no reward or pair may see: every test user's validation and target rating
    (the report's targets), and every validation user's latest ratings, which the trainer's gate scores."""
    from trainer.task_eval import TARGETS_PER_USER

    latest = {**{u: 2 for u in split.test}, **{u: 1 + TARGETS_PER_USER for u in split.validation}}
    out = set()
    for user, count in latest.items():
        for rating in dataset.ratings_by_user.get(user, [])[-count:]:
            out.add((rating.user_id, rating.item_id, rating.ts))
    return out


def subset(
    dataset: Dataset, split: DatasetSplit, users: int | None, max_ratings: int | None = None
) -> tuple[Dataset, DatasetSplit]:
    """Keep about ``users`` users, in the split's proportions, so the groups stay the same users; with
    ``max_ratings``, only each user's latest ratings (the held-out ones are the latest, so they stay)."""
    if users is None and max_ratings is None:
        return dataset, split
    groups = ("train", "validation", "test")
    keep = {g: list(getattr(split, g)) for g in groups}
    if users is not None:
        total = sum(len(members) for members in keep.values())
        keep = {g: members[: max(1, round(users * len(members) / total))] for g, members in keep.items()}
    chosen = {u for group in keep.values() for u in group}
    latest = slice(-max_ratings, None) if max_ratings else slice(None)
    small = Dataset(
        dataset.name,
        dataset.items,
        {u: list(rs[latest]) for u, rs in dataset.ratings_by_user.items() if u in chosen},
        dataset.rating_scale,
    )
    return small, DatasetSplit(tuple(keep["train"]), tuple(keep["validation"]), tuple(keep["test"]), split.cfg)


def replayed(dataset: Dataset, split: DatasetSplit) -> Dataset:
    hold = held_out(dataset, split)
    kept = {u: [r for r in rs if (r.user_id, r.item_id, r.ts) not in hold] for u, rs in dataset.ratings_by_user.items()}
    return Dataset(dataset.name, dataset.items, kept, dataset.rating_scale, dataset.item_popularity)


class Demo:
    def __init__(self, settings: StreamSettings, config: DemoConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console()
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = (config.runs_root / self.run_id).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.web_port = _free_port()
        # Topics and the consumer group are the run's own: a rerun never sees an earlier run's records.
        self.settings = settings.replace(
            topics={"prefix": f"{settings.topics.prefix}demo-{self.run_id}-"},
            app={"id": f"lettingo-demo-{self.run_id}"},
        )
        self.progress = Progress()

    @property
    def registry_root(self) -> Path:
        """The run's own registry, where the trainer publishes every round (champion or refused)."""
        return self.run_dir / "registry"

    def say(self, text: str) -> None:
        self.console.print(f"[bold]demo[/bold] {text}")

    def child_env(self, nano: Path, reader: Path) -> dict[str, str]:
        s = self.settings
        return {
            "LETTINGO_HOME": str(s.home.resolve()),
            "LETTINGO_KAFKA_BOOTSTRAP": s.bootstrap,
            "LETTINGO_TOPIC_PREFIX": s.topics.prefix,
            "LETTINGO_APP_ID": s.app.id,
            "LETTINGO_WEB_PORT": str(self.web_port),
            "LETTINGO_DATASET": str(self.config.dataset.resolve()),
            "LETTINGO_WORKER_POLICY": f"hf:{nano}",
            "LETTINGO_EXPLORE_POLICY": f"hf:{nano}",
            "LETTINGO_READER_PATH": str(reader),
            "LETTINGO_GATE_USERS": str(self.config.gate_users),
            "LETTINGO_EXPLORE_RATE": str(self.config.explore_rate),
            "LETTINGO_EXPLORE_K": str(self.config.explore_k),
            "LETTINGO_PAIRS_MIN_REWARDS": str(self.config.pairs_min_rewards),
            "LETTINGO_PAIRS_MAX_PER_ROUND": "1",
            "LETTINGO_WORKER_COLD_START_AFTER": str(self.config.cold_start_after),
            # Worker and trainer share the cores; torch's spinning OpenMP threads slow both many times over.
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }

    async def _watch(self, children: Children, phase: str, counter: TopicCounter) -> Snapshot:
        try:
            counts = await counter.counts(WATCHED)
        except KafkaError as e:  # a broker too busy to answer in time: show the last counts, poll again next time
            log.warning("topic counts unavailable (%s); showing the last ones", e)
            counts = self.progress.history[-1].counts if self.progress.history else {}
        health = worker_health(self.web_port) or {}
        snapshot = Snapshot(
            time.time(), counts, worker_events(self.web_port) or 0.0, health.get("model_version"), phase
        )
        self.progress.add(snapshot)
        for child in children.dead():
            raise DemoError(
                f"the {child.name} exited with code {child.proc.returncode}; see {child.log}. "
                f"Its log ends:\n{child.tail(8)}"
            )
        return snapshot

    def _show(self, live: Live) -> None:
        live.update(self.progress.table())  # off a terminal, Live prints only the last one, when it stops
        if not self.console.is_terminal and len(self.progress.history) % 10 == 1:
            self.console.print(self.progress.line(), soft_wrap=True, highlight=False)

    async def _catalogue_first(self, children: Children, data: Dataset, counter: TopicCounter, live: Live) -> None:
        """Send the catalogue and wait until the worker holds it: a profile request that finds an item missing
        from the worker's catalogue leaves that rating out of the prompt (the first quick runs wrote a third of
        their cold-start profiles from an empty history)."""
        await replay(self.settings, Dataset(data.name, data.items, {}, data.rating_scale))
        deadline = time.monotonic() + self.config.settle_timeout_s
        while time.monotonic() < deadline:
            await self._watch(children, "loading the catalogue", counter)
            self._show(live)
            if int((worker_health(self.web_port) or {}).get("catalog_items", 0)) >= len(data.items):
                return
            await asyncio.sleep(1.0)
        raise DemoError(f"the worker did not load the {len(data.items)}-item catalogue in time; see its log")

    async def _stream(self, children: Children, data: Dataset, live: Live) -> None:
        async with TopicCounter(self.settings) as counter:
            await self._catalogue_first(children, data, counter, live)
            task = asyncio.create_task(replay(self.settings, data, rate=self.config.rate, send_items=False))
            while not task.done():
                await self._watch(children, "replaying", counter)
                self._show(live)
                await asyncio.sleep(1.0)
            sent = (await task).interactions
            deadline = time.monotonic() + self.config.settle_timeout_s
            registry = ModelRegistry(self.registry_root)
            while time.monotonic() < deadline:
                snap = await self._watch(children, "settling: worker catching up, trainer rounds", counter)
                self._show(live)
                caught_up = snap.processed >= sent
                # every round lands in the registry; one the gate refused never reaches model-versions, and a
                # champion is shown once the worker serves it (the hot swap)
                champion = registry.champion()
                swapped = champion is None or snap.model_version == label_of(registry.model_version_record(champion))
                if caught_up and registry.versions() and swapped:
                    break
                await asyncio.sleep(1.0)

    def run(self) -> Path:
        from lettingo.nano.build import build_nano
        from lettingo.nano.config import NanoConfig
        from lettingo.recommenders import TextEncoder, build_or_load_reader
        from streams.demo.report import write_report

        # this process replays and follows the topics: its Kafka clients flood in an outage
        configure_safe_logging(json_lines=self.settings.log_format == "json")
        cfg = self.config
        (self.run_dir / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2))
        self.say(broker.start(self.settings))
        asyncio.run(create_topics(self.settings))
        full = load_dataset(cfg.dataset)
        dataset, split = subset(full, split_dataset(full), cfg.users, cfg.max_ratings_per_user)
        self.say(
            f"{dataset.name}: {len(dataset.ratings_by_user)} users ({len(split.train)} train / "
            f"{len(split.validation)} validation / {len(split.test)} test), {dataset.n_ratings} ratings"
        )
        started = time.monotonic()
        nano = build_nano(cfg.dataset, self.settings.path("models"), NanoConfig.quick() if cfg.quick else NanoConfig())
        self.say(f"nano policy: {nano} ({time.monotonic() - started:.0f} s)")
        started = time.monotonic()
        reader, reader_dir = build_or_load_reader(
            full, split_dataset(full), self.settings.path("models"), TextEncoder(self.settings.cache_path)
        )
        self.say(f"frozen f_Rec: {reader_dir} ({time.monotonic() - started:.0f} s)")
        registry_root = self.registry_root
        with Children(self.run_dir, self.child_env(nano, reader_dir)) as children:
            children.start("worker", "worker")
            children.start(
                "trainer",
                "train",
                "--watch",
                "--registry",
                str(registry_root),
                "--base-model",
                str(nano),
                "--min-pairs",
                str(cfg.min_pairs),
                "--kind",
                cfg.trainer_kind,
                "--task-eval",
                "trainer.task_eval:validation_task",
                "--wait",
                "10",
            )
            with Live(self.progress.table(), console=self.console, refresh_per_second=2) as live:
                asyncio.run(self._stream(children, replayed(dataset, split), live))
        self.say("stream stopped; writing the report (profiles for the test users, both tasks, every system)")
        report = write_report(self, dataset, split, reader, nano, registry_root)
        self.console.print(report.read_text(), soft_wrap=True, highlight=False, markup=False)
        self.say(f"report: {report}")
        if self.settings.uses_local_broker:
            self.say(
                f"the local broker stays up at {self.settings.bootstrap} for the next run; "
                "`lettingo broker stop` stops it"
            )
        return report
