"""Task evaluation of explored candidates on a live stream, with the project's frozen f_Rec.

Each new rated interaction of a user is one held-out case for the user's open candidates: the ranking task,
the new item among ``n_negatives`` popularity-matched items the user has not rated, the candidate profile as
the only history channel. It runs through :class:`lettingo.evaluation.TaskEvaluator` (the same negative sampler,
queries and graded reward as the offline ``lettingo evaluate``), so a streamed reward means what an offline one
means: the reciprocal rank of the held-out item, averaged over the case's negative draws.

The reader is the frozen embedding reader (``lettingo recommender build``), loaded with its checksum verified.
No Kafka here.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from lettingo.data import Dataset, DatasetSplit, LabelScheme, Rating, UserSplit
from lettingo.evaluation import CaseOutcome, EvaluationConfig, TaskEvaluator
from lettingo.recommenders import EmbeddingReader, LLMJudge, NegativeSampler, Task
from lettingo.records import Item, Reward, RewardSource

if TYPE_CHECKING:
    from lettingo.scoreboard import Scoreboard
    from lettingo.user_state import UserState

log = logging.getLogger(__name__)


class StreamNegativeSampler(NegativeSampler):
    """The offline sampler, whose "seen by the user" also covers the items the user rated *in the stream*.

    For a user of the reader's dataset every streamed rating is already among the dataset's ratings, so the
    negatives are exactly the offline ones; a new user's negatives avoid what it rated, by the same draw.
    Streamed users are remembered up to ``max_users`` (least recently seen forgotten first).
    """

    def __init__(self, dataset: Dataset, n_negatives: int, seed: int, max_users: int = 100_000) -> None:
        super().__init__(dataset, n_negatives, seed=seed)
        self.max_users = max_users
        self._dataset_seen = dict(self._seen)
        self._streamed: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def saw(self, user_id: str, item_ids: Sequence[str]) -> None:
        with self._lock:
            known = self._seen.get(user_id, frozenset())
            if not known.issuperset(item_ids):
                self._seen[user_id] = known | frozenset(item_ids)
                self._streamed[user_id] = None
            if user_id in self._streamed:
                self._streamed.move_to_end(user_id)
            while len(self._streamed) > self.max_users:
                forgotten, _ = self._streamed.popitem(last=False)
                self._seen[forgotten] = self._dataset_seen.get(forgotten, frozenset())


@dataclass(frozen=True)
class StreamEvalConfig:
    draws: int = 5  # negative draws per new rated item (offline default)
    n_negatives: int = 9
    seed: int = 13  # the negative sampler's seed (offline default)

    def evaluation_config(self) -> EvaluationConfig:
        return EvaluationConfig(
            task=Task.RANKING,
            targets_per_user=1,
            draws=self.draws,
            n_negatives=self.n_negatives,
            with_recent=False,
            reward="graded",
            seed=self.seed,
        )


@dataclass(frozen=True, slots=True)
class OpenCandidate:
    profile_id: str
    text: str


@dataclass(frozen=True)
class StreamCase:
    """A user's new rating (``target``) with the ratings before it (``history``, oldest first)."""

    user_id: str
    candidates: tuple[OpenCandidate, ...]
    history: tuple[Rating, ...]
    target: Rating
    ts: float
    event_id: str = ""  # the rated event: a candidate's reward is keyed by (candidate, event)


class EvalTrigger(BaseModel):
    """A message of the worker's internal ``rated-events`` topic (keyed by user id, co-partitioned with it).

    Either a newly applied rated event (``event_id`` with its position ``seq`` in the user's event sequence),
    forwarded by ingest; or a newly opened candidate (``profile_id``), forwarded by the scoreboard's agent, to be
    tested at once on the rated events after its history that the user's state still holds.
    """

    user_id: str
    event_id: str = ""
    seq: int = 0
    item_id: str = ""
    rating: float | None = None
    ts: float = 0.0
    profile_id: str = ""

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> EvalTrigger:
        return cls.model_validate_json(payload)


