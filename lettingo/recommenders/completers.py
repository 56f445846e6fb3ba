"""Text completion for the LLM judge from any profile generator backend (``hf``, ``vllm``, ``openai``).

The judge's prompts (lettingo.prompts.recommender) go in as one user message, so a chat model reads them through
its chat template; answers are decoded greedily, a few tokens long, with no repetition control, grounding or
stop strings (an answer is one word or one number).
"""

from __future__ import annotations

import time

from lettingo.generators.base import Generator
from lettingo.generators.decoding import OFF
from lettingo.prompts.profile import ProfilePrompt

ANSWER_TOKENS = 6


class GeneratorCompleter:
    """A :class:`~lettingo.recommenders.base.TextCompleter` over a generator; it keeps its own timing."""

    def __init__(self, generator: Generator, max_new_tokens: int = ANSWER_TOKENS) -> None:
        self.generator = generator
        self.max_new_tokens = max_new_tokens
        self.queries = 0
        self.seconds = 0.0

    def complete(self, prompts: list[str], temperature: float = 0.0) -> list[str]:
        started = time.perf_counter()
        wrapped = [ProfilePrompt(({"role": "user", "content": p},), p, ()) for p in prompts]
        out = self.generator.generate(
            wrapped, n=1, temperature=temperature, max_new_tokens=self.max_new_tokens, decoding=OFF
        )
        self.queries += len(prompts)
        self.seconds += time.perf_counter() - started
        return [gens[0].text for gens in out]

    @property
    def seconds_per_query(self) -> float:
        return self.seconds / self.queries if self.queries else 0.0


LLM_PREFIX = "llm:"


def is_judge_spec(reader: object) -> bool:
    return str(reader).startswith(LLM_PREFIX)


def judge_generator_spec(reader: object) -> str:
    """The generator spec after ``llm:``. A spec that went through ``pathlib.Path`` (a settings field typed as a
    path) lost a slash of its URL (``http:/host``); it is put back."""
    spec = str(reader)[len(LLM_PREFIX) :]
    for scheme in ("http", "https"):
        if f"{scheme}:/" in spec and f"{scheme}://" not in spec:
            spec = spec.replace(f"{scheme}:/", f"{scheme}://", 1)
    return spec


def load_judge(reader: object, dataset, batch_size: int = 16):
    """The paper's f_Rec, an LLM asked at temperature 0, from ``llm:<generator spec>``
    (``llm:hf:/models/SmolLM2``, ``llm:openai:http://host:8000/v1#model``)."""
    from lettingo.generators import make_generator
    from lettingo.recommenders.judge import LLMJudge

    generator = make_generator(judge_generator_spec(reader))
    return LLMJudge(GeneratorCompleter(generator), dataset, version=generator.model_version, batch_size=batch_size)
