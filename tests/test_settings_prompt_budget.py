"""LETTINGO_PROMPT_MAX_TOKENS: the worker's profile prompts keep the most recent history lines within a token
budget of the serving model, as `lettingo explore --max-prompt-tokens` does offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from lettingo.data import LabelScheme, load_dataset
from lettingo.errors import ConfigError
from lettingo.prompts.profile import history_entries, profile_prompt_from_entries, profile_prompt_within
from streams.runtime import Runtime
from streams.settings import StreamSettings


@pytest.fixture(scope="module")
def entries(dataset_path: Path):
    data = load_dataset(dataset_path)
    user, ratings = next(iter(data.ratings_by_user.items()))
    history = ratings[:70]
    return history_entries(history, data.items, LabelScheme()), user


def runtime(nano_model: Path, tmp_path: Path, budget: int | None) -> Runtime:
    settings = StreamSettings(
        home=tmp_path,
        worker={"policy": f"hf:{nano_model}", "prompt_max_tokens": budget},
        explore={"policy": "writer:combined"},
    )
    rt = Runtime(settings)
    rt.load_generators()
    return rt


def test_the_worker_prompt_keeps_the_recent_lines_within_the_budget(nano_model: Path, tmp_path: Path, entries) -> None:
    history, user = entries
    rt = runtime(nano_model, tmp_path, 300)
    generator = rt.policy.current.generator
    prompt = rt.profile_prompt(history, user)
    assert len(generator.encode(prompt)) <= 300
    assert 0 < len(prompt.entries) < len(history)
    assert prompt.entries == tuple(history[len(history) - len(prompt.entries) :])  # the most recent ones
    # the same prompt as the offline command's builder with that budget
    offline = profile_prompt_within(history, lambda p: len(generator.encode(p)), 300, user)
    assert prompt.text == offline.text


def test_without_a_budget_the_prompt_holds_the_whole_history(nano_model: Path, tmp_path: Path, entries) -> None:
    history, user = entries
    prompt = runtime(nano_model, tmp_path, None).profile_prompt(history, user)
    assert prompt.text == profile_prompt_from_entries(history, user).text


def test_a_budget_needs_a_policy_with_a_tokenizer(tmp_path: Path) -> None:
    rt = Runtime(StreamSettings(home=tmp_path, worker={"policy": "writer:combined", "prompt_max_tokens": 300}))
    with pytest.raises(ConfigError, match="LETTINGO_PROMPT_MAX_TOKENS needs a model policy"):
        rt.load_generators()
