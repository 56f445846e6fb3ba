"""Configuration of the nano model build (tokenizer, architecture, SFT)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class NanoConfig:
    # --- tokenizer ---
    bpe_vocab_size: int = 2048  # BPE part only; one token per catalogue title comes on top
    # --- architecture (Llama) ---
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 3
    num_heads: int = 4
    max_positions: int = 2048
    # --- SFT data: writer profiles over the training users' H_u ---
    targets_per_user: int = 3  # H_u windows per training user
    profiles_per_prompt: int = 6  # writer profiles per prompt (one per writer when it equals the writer count)
    max_train_users: int | None = None  # None: every training user
    # --- SFT loop ---
    steps: int = 300
    prompts_per_step: int = 4  # each prompt is encoded once and shared by its profiles_per_prompt completions
    sampled_titles: int | None = 1024  # random title tokens in each step's softmax; None: the full vocabulary
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> NanoConfig:
        """A small build for tests, smoke runs and the quick demo: about a minute on one core. 300 steps is what it
        took to write well-formed profiles (40 steps looped: "Ay and dislikes 7% and dislikes 7% ...")."""
        base = cls(bpe_vocab_size=768, targets_per_user=1, max_train_users=60, steps=300, prompts_per_step=2)
        return replace(base, **overrides)

    def with_overrides(self, **overrides: Any) -> NanoConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
