"""Where the current policy lives (the reference of the next round) and how to load a policy from a path.

A policy folder is either a full causal LM or a PEFT LoRA adapter (``adapter_config.json``) whose base model is
named in the registry manifest. Both carry their tokenizer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lettingo.registry import ModelRegistry

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


class PolicyError(ValueError):
    """The current policy cannot serve as the reference of the requested round."""


@dataclass(frozen=True)
class PolicySource:
    """The policy a round starts from: a base model, plus the champion's adapter when it is a LoRA version."""

    base_model: str
    adapter_path: Path | None = None
    version: int | None = None
    kind: Literal["base", "lora", "full"] = "base"

    @property
    def model_path(self) -> str:
        """The folder that stands for this policy (what a profile writer or the gate loads)."""
        return str(self.adapter_path) if self.adapter_path else self.base_model

    @property
    def tokenizer_path(self) -> str:
        return self.model_path


def current_policy(registry: ModelRegistry, base_model: str | None) -> PolicySource:
    """The champion of ``registry`` (verified, local), or ``base_model`` when there is no champion yet."""
    champion = registry.champion()
    if champion is None:
        if not base_model:
            raise PolicyError(f"model {registry.name!r} has no champion yet: name a base model to start from")
        return PolicySource(base_model=base_model)
    manifest = registry.manifest(champion)
    path = registry.local_path(champion)
    if manifest.kind == "lora":
        return PolicySource(base_model=manifest.base_model, adapter_path=path, version=champion, kind="lora")
    return PolicySource(base_model=str(path), version=champion, kind="full")


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_model(path: str | Path) -> str:
    return json.loads((Path(path) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def load_policy(model_path: str | Path, base_model: str | None = None, trainable: bool = False) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a full-model folder or a LoRA adapter folder (on its base model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if is_adapter(model_path):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_model or adapter_base_model(model_path), dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(model_path), is_trainable=trainable)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    if not trainable:
        model.eval()
    return model, tokenizer