def _history(state: UserState | None, seq: int) -> tuple[Rating, ...]:
    if state is None:
        return ()
    return tuple(
        Rating(state.user_id, e.item_id, e.rating, int(e.ts))
        for e in state.events
        if e.seq < seq and e.rating is not None
    )


def cases_for(
    trigger: EvalTrigger,
    load_state: Callable[[], UserState | None],
    board: Scoreboard | None,
    skip: Callable[[str, str], bool] = lambda profile_id, event_id: False,
    catch_up: int | None = None,
) -> list[StreamCase]:
    """The task-evaluation cases a trigger asks for: each (candidate, rated event) pair that the scoreboard
    :meth:`~lettingo.scoreboard.Scoreboard.wants` (event after the candidate's history, not yet rewarded) and
    ``skip`` does not rule out (already sent by this worker).

    A new candidate catches up on the kept rated events after its history, the earliest first, until it has
    ``catch_up`` rewards (None: all of them). A worker that lags behind its input keeps hundreds of such events,
    and its round only needs ``pairs_min_rewards`` per candidate; the earliest are the same for every candidate
    of a round, so they are compared on the same targets.

    The user's state is read (``load_state``) only when the scoreboard has a candidate to test: most rated events
    have none, and decoding a whole state for each of them was a fifth of a worker's CPU."""
    if board is None:
        return []
    if trigger.profile_id:  # a new candidate: the kept rated events after its history
        found = board.find(trigger.profile_id)
        if found is None:
            return []
        state = load_state()
        if state is None:
            return []
        candidate = OpenCandidate(trigger.profile_id, found[1].text)
        cases = [
            StreamCase(
                state.user_id,
                (candidate,),
                _history(state, e.seq),
                Rating(state.user_id, e.item_id, e.rating, int(e.ts)),
                e.ts,
                e.event_id,
            )
            for e in state.events
            if e.rating is not None
            and board.wants(trigger.profile_id, e.seq, e.event_id)
            and not skip(trigger.profile_id, e.event_id)
        ]
        return cases if catch_up is None else cases[: max(0, catch_up - found[1].n)]
    if trigger.rating is None:
        return []
    candidates = tuple(
        OpenCandidate(c.profile_id, c.text)
        for c in board.open_candidates()
        if board.wants(c.profile_id, trigger.seq, trigger.event_id) and not skip(c.profile_id, trigger.event_id)
    )
    if not candidates:
        return []
    state = load_state()
    target = Rating(trigger.user_id, trigger.item_id, trigger.rating, int(trigger.ts))
    return [StreamCase(trigger.user_id, candidates, _history(state, trigger.seq), target, trigger.ts, trigger.event_id)]


class StreamTaskEvaluator:
    """Scores a user's open candidates on one new rated item; one batched reader call per event."""

    def __init__(
        self,
        reader: EmbeddingReader | LLMJudge,
        dataset: Dataset,
        split: DatasetSplit,
        config: StreamEvalConfig | None = None,
    ) -> None:
        self.reader = reader
        self.dataset = dataset
        self.config = config or StreamEvalConfig()
        self.evaluator = TaskEvaluator(reader, dataset, split, self.config.evaluation_config(), reader.scheme)
        self.sampler = StreamNegativeSampler(dataset, self.config.n_negatives, self.config.seed)
        self.evaluator.sampler = self.sampler

    @property
    def version(self) -> str:
        return f"{self.reader.name}:{self.reader.version}"

    def learn_items(self, catalog: Mapping[str, Item], item_ids: Sequence[str]) -> None:
        """Give the reader the text of streamed items its dataset does not know (it embeds title and genres)."""
        from lettingo.user_state import to_catalog_item

        for item_id in item_ids:
            if item_id not in self.dataset.items and item_id in catalog:
                self.dataset.items[item_id] = to_catalog_item(catalog[item_id])

    def evaluate(self, cases: Sequence[StreamCase], catalog: Mapping[str, Item]) -> list[list[Reward]]:
        """Per case, one :class:`Reward` per open candidate. Every new profile of the batch is embedded in one
        encoder call first; then each case is one batched reader call."""
        for case in cases:
            self.sampler.saw(case.user_id, [r.item_id for r in case.history] + [case.target.item_id])
        self.learn_items(catalog, [c.target.item_id for c in cases])
        self.reader.prepare([c.text for case in cases for c in case.candidates if c.text.strip()], [])
        out: list[list[Reward]] = []
        for case in cases:
            if not case.candidates:
                out.append([])
                continue
            split = UserSplit(case.user_id, tuple(case.history), tuple(case.history[-10:]), case.target, 0)
            outcomes = self.evaluator.outcomes(case.user_id, [c.text for c in case.candidates], [split])
            out.append(
                [
                    reward_of(case.user_id, c.profile_id, row, self.version, case.ts)
                    for c, row in zip(case.candidates, outcomes, strict=True)
                ]
            )
        return out


