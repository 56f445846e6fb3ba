"""The nano model of the quick config (the suite's, built once per session): cached build, plain HF loading,
TRL-compatible tokenization, and samples at temperature 1.0 that are diverse and cite only prompt titles."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lettingo.data import LabelScheme, load_dataset, split_dataset
from lettingo.explore import ExploreSource, explore
from lettingo.generators import make_generator
from lettingo.nano import NanoConfig, build_nano, read_manifest
from lettingo.nano.quality import cited_titles, sample_report
from lettingo.nano.tokenizer import quote_token_ids, title_token_ids
from lettingo.prompts.profile import profile_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(dataset_path: Path):
    return load_dataset(dataset_path)


@pytest.fixture(scope="module")
def nano(nano_model: Path) -> Path:
    # The session's build of the same config (tests/conftest.py): a second cold build would add 1.5 minutes.
    return nano_model


@pytest.fixture(scope="module")
def prompts(dataset):
    split = split_dataset(dataset)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    return [profile_prompt(c.long_history, dataset.items, labels) for c in split.cases(dataset, "validation")[:4]]


def test_build_is_cached_by_content(nano: Path, dataset_path: Path) -> None:
    started = time.perf_counter()
    assert build_nano(dataset_path, nano.parent, NanoConfig.quick(), threads=1) == nano
    assert time.perf_counter() - started < 5
    manifest = read_manifest(nano)
    assert manifest and manifest["name"] == nano.name
    assert manifest["sft"]["final_loss"] < manifest["sft"]["first_loss"]
    other = NanoConfig.quick(seed=1)
    from lettingo.nano.build import build_key

    assert build_key(dataset_path, other) != manifest["key"]


def test_loads_with_plain_transformers_and_tokenizes_like_trl(nano: Path, prompts) -> None:
    model = AutoModelForCausalLM.from_pretrained(nano, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(nano, local_files_only=True)
    assert model.config.model_type == "llama" and model.config.hidden_size == 128
    assert 1_000_000 < model.num_parameters() < 3_000_000
    prompt = prompts[0]
    assert (
        tokenizer.apply_chat_template(list(prompt.messages), add_generation_prompt=True, tokenize=False) == prompt.text
    )
    title = prompt.quoted_titles[0]
    completion = f"Loved {title}."
    prompt_ids = tokenizer(prompt.text)["input_ids"]
    full = tokenizer(prompt.text + " " + completion + tokenizer.eos_token)["input_ids"]
    assert full[: len(prompt_ids)] == prompt_ids  # TRL finds the completion after the prompt, nothing merges
    titles = title_token_ids(tokenizer)
    assert sum(t in titles for t in full[len(prompt_ids) :]) == 1  # the cited title is one token
    assert tokenizer.decode(full, skip_special_tokens=False) == prompt.text + " " + completion + tokenizer.eos_token
    assert not quote_token_ids(tokenizer) & set(titles)


def test_samples_are_diverse_grounded_and_seeded(nano: Path, prompts) -> None:
    generator = make_generator(f"hf:{nano}")
    report, texts = sample_report(generator, prompts, n=4, temperature=1.0, seed=5, max_new_tokens=48)
    assert report.samples == 16
    assert report.distinct_per_prompt >= 0.75
    assert report.grounded == 1.0  # only titles present in the prompt, by construction
    for prompt, samples in zip(prompts, texts, strict=True):
        for text in samples:
            assert set(cited_titles(text)) <= set(prompt.quoted_titles)
    again = generator.generate(prompts[:2], n=4, temperature=1.0, seed=5, max_new_tokens=48)
    assert [[g.text for g in gs] for gs in again] == texts[:2]
    other = generator.generate(prompts[:2], n=4, temperature=1.0, seed=6, max_new_tokens=48)
    assert [[g.text for g in gs] for gs in other] != texts[:2]
    first = again[0][0]
    assert first.generator == "hf" and first.model_version == nano.name and first.seed == 5
    assert first.prompt_tokens > 50 and first.completion_tokens >= 1


def test_explore_mixes_nano_and_writers(nano: Path, dataset) -> None:
    split = split_dataset(dataset)
    cases = split.cases(dataset, "test")[:3]
    sources = [
        ExploreSource(make_generator(f"hf:{nano}"), 3, max_new_tokens=48),
        ExploreSource(make_generator("writer:mix"), 2),
    ]
    users = list(explore(cases, dataset.items, sources, seed=2))
    for user in users:
        versions = {c.model_version for c in user.candidates}
        assert nano.name in versions and "writers-1" in versions
        assert all(c.seed >= 0 and c.generator for c in user.candidates)


def test_fast_decoder_matches_generate(nano: Path, prompts) -> None:
    fast = make_generator(f"hf:{nano}")
    slow = make_generator(f"hf:{nano}?decoder=generate")
    assert fast.fast and not slow.fast
    greedy = [[g.text for g in gs] for gs in fast.generate(prompts[:2], n=1, temperature=0.0, max_new_tokens=40)]
    assert greedy == [
        [g.text for g in gs] for gs in slow.generate(prompts[:2], n=1, temperature=0.0, max_new_tokens=40)
    ]
