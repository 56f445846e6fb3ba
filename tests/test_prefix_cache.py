"""The shared prompt prefix's keys and values, computed once per loaded model and reused by every prompt: the same
text as encoding each prompt whole (greedy decoding, nano model), and computed again when the model changes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from lettingo.data import LabelScheme, load_dataset, split_dataset
from lettingo.generators.hf import HFGenerator
from lettingo.prompts.profile import INSTRUCTIONS, SYSTEM_PROMPT, profile_prompt

GREEDY = {"temperature": 0.0, "max_new_tokens": 40, "seed": 0}


@pytest.fixture(scope="module")
def user_prompts(dataset_path: Path):
    """Real profile prompts of eight users, their histories cut to different lengths."""
    dataset = load_dataset(dataset_path)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    cases = split_dataset(dataset).cases(dataset, "validation")[:8]
    return [
        profile_prompt(c.long_history[-k:], dataset.items, labels)
        for c, k in zip(cases, (40, 6, 25, 12, 60, 3, 1, 18), strict=True)
    ]


def texts(generations) -> list[list[str]]:
    return [[g.text for g in gens] for gens in generations]


def test_the_shared_prefix_is_the_system_text_and_instructions(nano_model: Path, user_prompts) -> None:
    generator = HFGenerator(str(nano_model), device="cpu")
    prefix = generator._shared_prefix()
    text = generator.tokenizer.decode(list(prefix.ids))
    assert text.startswith(SYSTEM_PROMPT)
    assert INSTRUCTIONS in text
    assert all(prefix.matches(generator.encode(p)) for p in user_prompts)


@pytest.mark.parametrize("decoder", ["fast", "generate"])
def test_the_prefix_cache_writes_the_same_greedy_text(nano_model: Path, user_prompts, decoder: str) -> None:
    cached = HFGenerator(str(nano_model), device="cpu", decoder=decoder)
    whole = HFGenerator(str(nano_model), device="cpu", decoder=decoder, prefix_cache=False)
    prompts = user_prompts if decoder == "fast" else user_prompts[:4]
    assert texts(cached.generate(prompts, **GREEDY)) == texts(whole.generate(prompts, **GREEDY))
    # several samples per prompt (the cache copied to each sample's row), under the same seeds
    sampled = {**GREEDY, "temperature": 1.0, "n": 2}
    assert texts(cached.generate(prompts, **sampled)) == texts(whole.generate(prompts, **sampled))
    assert cached._prefix is not None and whole._prefix is None


@pytest.mark.parametrize("decoder", ["fast", "generate"])
def test_a_new_model_gets_its_own_prefix_cache(nano_model: Path, user_prompts, decoder: str) -> None:
    cached = HFGenerator(str(nano_model), device="cpu", decoder=decoder)
    before = texts(cached.generate(user_prompts[:4], **GREEDY))  # the prefix cache of the first model
    swapped = copy.deepcopy(cached.model)
    with torch.no_grad():  # another version: the first layer's key and value projections moved
        swapped.model.layers[0].self_attn.k_proj.weight.mul_(1.5)
        swapped.model.layers[0].self_attn.v_proj.weight.mul_(-1.0)
    whole = HFGenerator(str(nano_model), device="cpu", decoder=decoder, prefix_cache=False)
    whole.model = swapped
    expected = texts(whole.generate(user_prompts[:4], **GREEDY))
    assert expected != before  # the swap changes what the model writes
    cached.model, cached.model_version = swapped, "v2"
    assert texts(cached.generate(user_prompts[:4], **GREEDY)) == expected
