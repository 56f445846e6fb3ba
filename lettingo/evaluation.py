"""Task-driven evaluation: run each candidate profile through f_Rec on the user's held-out targets.

A profile's reward is its mean outcome over several targets (and, for ranking, several negative draws): one
target alone made preference pairs mostly noise (DESIGN.md). ``hit`` rewards are 0/1 per case (the paper's
correct / wrong); ``graded`` rewards are the probability of the true label (sentiment) or the reciprocal rank
of the held-out item (ranking), which separate profiles with fewer cases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from lettingo.data import Dataset, DatasetSplit, LabelScheme, UserSplit
from lettingo.data.split import cases_for_user
from lettingo.recommenders.base import RankingQuery, Recommender, SentimentQuery, Task
from lettingo.recommenders.negatives import NegativeSampler

log = logging.getLogger(__name__)

RewardKind = Literal["hit", "graded"]


@dataclass(frozen=True)
class EvaluationConfig:
    task: Task = Task.RANKING
    targets_per_user: int = 10  # at most recent_size keeps every target out of a profile written from H_u
    offset: int = 0  # 1 skips each user's final target (validation-time use)
    draws: int = 5  # negative draws per ranking target
    n_negatives: int = 9
    with_recent: bool = False  # ranking only: h_u as a second channel (sentiment always gets h_u)
    reward: RewardKind = "graded"
    seed: int = 13

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "task": self.task.value}


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """One (profile, target, draw) through f_Rec."""

    target_id: str
    position: int
    draw: int
    predicted: str | None  # the label, or the chosen candidate's item id; None when unparsable
    actual: str  # the true label, or the held-out item id
    rank: int | None  # ranking: 0-based rank of the held-out item; None if unranked or unparsable
    graded: float

    @property
    def correct(self) -> bool:
        return self.predicted is not None and self.predicted == self.actual


@dataclass(frozen=True, slots=True)
class ProfileScore:
    reward: float
    correct_rate: float
    n_cases: int
    n_unparsable: int
    outcomes: tuple[CaseOutcome, ...]


class TaskEvaluator:
    """Scores candidate profiles of one user at a time, on the same targets and negatives for every profile."""

    def __init__(
        self,
        recommender: Recommender,
        dataset: Dataset,
        split: DatasetSplit,
        config: EvaluationConfig | None = None,
        scheme: LabelScheme | None = None,
    ) -> None:
        self.recommender = recommender
        self.dataset = dataset
        self.split = split
        self.config = config or EvaluationConfig()
        self.scheme = scheme or LabelScheme.for_scale(dataset.integer_scale)
        self.sampler = NegativeSampler(dataset, self.config.n_negatives, seed=self.config.seed)
        if self.config.targets_per_user > split.cfg.recent_size:
            log.warning(
                "targets_per_user=%d > recent_size=%d: the oldest targets may appear in a profile written from H_u",
                self.config.targets_per_user,
                split.cfg.recent_size,
            )

    def cases(self, user_id: str) -> list[UserSplit]:
        ratings = self.dataset.ratings_by_user.get(user_id)
        if ratings is None:
            raise KeyError(f"user {user_id!r} is not in dataset {self.dataset.name}")
        c = self.config
        return cases_for_user(ratings, self.split.cfg, range(c.offset, c.offset + c.targets_per_user))

    def outcomes(
        self, user_id: str, profiles: Sequence[str], cases: Sequence[UserSplit] | None = None
    ) -> list[list[CaseOutcome]]:
        """Per profile, the outcome of every case; one batched call to the recommender for all of them."""
        cases = list(self.cases(user_id) if cases is None else cases)
        if self.config.task is Task.SENTIMENT:
            return self._sentiment(profiles, cases)
        return self._ranking(user_id, profiles, cases)

    def _sentiment(self, profiles: Sequence[str], cases: list[UserSplit]) -> list[list[CaseOutcome]]:
        queries = [SentimentQuery(p, c.recent, c.target.item_id) for p in profiles for c in cases]
        predictions = self.recommender.predict_sentiment(queries)
        out: list[list[CaseOutcome]] = []
        for k in range(len(profiles)):
            row = []
            for case, pred in zip(cases, predictions[k * len(cases) : (k + 1) * len(cases)], strict=True):
                actual = self.scheme.label(case.target.rating)
                correct = pred.label is not None and pred.label == actual
                graded = pred.probabilities.get(actual, 0.0) if pred.probabilities else float(correct)
                label = None if pred.label is None else pred.label.value
                row.append(CaseOutcome(case.target.item_id, case.position, 0, label, actual.value, None, graded))
            out.append(row)
        return out

    def _ranking(self, user_id: str, profiles: Sequence[str], cases: list[UserSplit]) -> list[list[CaseOutcome]]:
        draws = [
            (c, d, self.sampler.sample(user_id, c.target.item_id, d)) for c in cases for d in range(self.config.draws)
        ]
        queries = [
            RankingQuery(p, c.recent if self.config.with_recent else None, cand.candidate_ids)
            for p in profiles
            for c, _, cand in draws
        ]
        predictions = self.recommender.rank(queries)
        out: list[list[CaseOutcome]] = []
        for k in range(len(profiles)):
            row = []
            for (case, draw, cand), pred in zip(draws, predictions[k * len(draws) : (k + 1) * len(draws)], strict=True):
                order = pred.order
                rank = order.index(cand.target_index) if order and cand.target_index in order else None
                chosen = cand.candidate_ids[order[0]] if order else None
                graded = 1.0 / (rank + 1) if rank is not None else 0.0
                row.append(
                    CaseOutcome(case.target.item_id, case.position, draw, chosen, case.target.item_id, rank, graded)
                )
            out.append(row)
        return out

    def score_profiles(self, user_id: str, profiles: Sequence[str]) -> list[ProfileScore]:
        scores = []
        for outcomes in self.outcomes(user_id, profiles):
            n = len(outcomes)
            correct = sum(o.correct for o in outcomes)
            value = sum(o.graded for o in outcomes) if self.config.reward == "graded" else correct
            scores.append(
                ProfileScore(
                    reward=value / n if n else 0.0,
                    correct_rate=correct / n if n else 0.0,
                    n_cases=n,
                    n_unparsable=sum(o.predicted is None for o in outcomes),
                    outcomes=tuple(outcomes),
                )
            )
        return scores
