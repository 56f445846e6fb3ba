"""The one interface every profile generator backend implements."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from typing import Any

from lettingo.errors import ModelError
from lettingo.generators.decoding import Decoding, finish_text
from lettingo.prompts.profile import ProfilePrompt


class GeneratorError(ModelError):
    """A backend failed to load or to generate (bad model path, server down, adapter rejected)."""


@dataclass(frozen=True, slots=True)
class Generation:
    """One sampled profile, with where it came from."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # wall time of the call that produced it (shared by a batch)
    generator: str
    model_version: str
    seed: int
    finished: bool = True  # False when it stopped at max_new_tokens
    trimmed: bool = False  # True when finish_text cut a stop string or a loop off the backend's text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_seed(seed: int, prompt: ProfilePrompt) -> int:
    """A per-prompt seed derived from the call's seed and the prompt text, so one prompt's samples do not depend
    on which other prompts share its batch (results stay reproducible when a run resumes part-way)."""
    digest = hashlib.sha256(f"{seed}\x00{prompt.text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Generator(ABC):
    """Samples ``n`` profiles per prompt. Implementations batch internally and are safe to call repeatedly.

    Every backend applies :attr:`decoding` (repetition control and stop strings, :mod:`lettingo.generators.decoding`)
    as far as it can while sampling, and :func:`finish_text` cuts whatever stop string or loop remains."""

    name: str
    model_version: str
    decoding: Decoding = Decoding()

    def generate(
        self,
        prompts: list[ProfilePrompt],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 96,
        seed: int = 0,
        decoding: Decoding | None = None,
    ) -> list[list[Generation]]:
        """``n`` generations for each prompt, in prompt order; ``decoding`` overrides the generator's own."""
        check_sampling(n, temperature, max_new_tokens)
        decoding = decoding or self.decoding
        out = self._generate(prompts, n, temperature, max_new_tokens, seed, decoding)
        return [[_finished(g, decoding) for g in gens] for gens in out]

    @abstractmethod
    def _generate(
        self,
        prompts: list[ProfilePrompt],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        decoding: Decoding,
    ) -> list[list[Generation]]:
        """The backend's sampling; arguments are already checked."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as this generator's tokenizer splits it; whitespace words for a backend without
        one (the writers, a remote server)."""
        return len(text.split())

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models, engines or connections."""

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finished(generation: Generation, decoding: Decoding) -> Generation:
    # a profile cut by the token limit keeps its full sentences only (with cut_loops: writers never run on)
    complete = generation.finished or not decoding.cut_loops
    text, cut = finish_text(generation.text, decoding.stop, decoding.cut_loops, complete)
    return replace(generation, text=text, trimmed=True) if cut else generation


def check_sampling(n: int, temperature: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
