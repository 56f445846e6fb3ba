"""What every agent of one worker process shares: the item catalogue, the serving policy, f_Rec, an executor."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig
from lettingo.records import Item
from lettingo.scoreboard import AttributeMentionReader, SentimentReader
from lettingo.serving import PolicyHolder, ProfileGenerator, make_generator
from lettingo.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    catalog: dict[str, Item]
    policy: PolicyHolder
    explorer: ProfileGenerator
    reader: SentimentReader
    labels: LabelScheme = field(default_factory=LabelScheme)
    # Model calls run here, never on the event loop; one thread keeps a CPU model's batches in order.
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model"))
    catalog_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def drift(self) -> DriftConfig:
        s = self.settings
        return DriftConfig(
            s.drift_threshold, s.drift_min_new_events, s.drift_cooldown_seconds, s.worker_cold_start_after
        )

    @property
    def keep_events(self) -> int:
        return self.settings.worker_history_window + self.settings.worker_history_max


def build_runtime(settings: Settings) -> Runtime:
    catalog: dict[str, Item] = {}
    return Runtime(
        settings=settings,
        catalog=catalog,
        policy=PolicyHolder.from_spec(settings.worker_policy),
        explorer=make_generator(settings.explore_policy),
        reader=AttributeMentionReader(catalog),
    )
