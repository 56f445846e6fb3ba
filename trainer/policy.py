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

from lettingo.errors import ModelError
from lettingo.registry import MANIFEST_NAME, Manifest, ModelRegistry, is_ref, resolve_base_model

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


class PolicyError(ModelError, ValueError):
    """The current policy cannot serve as the reference of the requested round."""


@dataclass(frozen=True)
class PolicySource:
    """The policy a round starts from: a base model (a local folder, and the ``base:<id>`` it is registered as),
    plus the champion's adapter when it is a LoRA version."""

    base_model: str
    adapter_path: Path | None = None
    version: int | None = None
    kind: Literal["base", "lora", "full"] = "base"
    base_ref: str | None = None

    @property
    def model_path(self) -> str:
        """The folder that stands for this policy (what a profile writer or the gate loads)."""
        return str(self.adapter_path) if self.adapter_path else self.base_model

    @property
    def tokenizer_path(self) -> str:
        return self.model_path


def current_policy(registry: ModelRegistry, base_model: str | None) -> PolicySource:
    """The champion of ``registry`` (verified, local), or ``base_model`` when there is no champion yet.

    The base model is registered in ``registry`` (content-addressed: once) and served from there, so every
    manifest names it as ``base:<id>``, never by a path that only exists on the training machine."""
    champion = registry.champion()
    if champion is None:
        if not base_model:
            raise PolicyError(f"model {registry.name!r} has no champion yet: name a base model to start from")
        base = registry.base_models.add(base_model)
        return PolicySource(str(registry.base_models.local_path(base.id)), base_ref=base.ref)
    manifest = registry.manifest(champion)
    path = registry.local_path(champion)
    base = registry.base_models.add(manifest.base_model)  # a path of an older manifest is registered now
    if manifest.kind == "lora":
        return PolicySource(str(registry.base_models.local_path(base.id)), path, champion, "lora", base_ref=base.ref)
    return PolicySource(base_model=str(path), version=champion, kind="full", base_ref=base.ref)


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_model(path: str | Path) -> str:
    """The base model folder of an adapter: the ``base:<id>`` of its registry manifest when the adapter is a
    published version (resolved in the registries this process opened), else what PEFT wrote when training."""
    manifest = Path(path) / MANIFEST_NAME
    if manifest.is_file():
        base = Manifest.from_json_bytes(manifest.read_bytes()).base_model
        if is_ref(base):
            return resolve_base_model(base, [Path(path).parents[1]])
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
