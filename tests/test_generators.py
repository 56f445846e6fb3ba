"""Generator specs, the writer backend, the title constraint, and batched sampling on the real nano model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lettingo.data import Item, LabelScheme, Rating, load_dataset, split_dataset
from lettingo.generators import GeneratorSpecError, make_generator, parse_spec
from lettingo.generators.hf import HFGenerator
from lettingo.generators.title_constraint import PromptTitlesOnly, allowed_token_ids
from lettingo.nano.quality import cited_titles
from lettingo.prompts.profile import profile_prompt


def _prompt(user: str = "u1"):
    items = {str(i): Item(str(i), f"Film {i} ({1990 + i})", ("Drama", "Comedy")[i % 2 :], 1990 + i) for i in range(12)}
    return profile_prompt([Rating(user, str(i), [5.0, 2.0, 4.0][i % 3], i) for i in range(12)], items)


@pytest.mark.parametrize(
    ("spec", "backend", "target", "model", "options"),
    [
        ("hf:/models/nano", "hf", "/models/nano", None, {}),
        ("hf:org/name?adapter=/a/b&version=v3", "hf", "org/name", None, {"adapter": "/a/b", "version": "v3"}),
        ("vllm:/models/base?adapter=/x", "vllm", "/models/base", None, {"adapter": "/x"}),
        ("openai:http://localhost:8000/v1#nano-v2", "openai", "http://localhost:8000/v1", "nano-v2", {}),
        ("writer:titles", "writer", "titles", None, {}),
        ("writer:genres, era", "writer", "genres,era", None, {}),
    ],
)
def test_parse_valid_specs(spec: str, backend: str, target: str, model: str | None, options: dict) -> None:
    parsed = parse_spec(spec)
    assert (parsed.backend, parsed.target, parsed.model, parsed.options) == (backend, target, model, options)
    assert parse_spec(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "must start with one of hf:, vllm:, openai:, writer:"),
        ("/models/nano", "must start with one of"),
        ("gguf:/models/x", "must start with one of"),
        ("hf:", "nothing after 'hf:'"),
        ("openai:localhost:8000#m", "needs an http\\(s\\) URL"),
        ("openai:http://localhost:8000/v1", "needs the served model after '#'"),
        ("writer:bogus", "unknown writer\\(s\\) bogus; known: mix, genres"),
        ("hf:/models/nano?temperature=2", "unknown option\\(s\\) temperature for hf"),
        ("hf:/models/nano?adapter", "bad options"),
    ],
)
def test_bad_specs_are_rejected_clearly(spec: str, message: str) -> None:
    with pytest.raises(GeneratorSpecError, match=message):
        parse_spec(spec)


def test_missing_local_model_is_rejected_before_loading(tmp_path) -> None:
    with pytest.raises(GeneratorSpecError, match="does not exist"):
        make_generator(f"hf:{tmp_path / 'no-such-model'}")
    with pytest.raises(GeneratorSpecError, match="adapter folder"):
        make_generator(f"hf:{tmp_path}", adapter=str(tmp_path / "no-adapter"))
    with pytest.raises(GeneratorSpecError, match="unknown option"):
        make_generator("writer:titles", device="cpu")


def test_writer_backend_is_seeded_and_names_each_writer() -> None:
    gen = make_generator("writer:mix")
    prompts = [_prompt("a"), _prompt("b")]

    def texts(result):
        return [[(g.text, g.generator) for g in gs] for gs in result]

    first = gen.generate(prompts, n=6, seed=3)
    assert texts(first) == texts(gen.generate(prompts, n=6, seed=3))
    assert [len(g) for g in first] == [6, 6]
    assert {g.generator for gs in first for g in gs} <= {f"writer:{n}" for n in gen.names}
    assert len({g.generator for gs in first for g in gs}) > 1
    assert texts(gen.generate(prompts[:1], n=6, seed=4)) != texts(first[:1])
    # one prompt's samples do not depend on the other prompts in the call
    assert texts(gen.generate(prompts[1:], n=6, seed=3)) == texts(first[1:])


def test_title_constraint_masks_titles_absent_from_the_row() -> None:
    titles = [5, 6, 7, 8]
    proc = PromptTitlesOnly(titles, vocab_size=10)
    input_ids = torch.tensor([[1, 5, 2, 7], [0, 0, 6, 3]])
    scores = proc(input_ids, torch.zeros(2, 10))
    allowed = torch.isfinite(scores)
    assert allowed[0].tolist() == [True] * 5 + [True, False, True, False] + [True]
    assert allowed[1].tolist() == [True] * 5 + [False, True, False, False] + [True]
    assert allowed_token_ids([1, 5, 2, 7], titles, 10) == [0, 1, 2, 3, 4, 5, 7, 9]
    assert PromptTitlesOnly(titles, 10, banned_ids=[3]).allowed([1, 5, 2, 7]).tolist() == [0, 1, 2, 4, 5, 7, 9]


@pytest.fixture(scope="module")
def user_prompts(dataset_path: Path):
    """Real profile prompts of six users, their histories cut to different lengths."""
    dataset = load_dataset(dataset_path)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    cases = split_dataset(dataset).cases(dataset, "validation")[:6]
    return [
        profile_prompt(c.long_history[-k:], dataset.items, labels)
        for c, k in zip(cases, (40, 6, 25, 12, 60, 3), strict=True)
    ]


def _texts(result) -> list[list[str]]:
    return [[g.text for g in gs] for gs in result]


def test_hf_samples_do_not_depend_on_the_batch(nano: HFGenerator, user_prompts) -> None:
    """A prompt's samples are the same alone or batched with prompts of other lengths, in any order or grouping."""
    prompts = user_prompts[:4]
    lengths = [len(nano.encode(p)) for p in prompts]
    assert nano.fast and len(set(lengths)) == len(lengths)
    sampling = {"n": 2, "temperature": 1.0, "max_new_tokens": 32, "seed": 11}
    together = nano.generate(prompts, **sampling)
    alone = [nano.generate([p], **sampling)[0] for p in prompts]
    assert _texts(together) == _texts(alone)
    assert _texts(nano.generate(prompts[::-1], **sampling)[::-1]) == _texts(together)
    greedy = _texts(nano.generate(prompts, **{**sampling, "temperature": 0.0}))
    nano.max_batch_rows = 2  # one prompt per batch
    try:
        assert _texts(nano.generate(prompts, **{**sampling, "temperature": 0.0})) == greedy
    finally:
        nano.max_batch_rows = 64
    for gens, alone_gens, length in zip(together, alone, lengths, strict=True):
        for g, a in zip(gens, alone_gens, strict=True):
            assert (g.prompt_tokens, g.completion_tokens, g.finished) == (length, a.completion_tokens, a.finished)
            assert 1 <= g.completion_tokens <= 32 and (g.finished or g.completion_tokens == 32)
            assert (g.generator, g.model_version, g.seed) == ("hf", nano.model_version, 11) and g.latency_s > 0


