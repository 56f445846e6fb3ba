"""Streamed task evaluation with the real frozen embedding reader: a streamed reward is the offline evaluator's
reward for the same case, and a new user's negatives avoid what the user rated in the stream."""

from __future__ import annotations

import pytest

from lettingo.data import Rating, load_dataset, split_dataset
from lettingo.data.split import cases_for_user
from lettingo.evaluation import EvaluationConfig, TaskEvaluator
from lettingo.recommenders import EmbeddingReader, TextEncoder
from lettingo.records import Item
from lettingo.stream_eval import OpenCandidate, StreamCase, StreamTaskEvaluator
from tests.conftest import REPO


@pytest.fixture(scope="module")
def setup(dataset_path, frozen_reader):
    dataset = load_dataset(dataset_path)
    split = split_dataset(dataset)
    reader = EmbeddingReader.load(frozen_reader, dataset, TextEncoder(REPO / ".lettingo" / "cache"))  # persistent
    return dataset, split, reader


def test_a_streamed_reward_is_the_offline_reward_of_the_same_case(setup):
    dataset, split, reader = setup
    user = split.test[0]
    [case] = cases_for_user(dataset.ratings_by_user[user], split.cfg, range(0, 1))
    titles = " ".join(f'"{dataset.items[r.item_id].title}"' for r in case.long_history if r.rating >= 4)
    profiles = ["Likes " + titles, "Enjoys light comedies and dislikes horror.", ""]
    offline = TaskEvaluator(reader, dataset, split, EvaluationConfig(targets_per_user=1, draws=5))
    expected = [s.reward for s in offline.score_profiles(user, profiles)]

    streamed = StreamTaskEvaluator(reader, dataset, split)
    candidates = tuple(OpenCandidate(f"p{n}", text) for n, text in enumerate(profiles))
    [rewards] = streamed.evaluate(
        [StreamCase(user, candidates, (*case.long_history, *case.recent), case.target, 1.0)], {}
    )
    assert [r.value for r in rewards] == pytest.approx(expected)
    assert all(r.source == "task_eval" and r.target == case.target.item_id == r.actual for r in rewards)
    assert rewards[0].model_version == f"embedding:{reader.version}"
    assert len({r.value for r in rewards}) > 1  # the reader tells the profiles apart


def test_a_new_users_negatives_avoid_the_items_it_rated_in_the_stream(setup):
    dataset, split, reader = setup
    evaluator = StreamTaskEvaluator(reader, dataset, split)
    popular = sorted(dataset.item_popularity, key=lambda i: -dataset.item_popularity[i])[:300]
    target = popular[150]
    history = tuple(Rating("stream-only", i, 4.0, n) for n, i in enumerate(popular[100:200]) if i != target)
    [[reward]] = evaluator.evaluate(
        [
            StreamCase(
                "stream-only",
                (OpenCandidate("p", "Likes action films."),),
                history,
                Rating("stream-only", target, 5.0, 999),
                1.0,
            )
        ],
        {},
    )
    assert 0.0 < reward.value <= 1.0
    rated = {r.item_id for r in history}
    for draw in range(evaluator.config.draws):
        drawn = evaluator.sampler.sample("stream-only", target, draw)
        assert target in drawn.candidate_ids and not rated & set(drawn.candidate_ids)


def test_streamed_items_unknown_to_the_dataset_are_embedded_from_the_catalogue(setup):
    dataset, split, reader = setup
    evaluator = StreamTaskEvaluator(reader, dataset, split)
    catalog = {"new-1": Item(item_id="new-1", title="Brand New Film (2030)", attributes=["Horror"], year=2030)}
    [[reward]] = evaluator.evaluate(
        [StreamCase("u-new", (OpenCandidate("p", "Loves horror."),), (), Rating("u-new", "new-1", 5.0, 1), 1.0)],
        catalog,
    )
    assert dataset.items["new-1"].title == "Brand New Film (2030)" and reward.target == "new-1"
