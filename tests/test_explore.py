"""Exploration: dedupe by normalized text, provenance, determinism, and the resumable CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lettingo.data import Item, Rating, UserSplit
from lettingo.explore import ExploreSource, explore, normalize_profile
from lettingo.generators import make_generator
from lettingo.offline_files import ExploredCase


def _case(user: str, n_items: int = 20) -> UserSplit:
    history = tuple(Rating(user, str(i), [5.0, 4.5, 2.0, 3.0][i % 4], i) for i in range(n_items))
    return UserSplit(user, history, (), Rating(user, "999", 4.0, 10_000), 0)


ITEMS = {
    str(i): Item(str(i), f"Film {i} ({1970 + i})", (("Drama",), ("Comedy", "Crime"))[i % 2], 1970 + i)
    for i in range(40)
}


def test_normalize_profile() -> None:
    assert normalize_profile("  Likes  Drama.\n") == normalize_profile("likes drama") == "likes drama"


def test_dedupes_across_sources_and_records_provenance() -> None:
    titles = make_generator("writer:titles")
    strict = make_generator("writer:strictness")  # nearly one text per user: repeats must be dropped
    cases = [_case("a"), _case("b"), _case("c")]
    sources = [ExploreSource(titles, 4), ExploreSource(strict, 5), ExploreSource(titles, 3)]
    out = list(explore(cases, ITEMS, sources, seed=11, batch_size=2))
    assert [u.user_id for u in out] == ["a", "b", "c"]
    for user in out:
        keys = [normalize_profile(c.text) for c in user.candidates]
        assert len(keys) == len(set(keys))
        assert user.duplicates > 0
        assert len(user.candidates) <= 12
        assert len({c.profile_id for c in user.candidates}) == len(user.candidates)
        assert {c.generator for c in user.candidates} == {"writer:titles", "writer:strictness"}
        assert all(c.model_version == "writers-1" and c.temperature == 1.0 for c in user.candidates)
        assert str(user.history_ref) == "20@19:19"
        row = user.to_record()
        assert row.prompt == user.prompt.text and row.case == (user.user_id, 0)
        assert ExploredCase.model_validate_json(row.model_dump_json()) == row  # the line `lettingo explore` writes
    again = list(explore(cases, ITEMS, sources, seed=11, batch_size=3))
    assert [[(c.text, c.seed) for c in u.candidates] for u in again] == [
        [(c.text, c.seed) for c in u.candidates] for u in out
    ]


def test_needs_a_source() -> None:
    with pytest.raises(ValueError, match="at least one source"):
        list(explore([_case("a")], ITEMS, []))


def test_cli_is_resumable(dataset_path, tmp_path) -> None:
    import typer

    from lettingo.cli.explore_command import explore as explore_command

    app = typer.Typer()
    app.command()(explore_command)
    out = tmp_path / "candidates.jsonl"
    args = [str(dataset_path), "-g", "3*writer:mix", "-g", "writer:titles", "--n", "2", "--out", str(out)]
    first = CliRunner().invoke(app, [*args, "--limit", "3"])
    assert first.exit_code == 0, first.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(1 <= len(r["candidates"]) <= 5 for r in rows)
    with out.open("a") as f:
        f.write('{"user_id": "torn')  # a crash mid-write
    second = CliRunner().invoke(app, [*args, "--limit", "5"])
    assert second.exit_code == 0, second.output
    rows2 = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows2) == 5 and rows2[:3] == rows
    assert len({(r["user_id"], r["position"]) for r in rows2}) == 5
    bad = CliRunner().invoke(app, [str(dataset_path), "-g", "writer:nope", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown writer" in str(bad.exception)
