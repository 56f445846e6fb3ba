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
from lettingo.byte_lru import MIB
from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig
from lettingo.errors import ConfigError
from lettingo.generators import Generator, make_generator
from lettingo.ingest import IngestLimits
from lettingo.prompts.profile import HistoryEntry, ProfilePrompt, profile_prompt_from_entries, profile_prompt_within
from lettingo.recommenders.reader import EmbeddingReader
from lettingo.records import InputLimits, Item
from lettingo.sent_pairs import SentPairs
from lettingo.serving import PolicyHolder
from lettingo.stream_eval import StreamEvalConfig, StreamTaskEvaluator, load_stream_evaluator
from streams.settings import StreamSettings


@dataclass
class Runtime:
    settings: StreamSettings
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
    def sent_pairs(self) -> SentPairs:
        """What task evaluation on this worker sent and had acknowledged (``LETTINGO_CACHE_SENT_PAIRS_MIB``)."""
        return SentPairs(self.settings.cache.sent_pairs_mib * MIB)

    def caches(self) -> dict[str, tuple[int, int, int]]:
        """Each in-process cache's (entries, bytes, bound in bytes), for ``lettingo_cache_*``."""
        found = {"sent_pairs": (*self.sent_pairs.memory_usage(), self.sent_pairs.max_bytes)}
        reader = self.evaluator.reader if self.evaluator else None
        if isinstance(reader, EmbeddingReader):
            caches = {"profile_vectors": reader.profile_vectors, "text_vectors": reader.encoder.text_vectors}
            found |= {name: (*cache.usage(), cache.max_bytes) for name, cache in caches.items()}
        return found

    @cached_property
    def input_limits(self) -> InputLimits:
        """What a message of an input topic must satisfy to decode (:func:`lettingo.records.decode_record`)."""
        return self.settings.input_limits()

    @cached_property
    def drift(self) -> DriftConfig:
        s = self.settings
        return DriftConfig(
            s.drift.threshold, s.drift.min_new_events, s.drift.cooldown_seconds, s.worker.cold_start_after
        )

    # Agents that need a model wait on generators_ready / evaluator_ready first; these name the loaded object (and
    # say so plainly if an agent ever runs before it).
    @property
    def serving(self) -> PolicyHolder:
        if self.policy is None:
            raise RuntimeError("the serving policy is used before the worker loaded it")
        return self.policy

    @property
    def exploring(self) -> Generator:
        if self.explorer is None:
            raise RuntimeError("the explorer is used before the worker loaded it")
        return self.explorer

    @property
    def task_evaluator(self) -> StreamTaskEvaluator:
        if self.evaluator is None:
            raise RuntimeError("the task evaluator is used before the worker loaded it")
        return self.evaluator

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
        return self.settings.worker.keep_events

    @cached_property
    def bounds(self) -> StateBounds:
        s = self.settings
        return StateBounds(
            max_state_bytes=s.bounds.max_state_bytes,
            max_attribute_keys=s.bounds.max_attribute_keys,
            max_event_attributes=s.bounds.max_event_attributes,
            max_pending_impressions=s.bounds.max_pending_impressions,
            max_impression_items=s.bounds.max_impression_items,
            max_early_clicks=s.bounds.max_early_clicks,
            max_round_candidates=s.bounds.max_round_candidates,
            max_candidate_rewards=s.bounds.max_candidate_rewards,
        )

    @cached_property
    def ingest_limits(self) -> IngestLimits:
        return IngestLimits(
            self.keep_events, self.settings.worker.seen_events_max, self.bounds, self.settings.worker.history_max
        )

    def load_generators(self) -> None:
        """The configured serving policy (smoke-tested) and the explorer. Blocking: run it in an executor."""
        policy = PolicyHolder.from_spec(self.settings.worker.policy, cache_dir=self.settings.path("model-cache"))
        if self.settings.worker.prompt_max_tokens is not None and not hasattr(policy.current.generator, "encode"):
            raise ConfigError(
                f"LETTINGO_PROMPT_MAX_TOKENS needs a model policy (hf:, vllm:) to count tokens with, not "
                f"LETTINGO_WORKER_POLICY={self.settings.worker.policy}"
            )
        self.policy = policy
        self.explorer = make_generator(self.settings.explore.policy)

    def profile_prompt(self, entries: list[HistoryEntry], user_id: str) -> ProfilePrompt:
        """The profile prompt over a user's history: all of it, or with ``LETTINGO_PROMPT_MAX_TOKENS`` the most
        recent lines that fit the budget counted by the serving policy's tokenizer (as ``lettingo explore
        --max-prompt-tokens``; the explored candidates share the prompt). A policy without a tokenizer (a hot
        swap to a writer) gets the whole history."""
        budget = self.settings.worker.prompt_max_tokens
        encode = getattr(self.policy.current.generator, "encode", None) if self.policy else None
        if budget is None or encode is None:
            return profile_prompt_from_entries(entries, user_id)
        return profile_prompt_within(entries, lambda prompt: len(encode(prompt)), budget, user_id)

    def load_evaluator(self) -> None:
        """The frozen reader and its dataset. Blocking (seconds; minutes if the reader must be built first)."""
        s = self.settings
        self.evaluator = load_stream_evaluator(
            s.dataset,
            s.path("models"),
            s.cache_path,
            s.reader_path,
            StreamEvalConfig(draws=s.eval.draws, n_negatives=s.eval.negatives),
        )
        reader = self.evaluator.reader
        if isinstance(reader, EmbeddingReader):
            reader.profile_vectors.resize(s.cache.profile_vectors_mib * MIB)
            reader.encoder.text_vectors.resize(s.cache.text_vectors_mib * MIB)