def reward_of(user_id: str, profile_id: str, outcomes: Sequence[CaseOutcome], reader_version: str, ts: float) -> Reward:
    """The case's draws as one reward: ``value`` is the mean graded reward (the offline ``ProfileScore.reward``
    of this one target), ``correct`` that the held-out item ranked first in most draws, ``predicted`` the item
    ranked first most often."""
    n = len(outcomes)
    hits = sum(o.correct for o in outcomes)
    predicted = Counter(o.predicted for o in outcomes if o.predicted is not None).most_common(1)
    return Reward(
        user_id=user_id,
        profile_id=profile_id,
        source=RewardSource.TASK_EVAL,
        target=outcomes[0].target_id,
        predicted=predicted[0][0] if predicted else None,
        actual=outcomes[0].actual,
        correct=hits * 2 > n,
        value=sum(o.graded for o in outcomes) / n,
        model_version=reader_version,
        ts=ts,
    )


def load_stream_evaluator(
    dataset_path: Path,
    models_dir: Path,
    cache_dir: Path,
    reader_path: Path | None = None,
    config: StreamEvalConfig | None = None,
) -> StreamTaskEvaluator:
    """Load the dataset and the frozen reader (``reader_path``, checksum verified; or the cached reader for the
    dataset under ``models_dir``, built once if missing), and load the sentence encoder so the first event
    does not pay for it. ``llm:SPEC`` as ``reader_path`` is the paper's LLM judge instead (one generator call per
    batch of queries). Slow (seconds to minutes): call it off the event loop."""
    from lettingo.data import load_dataset, split_dataset
    from lettingo.recommenders import TextEncoder, build_or_load_reader, is_judge_spec, load_judge

    dataset = load_dataset(dataset_path)
    split = split_dataset(dataset)
    if reader_path is not None and is_judge_spec(reader_path):
        judge = load_judge(reader_path, dataset)
        log.info("task evaluation reader: the LLM judge %s", judge.version)
        return StreamTaskEvaluator(judge, dataset, split, config)
    encoder = TextEncoder(cache_dir)
    if reader_path is not None:
        reader = EmbeddingReader.load(reader_path, dataset, encoder)
        folder = reader_path
    else:
        reader, folder = build_or_load_reader(dataset, split, models_dir, encoder)
    encoder.model  # noqa: B018 - load the sentence model now, not on the first event
    scheme = LabelScheme.for_scale(dataset.integer_scale)
    if (scheme.like_at, scheme.dislike_at) != (reader.scheme.like_at, reader.scheme.dislike_at):
        log.warning("the reader at %s was trained with another label scheme than %s's", folder, dataset.name)
    log.info("task evaluation reader %s from %s (dataset %s)", reader.version, folder, dataset.name)
    return StreamTaskEvaluator(reader, dataset, split, config)