def test_hf_batch_keeps_each_row_to_its_own_prompts_titles(nano: HFGenerator, user_prompts) -> None:
    titles = [set(p.quoted_titles) for p in user_prompts]
    assert all(t - set().union(*(o for o in titles if o is not t)) for t in titles)  # each has titles of its own
    result = nano.generate(user_prompts, n=8, temperature=1.0, max_new_tokens=48, seed=3)
    cited = [[cited_titles(g.text) for g in gs] for gs in result]
    assert sum(len(c) for cs in cited for c in cs) >= 5  # not vacuous
    for own, cs in zip(titles, cited, strict=True):
        for c in cs:
            assert set(c) <= own


def test_hf_samples_differ_and_are_reproducible(nano: HFGenerator, user_prompts) -> None:
    first = _texts(nano.generate(user_prompts[:3], n=4, temperature=1.0, max_new_tokens=32, seed=5))
    assert _texts(nano.generate(user_prompts[:3], n=4, temperature=1.0, max_new_tokens=32, seed=5)) == first
    assert all(len(set(samples)) >= 3 for samples in first)
    assert _texts(nano.generate(user_prompts[:3], n=4, temperature=1.0, max_new_tokens=32, seed=6)) != first


def test_tokens_are_counted_by_the_generators_own_tokenizer(nano: HFGenerator) -> None:
    """lettingo_generated_tokens_total counts model tokens: the hf backend's tokenizer, whitespace words otherwise."""
    text = 'Likes "Heat (1995)" and dark dramas.'
    assert nano.count_tokens(text) == len(nano.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert make_generator("writer:titles").count_tokens(text) == len(text.split())
