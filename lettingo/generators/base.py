"""The one interface every profile generator backend implements."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from lettingo.prompts.profile import ProfilePrompt


class GeneratorError(RuntimeError):
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_seed(seed: int, prompt: ProfilePrompt) -> int:
    """A per-prompt seed derived from the call's seed and the prompt text, so one prompt's samples do not depend
    on which other prompts share its batch (results stay reproducible when a run resumes part-way)."""
    digest = hashlib.sha256(f"{seed}\x00{prompt.text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Generator(ABC):
    """Samples ``n`` profiles per prompt. Implementations batch internally and are safe to call repeatedly."""

    name: str
    model_version: str

    def generate(
        self,
        prompts: list[ProfilePrompt],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 96,
        seed: int = 0,
    ) -> list[list[Generation]]:
        """``n`` generations for each prompt, in prompt order."""
        check_sampling(n, temperature, max_new_tokens)
        return self._generate(prompts, n, temperature, max_new_tokens, seed)

    @abstractmethod
    def _generate(
        self, prompts: list[ProfilePrompt], n: int, temperature: float, max_new_tokens: int, seed: int
    ) -> list[list[Generation]]:
        """The backend's sampling; arguments are already checked."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models, engines or connections."""

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_sampling(n: int, temperature: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
