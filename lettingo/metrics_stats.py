"""Task metrics (accuracy, macro/weighted F1, HR@k, NDCG@k) and user-clustered bootstrap intervals.

Cases of one user (several targets, several negative draws) are not independent, so every interval resamples
users, not cases. An unparsable prediction (``None``) counts as wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SENTIMENT_LABELS = ("like", "neutral", "dislike")


def accuracy(y_true: Sequence[str], y_pred: Sequence[str | None]) -> float:
    if not y_true:
        return float("nan")
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def f1_scores(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str] = SENTIMENT_LABELS
) -> tuple[float, float]:
    """(macro F1, weighted F1) over ``labels``; a class absent from both truth and predictions scores 0 in the
    macro mean, as in scikit-learn with ``zero_division=0``."""
    f1s, supports = [], []
    for label in labels:
        tp = sum(t == label and p == label for t, p in zip(y_true, y_pred, strict=True))
        predicted = sum(p == label for p in y_pred)
        actual = sum(t == label for t in y_true)
        f1s.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
        supports.append(actual)
    total = sum(supports)
    weighted = sum(f * s for f, s in zip(f1s, supports, strict=True)) / total if total else float("nan")
    return sum(f1s) / len(f1s), weighted


def hit_at(rank: int | None, k: int) -> float:
    """``rank`` is the 0-based position of the held-out item in the reader's order; None: not ranked / unparsable."""
    return float(rank is not None and rank < k)


def ndcg_at(rank: int | None, k: int) -> float:
    """NDCG@k with one relevant item: the ideal DCG is 1."""
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < k else 0.0


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


Statistic = Callable[[np.ndarray], float]  # receives case indices (with repeats) and returns the metric


def _cluster_resamples(clusters: Sequence[str], n_resamples: int, seed: int) -> list[np.ndarray]:
    by_cluster: dict[str, list[int]] = {}
    for n, c in enumerate(clusters):
        by_cluster.setdefault(c, []).append(n)
    groups = [np.array(v) for v in by_cluster.values()]
    rng = np.random.default_rng(seed)
    return [np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))]) for _ in range(n_resamples)]


def bootstrap(
    statistic: Statistic, clusters: Sequence[str], n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Percentile interval of ``statistic`` under resampling of whole clusters (users)."""
    point = statistic(np.arange(len(clusters)))
    if not clusters:
        return Estimate(point, float("nan"), float("nan"))
    values = [statistic(idx) for idx in _cluster_resamples(clusters, n_resamples, seed)]
    tail = (1 - confidence) / 2 * 100
    return Estimate(point, float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))


def paired_bootstrap(
    statistic_a: Statistic,
    statistic_b: Statistic,
    clusters: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Interval of ``a - b`` where both systems were scored on the same cases (same users resampled for both)."""

    def difference(idx: np.ndarray) -> float:
        return statistic_a(idx) - statistic_b(idx)

    return bootstrap(difference, clusters, n_resamples, seed, confidence)


def mean_statistic(values: Sequence[float]) -> Statistic:
    array = np.asarray(values, dtype=np.float64)
    return lambda idx: float(array[idx].mean()) if len(idx) else float("nan")
