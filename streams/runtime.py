"""What every agent of one worker process shares: the item catalogue, the serving policy, the explorer, the
task evaluator (f_Rec) and the executor that runs model calls.

The models load off the event loop when the worker starts (:mod:`streams.agents.loading`); agents that need
them wait for :attr:`Runtime.generators_ready` / :attr:`Runtime.evaluator_ready`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

from lettingo.bounds import StateBounds
from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig
from lettingo.generators import Generator, make_generator
from lettingo.ingest import IngestLimits
from lettingo.records import Item
from lettingo.serving import PolicyHolder
from lettingo.settings import Settings
from lettingo.stream_eval import StreamEvalConfig, StreamTaskEvaluator, load_stream_evaluator


@dataclass
class Runtime:
    settings: Settings
    catalog: dict[str, Item] = field(default_factory=dict)
    labels: LabelScheme = field(default_factory=LabelScheme)
    policy: PolicyHolder | None = None
    explorer: Generator | None = None
    evaluator: StreamTaskEvaluator | None = None
    # Model calls run here, never on the event loop; one thread keeps a CPU model's batches in order.
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model"))
    # Task evaluation (f_Rec) has its own thread, so scoring never holds up generation.
    eval_executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="eval"))
    # The applied-offset guards of the agents that keep one (streams.applied): /ready reads their stalled partitions.
    applied_guards: list = field(default_factory=list)
    catalog_ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Forgotten users -> when (wall time, epoch s) they were forgotten; read whole from the erasures topic.
    erased: dict[str, float] = field(default_factory=dict)
    erasures_ready: asyncio.Event = field(default_factory=asyncio.Event)
    generators_ready: asyncio.Event = field(default_factory=asyncio.Event)
    evaluator_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @cached_property
    def drift(self) -> DriftConfig:
        s = self.settings
        return DriftConfig(
            s.drift_threshold, s.drift_min_new_events, s.drift_cooldown_seconds, s.worker_cold_start_after
        )

    def guard(self, applied):
        self.applied_guards.append(applied)
        return applied

    @property
    def stalled_partitions(self) -> list[str]:
        return sorted(name for guard in self.applied_guards for name in guard.stalled)

    def forgotten(self, user_id: str, arrived: float | None) -> bool:
        """Whether an event of ``user_id`` that reached Kafka at ``arrived`` predates the user's erasure (one
        after it is new data; one without a timestamp counts as old)."""
        erased_at = self.erased.get(user_id)
        return erased_at is not None and (arrived is None or arrived <= erased_at)

    @property
    def keep_events(self) -> int:
        return self.settings.worker_history_window + self.settings.worker_history_max

    @cached_property
    def bounds(self) -> StateBounds:
        s = self.settings
        return StateBounds(
            max_state_bytes=s.max_state_bytes,
            max_attribute_keys=s.max_attribute_keys,
            max_event_attributes=s.max_event_attributes,
            max_pending_impressions=s.max_pending_impressions,
            max_impression_items=s.max_impression_items,
            max_early_clicks=s.max_early_clicks,
            max_round_candidates=s.max_round_candidates,
            max_candidate_rewards=s.max_candidate_rewards,
        )

    @cached_property
    def ingest_limits(self) -> IngestLimits:
        return IngestLimits(
            self.keep_events, self.settings.seen_events_max, self.bounds, self.settings.worker_history_max
        )

    def load_generators(self) -> None:
        """The configured serving policy (smoke-tested) and the explorer. Blocking: run it in an executor."""
        self.policy = PolicyHolder.from_spec(self.settings.worker_policy)
        self.explorer = make_generator(self.settings.explore_policy)

    def load_evaluator(self) -> None:
        """The frozen reader and its dataset. Blocking (seconds; minutes if the reader must be built first)."""
        s = self.settings
        self.evaluator = load_stream_evaluator(
            s.dataset,
            s.path("models"),
            s.cache_path,
            s.reader_path,
            StreamEvalConfig(draws=s.eval_draws, n_negatives=s.eval_negatives),
        )
