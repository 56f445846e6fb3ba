"""Supervised fine-tuning on profiles: SFT on P+ (the paper's ablation) and a warm-up on the writers' profiles.

SFT on P+: the same pairs and the same budget as a DPO round (epochs, batch size, learning rate, every weight),
but only the chosen profile of each pair is learnt, by plain next-token loss. What DPO gains over this comes from
the rejected side, the contrast, not from seeing good profiles.

Prompts and profiles are rendered for the model's tokenizer (lettingo.prompts.rendering), so a chat model learns
the format it is sampled in.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lettingo.nano.train import shared_prompt_loss
from lettingo.prompts.rendering import model_completion, model_prompt
from lettingo.records import PreferencePair

log = logging.getLogger(__name__)


def sft_on_chosen(
    base_model: str | Path,
    pairs: Sequence[PreferencePair],
    out: Path,
    epochs: int = 2,
    batch_size: int = 8,
    learning_rate: float = 5e-4,
    seed: int = 0,
) -> Path:
    """Fine-tune ``base_model`` on each distinct (prompt, chosen) of ``pairs``; save it (and its tokenizer) to
    ``out`` and return ``out``."""
    examples = sorted({(p.prompt, p.chosen) for p in pairs})
    if not examples:
        raise ValueError("SFT on P+ needs at least one pair")
    return sft_on_profiles(base_model, examples, out, epochs, batch_size, learning_rate, seed)


def sft_on_profiles(
    base_model: str | Path,
    examples: Sequence[tuple[str, str]],
    out: Path,
    epochs: int = 2,
    batch_size: int = 8,
    learning_rate: float = 5e-4,
    seed: int = 0,
) -> Path:
    """Fine-tune every weight of ``base_model`` on (profile prompt text, profile) ``examples`` by next-token loss
    on the profile; save it (and its tokenizer) to ``out`` and return ``out``."""
    if not examples:
        raise ValueError("SFT needs at least one example")
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = tokenizer([model_prompt(tokenizer, p) for p, _ in examples], add_special_tokens=False)["input_ids"]
    chosen = tokenizer([model_completion(tokenizer, t) for _, t in examples], add_special_tokens=False)["input_ids"]
    order = list(range(len(examples)))
    rng = random.Random(seed)
    started, steps = time.perf_counter(), 0
    model.train()
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = shared_prompt_loss(
                model, [prompts[i] for i in batch], [[*chosen[i], tokenizer.eos_token_id] for i in batch], pad
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            steps += 1
            if steps % 10 == 0:
                log.info("SFT step %d, loss %.3f, %.0f s", steps, loss.item(), time.perf_counter() - started)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log.info(
        "SFT: %d profiles, %d steps, final loss %.3f, %.0f s -> %s",
        len(examples),
        steps,
        loss.item(),
        time.perf_counter() - started,
        out,
    )
    return out
