"""Loaders for the three formats, the label scheme, and the paper's split (no target leaks into H_u or h_u)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lettingo.data import DatasetFormatError, LabelScheme, Sentiment, SplitConfig, load_dataset, split_dataset
from lettingo.data.split import cases_for_user
from lettingo.data.types import Rating


def test_ml_latest_small_loads_whole(dataset_path: Path) -> None:
    data = load_dataset(dataset_path)
    assert (data.n_ratings, len(data.items), len(data.ratings_by_user)) == (100_836, 9_742, 610)
    toy = data.items["1"]
    assert toy.title == "Toy Story (1995)" and toy.year == 1995 and "Animation" in toy.attributes
    assert not data.integer_scale


def test_movielens_100k_format(tmp_path: Path) -> None:
    flags = ["0"] * 19
    flags[3] = flags[5] = "1"  # Animation, Comedy
    (tmp_path / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n"
        "2|GoldenEye|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n",
        encoding="latin-1",
    )
    (tmp_path / "u.data").write_text("7\t1\t5\t881250949\n7\t2\t2\t881250950\n8\t1\t3\t881250951\n")
    data = load_dataset(tmp_path)
    assert data.items["1"].attributes == ("Animation", "Comedy")
    assert data.items["2"].year == 1995 and data.items["2"].attributes == ("Western",)
    assert [r.item_id for r in data.ratings_by_user["7"]] == ["1", "2"]
    assert data.integer_scale
    assert LabelScheme.for_scale(data.integer_scale).label(2) is Sentiment.DISLIKE


def test_jsonl_format_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [
        {"user_id": "u", "item_id": "a", "rating": 4.5, "ts": 2, "title": "A (2001)", "attributes": ["Drama"]},
        {"user_id": "u", "item_id": "b", "kind": "click", "ts": 3},
        {"user_id": "u", "item_id": "c", "rating": 1, "ts": 1},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_dataset(path)
    assert [r.item_id for r in data.ratings_by_user["u"]] == ["c", "a"]  # time order; the click is no rating
    assert data.items["a"].title == "A (2001)"
    path.write_text('{"user_id": "u", "item_id": "a", "ts": 1}\n')
    with pytest.raises(DatasetFormatError, match="line 1"):
        load_dataset(path)
    with pytest.raises(DatasetFormatError, match="not a dataset"):
        load_dataset(tmp_path)


def test_labels() -> None:
    scheme = LabelScheme()
    assert [scheme.label(x) for x in (5, 4, 3.5, 3, 2.5, 0.5)] == [
        "like",
        "like",
        "neutral",
        "neutral",
        "dislike",
        "dislike",
    ]
    with pytest.raises(ValueError):
        LabelScheme(like_at=2, dislike_at=3)


def test_ties_are_broken_by_item_id_numerically() -> None:
    ratings = [Rating("u", "10", 4, 5), Rating("u", "9", 4, 5), Rating("u", "2", 4, 1)]
    assert [r.item_id for r in sorted(ratings, key=lambda r: r.order_key)] == ["2", "9", "10"]


def test_split_groups_are_disjoint_and_seeded(dataset_path: Path) -> None:
    data = load_dataset(dataset_path)
    split = split_dataset(data)
    groups = [set(split.train), set(split.validation), set(split.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert (len(split.train), len(split.validation), len(split.test)) == (366, 122, 122)
    assert split_dataset(data) == split
    assert split_dataset(data, SplitConfig(seed=14)).test != split.test


def test_no_target_leaks_into_the_history(dataset_path: Path) -> None:
    data = load_dataset(dataset_path)
    split = split_dataset(data)
    for user in split.test[:40]:
        ratings = data.ratings_by_user[user]
        cases = cases_for_user(ratings, split.cfg, range(3))
        final, validation = cases[0], cases[1]
        assert final.target == ratings[-1] and validation.target == ratings[-2]
        for case in cases:
            assert len(case.recent) == 10 and len(case.long_history) <= 70
            assert case.recent[-1] == ratings[len(ratings) - 2 - case.position]  # h_u ends right before the target
            seen = [*case.long_history, *case.recent]
            assert case.target not in seen
            assert all(r.order_key <= case.target.order_key for r in seen)
            assert case.long_history[-1].order_key <= case.recent[0].order_key
