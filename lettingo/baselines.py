"""Baselines on the same split and the same f_Rec, both tasks.

``recent_only``: no profile, h_u only (the paper's recent-10 baseline). ``raw_history``: H_u itself as text.
``fixed_format``: a short JSON summary of H_u. ``generator``: candidate profiles from any source (for instance the
generator before alignment, from an explore JSONL); each candidate of a user counts as one sample of the system.
Profile baselines read the profile as the only history channel on ranking (``ranking_with_recent`` adds h_u).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from lettingo.data import Dataset, DatasetSplit, UserSplit
from lettingo.evaluation import CaseOutcome, EvaluationConfig, TaskEvaluator
from lettingo.metrics_stats import (
    Estimate,
    bootstrap,
    f1_scores,
    hit_at,
    mean_statistic,
    ndcg_at,
    paired_bootstrap,
)
from lettingo.recommenders.base import Recommender, Task
from lettingo.recommenders.history_text import PROFILE_STYLES

log = logging.getLogger(__name__)

# Given a user's cases (the first is the latest), the profiles to score: one for a fixed baseline, many for a generator.
ProfileSource = Callable[[str, Sequence[UserSplit]], list[str]]


def style_source(style: str, dataset: Dataset) -> ProfileSource:
    writer = PROFILE_STYLES[style]
    # The profile describes the H_u of the latest case; every evaluated target comes after that H_u.
    return lambda user_id, cases: [writer(cases[0].long_history, dataset.items)]


def candidates_source(candidates_by_user: Mapping[str, Sequence[str]]) -> ProfileSource:
    return lambda user_id, cases: list(candidates_by_user.get(user_id, ()))


@dataclass(frozen=True)
class Baseline:
    name: str
    source: ProfileSource
    uses_recent_on_ranking: bool = False


def standard_baselines(
    dataset: Dataset, candidates_by_user: Mapping[str, Sequence[str]] | None = None
) -> list[Baseline]:
    out = [
        Baseline("recent_only", lambda user_id, cases: [""], uses_recent_on_ranking=True),
        Baseline("raw_history", style_source("raw_history", dataset)),
        Baseline("fixed_format", style_source("fixed_format", dataset)),
    ]
    if candidates_by_user is not None:
        out.append(Baseline("generator", candidates_source(candidates_by_user)))
    return out


@dataclass
class SystemOutcomes:
    """Every case outcome of one system on one task, with the user of each (the bootstrap's clusters)."""

    name: str
    task: Task
    outcomes: list[CaseOutcome]
    users: list[str]

    def metrics(self, n_resamples: int = 1000, seed: int = 0) -> dict[str, Estimate]:
        return {name: bootstrap(stat, self.users, n_resamples, seed) for name, stat in metric_statistics(self).items()}


def metric_statistics(system: SystemOutcomes) -> dict[str, Callable[[np.ndarray], float]]:
    """Each metric as a function of case indices, for the bootstrap."""
    o = system.outcomes
    if system.task is Task.RANKING:
        return {
            "hr@1": mean_statistic([hit_at(x.rank, 1) for x in o]),
            "hr@5": mean_statistic([hit_at(x.rank, 5) for x in o]),
            "ndcg@5": mean_statistic([ndcg_at(x.rank, 5) for x in o]),
        }
    actual = np.array([x.actual for x in o], dtype=object)
    predicted = np.array([x.predicted for x in o], dtype=object)

    def f1(idx: np.ndarray, which: int) -> float:
        return f1_scores(list(actual[idx]), list(predicted[idx]))[which]

    return {
        "accuracy": mean_statistic([float(x.correct) for x in o]),
        "macro_f1": lambda idx: f1(idx, 0),
        "weighted_f1": lambda idx: f1(idx, 1),
    }


def paired_difference(
    a: SystemOutcomes, b: SystemOutcomes, metric: str, n_resamples: int = 1000, seed: int = 0
) -> Estimate:
    """``a - b`` on a mean metric, over per-user means of the users both systems scored (users resampled)."""
    per_case = {"accuracy": lambda x: float(x.correct), "hr@1": lambda x: hit_at(x.rank, 1)}
    per_case |= {"hr@5": lambda x: hit_at(x.rank, 5), "ndcg@5": lambda x: ndcg_at(x.rank, 5)}
    value = per_case[metric]

    def user_means(s: SystemOutcomes) -> dict[str, float]:
        sums: dict[str, list[float]] = {}
        for user, outcome in zip(s.users, s.outcomes, strict=True):
            sums.setdefault(user, []).append(value(outcome))
        return {u: float(np.mean(v)) for u, v in sums.items()}

    mean_a, mean_b = user_means(a), user_means(b)
    users = sorted(set(mean_a) & set(mean_b))
    return paired_bootstrap(
        mean_statistic([mean_a[u] for u in users]), mean_statistic([mean_b[u] for u in users]), users, n_resamples, seed
    )


def run_baseline(
    baseline: Baseline,
    task: Task,
    recommender: Recommender,
    dataset: Dataset,
    split: DatasetSplit,
    config: EvaluationConfig,
    users: Sequence[str],
) -> SystemOutcomes:
    with_recent = baseline.uses_recent_on_ranking or config.with_recent
    evaluator = TaskEvaluator(recommender, dataset, split, replace(config, task=task, with_recent=with_recent))
    result = SystemOutcomes(baseline.name, task, [], [])
    for user in tqdm(users, desc=f"{baseline.name}/{task.value}", unit="user", leave=False):
        cases = evaluator.cases(user)
        profiles = baseline.source(user, cases) if cases else []
        if not profiles:
            continue
        for row in evaluator.outcomes(user, profiles, cases):
            result.outcomes.extend(row)
            result.users.extend([user] * len(row))
    return result
