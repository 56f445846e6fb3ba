"""Profile writers: seeded, varied, and citing only titles of the history, in their quoted prompt form."""

from __future__ import annotations

import random

import pytest

from lettingo.data import Item, LabelScheme, Rating
from lettingo.nano.quality import cited_titles
from lettingo.prompts.profile import profile_prompt
from lettingo.writers import EMPTY_PROFILE, WRITERS, write_profile

GENRES = [("Action", "Crime"), ("Comedy",), ("Drama", "Romance"), ("Horror",), ("Sci-Fi", "Action"), ("Animation",)]


@pytest.fixture(scope="module")
def prompt():
    items = {
        str(i): Item(str(i), f'Film {i}: "Quoted" (19{60 + i})', GENRES[i % len(GENRES)], 1960 + i, ("twist", "dark"))
        for i in range(30)
    }
    history = [Rating("u", str(i), [5.0, 4.0, 3.0, 2.0, 1.0][i % 5], i) for i in range(30)]
    return profile_prompt(history, items, LabelScheme())


@pytest.mark.parametrize("name", list(WRITERS))
def test_writer_is_seeded_and_grounded(name: str, prompt) -> None:
    first = write_profile(name, prompt.entries, random.Random(7))
    assert first == write_profile(name, prompt.entries, random.Random(7))
    assert first.strip() and first.endswith(".")
    allowed = set(prompt.quoted_titles)
    for seed in range(20):
        text = write_profile(name, prompt.entries, random.Random(seed))
        assert set(cited_titles(text)) <= allowed, text
        for title in cited_titles(text):
            assert f" {title}" in text  # always after a space: one nano token


def test_writers_differ_in_style_and_vary_with_the_seed(prompt) -> None:
    outputs = {name: {write_profile(name, prompt.entries, random.Random(s)) for s in range(10)} for name in WRITERS}
    assert all(len(texts) >= 2 for name, texts in outputs.items() if name != "strictness")
    assert any(cited_titles(t) for t in outputs["titles"])
    assert not any(cited_titles(t) for t in outputs["poor"] | outputs["genres"])


def test_empty_history() -> None:
    for name in ("genres", "titles", "era", "strictness", "combined"):
        assert write_profile(name, [], random.Random(0)) == EMPTY_PROFILE
    assert write_profile("poor", [], random.Random(0))


def test_unknown_writer_is_named() -> None:
    with pytest.raises(ValueError, match="unknown profile writer 'nope'; known: genres"):
        write_profile("nope", [], random.Random(0))
