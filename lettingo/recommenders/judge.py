"""The paper's f_Rec: an LLM asked at temperature 0, its answers parsed strictly.

Select it wherever a reader is taken: ``--reader llm:SPEC`` on the command line, ``LETTINGO_READER_PATH=llm:SPEC``
in the worker (SPEC: a generator spec, lettingo.recommenders.completers.load_judge)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lettingo.data import Dataset, LabelScheme
from lettingo.prompts.recommender import (
    describe_item,
    parse_ranking,
    parse_sentiment,
    ranking_prompt,
    sentiment_prompt,
)
from lettingo.recommenders.base import (
    RankingPrediction,
    RankingQuery,
    SentimentPrediction,
    SentimentQuery,
    TextCompleter,
)

log = logging.getLogger(__name__)


class LLMJudge:
    """Any :class:`TextCompleter` as a recommender. Unparsable answers become ``None`` and are counted."""

    name = "llm_judge"

    def __init__(self, completer: TextCompleter, dataset: Dataset, version: str, batch_size: int = 32) -> None:
        self.completer = completer
        self.dataset = dataset
        self.version = version
        self.batch_size = batch_size
        self.n_answers = 0
        self.n_unparsable = 0
        self.scheme = LabelScheme.for_scale(dataset.integer_scale)

    # What callers of the embedding reader also call; a judge reads text as it comes.
    def prepare(self, profiles: Sequence[str], item_ids: Sequence[str]) -> None:
        """Nothing to precompute."""

    def warm_items(self) -> None:
        """Nothing to precompute."""

    def _complete(self, prompts: list[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            answers = self.completer.complete(chunk, temperature=0.0)
            if len(answers) != len(chunk):
                raise RuntimeError(f"the completer returned {len(answers)} answers for {len(chunk)} prompts")
            out.extend(answers)
        return out

    def _count(self, parsed: list[object], answers: list[str]) -> None:
        bad = [a for p, a in zip(parsed, answers, strict=True) if p is None]
        self.n_answers += len(answers)
        self.n_unparsable += len(bad)
        if bad:
            log.warning("judge: %d of %d answers unparsable (first: %r)", len(bad), len(answers), bad[0][:80])

    def predict_sentiment(self, queries: Sequence[SentimentQuery]) -> list[SentimentPrediction]:
        items, scale = self.dataset.items, self.dataset.rating_scale
        prompts = [sentiment_prompt(q.profile, q.recent, q.target_id, items, scale) for q in queries]
        answers = self._complete(prompts)
        labels = [parse_sentiment(a) for a in answers]
        self._count(labels, answers)  # type: ignore[arg-type]
        return [SentimentPrediction(label) for label in labels]

    def rank(self, queries: Sequence[RankingQuery]) -> list[RankingPrediction]:
        prompts = [ranking_prompt(q.profile, q.recent, q.candidate_ids, self.dataset.items) for q in queries]
        answers = self._complete(prompts)
        items = self.dataset.items
        chosen = [
            parse_ranking(a, len(q.candidate_ids), [describe_item(items.get(i), i) for i in q.candidate_ids])
            for a, q in zip(answers, queries, strict=True)
        ]
        self._count(chosen, answers)  # type: ignore[arg-type]
        return [RankingPrediction(None if c is None else (c,)) for c in chosen]
