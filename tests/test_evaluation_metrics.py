"""Metrics on hand-computed cases, user-clustered bootstrap intervals, and the ranking task's negatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from lettingo.data import load_dataset
from lettingo.metrics_stats import (
    accuracy,
    bootstrap,
    f1_scores,
    hit_at,
    mean_statistic,
    ndcg_at,
    paired_bootstrap,
)
from lettingo.recommenders import NegativeSampler

TRUE = ["like", "like", "neutral", "dislike"]
PRED = ["like", None, "neutral", "like"]  # None: an unparsable answer, counted as wrong


def test_sentiment_metrics_by_hand() -> None:
    # like: tp 1, predicted 2, actual 2 -> F1 1/2; neutral: F1 1; dislike: F1 0
    assert accuracy(TRUE, PRED) == 0.5
    macro, weighted = f1_scores(TRUE, PRED)
    assert macro == pytest.approx(0.5)
    assert weighted == pytest.approx((0.5 * 2 + 1 * 1 + 0 * 1) / 4)
    as_str = [p or "unparsable" for p in PRED]
    labels = ["like", "neutral", "dislike"]
    assert macro == pytest.approx(f1_score(TRUE, as_str, labels=labels, average="macro", zero_division=0))
    assert weighted == pytest.approx(f1_score(TRUE, as_str, labels=labels, average="weighted", zero_division=0))


def test_ranking_metrics_by_hand() -> None:
    ranks = [0, 2, None, 5]  # 0-based ranks; None = unparsable or not ranked
    assert [hit_at(r, 1) for r in ranks] == [1, 0, 0, 0]
    assert [hit_at(r, 5) for r in ranks] == [1, 1, 0, 0]
    assert sum(ndcg_at(r, 5) for r in ranks) / 4 == pytest.approx((1 + 1 / math.log2(4)) / 4)


def test_bootstrap_resamples_users_not_cases() -> None:
    constant = bootstrap(mean_statistic([0.3] * 6), ["a", "a", "b", "b", "c", "c"], 200)
    assert (constant.low, constant.value, constant.high) == pytest.approx((0.3, 0.3, 0.3))
    # user a: three hits, user b: one miss. Resampling users can only give 1, 0.75 or 0 -- never e.g. 0.5
    clustered = bootstrap(mean_statistic([1, 1, 1, 0]), ["a", "a", "a", "b"], 500, seed=1)
    assert clustered.value == 0.75
    assert clustered.low == 0.0 and clustered.high == 1.0


def test_paired_bootstrap_of_a_constant_difference() -> None:
    rng = np.random.default_rng(0)
    b = rng.random(40)
    users = [f"u{n // 4}" for n in range(40)]
    diff = paired_bootstrap(mean_statistic(b + 0.1), mean_statistic(b), users, 300)
    assert (diff.low, diff.value, diff.high) == pytest.approx((0.1, 0.1, 0.1))


def test_negative_sampler_is_popularity_matched_unseen_and_reproducible(dataset_path) -> None:
    ds = load_dataset(dataset_path)
    sampler = NegativeSampler(ds, n_negatives=9, window=100, seed=5)
    user = "1"
    target = ds.ratings_by_user[user][-1].item_id
    first = sampler.sample(user, target, draw=0)
    assert first == sampler.sample(user, target, draw=0)
    assert first != sampler.sample(user, target, draw=1)
    assert len(first.candidate_ids) == 10 and len(set(first.candidate_ids)) == 10
    assert first.candidate_ids[first.target_index] == target
    seen = {r.item_id for r in ds.ratings_by_user[user]}
    negatives = [i for i in first.candidate_ids if i != target]
    assert not seen & set(negatives)
    by_popularity = sorted(ds.item_popularity, key=lambda i: (-ds.item_popularity[i], i.zfill(12)))
    rank = {i: n for n, i in enumerate(by_popularity)}
    assert all(abs(rank[i] - rank[target]) <= 200 for i in negatives)
