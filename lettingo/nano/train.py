"""The nano model and its SFT loop.

Each step encodes a few prompts once and reuses their key/value cache for all of each prompt's completions
(gradients flow through the cache). The prompt is ~90 % of a training sequence, so this is several times
cheaper than running every (prompt, completion) pair in full; the loss and its gradients are the same. The
vocabulary projection is applied only at completion positions, the only ones with a loss, and (by default) over
a sampled vocabulary: all BPE tokens but only some of the ~10k title tokens (see :func:`head_for_step`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lettingo.nano.config import NanoConfig
from lettingo.nano.sft_data import SftPrompt, completion_text, draw_profiles
from lettingo.nano.tokenizer import title_token_ids

log = logging.getLogger(__name__)
IGNORE = -100


def make_model(cfg: NanoConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


@dataclass(frozen=True, slots=True)
class SftStats:
    steps: int
    first_loss: float
    final_loss: float  # mean over the last 10 % of steps
    seconds: float
    completions_seen: int


def _left_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


def _right_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        targets[i, : len(r)] = torch.tensor(r)
    return ids, targets


def shared_prompt_loss(
    model: LlamaForCausalLM,
    prompt_rows: Sequence[list[int]],
    completion_rows: Sequence[list[int]],
    pad_id: int,
    head_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean next-token loss over the completions; ``completion_rows`` holds ``len(completion_rows) //
    len(prompt_rows)`` completions per prompt, grouped by prompt in order. With ``head_ids`` (sorted, holding
    every target) the softmax runs over those tokens only."""
    per_prompt = len(completion_rows) // len(prompt_rows)
    prompt_ids, prompt_mask = _left_pad(prompt_rows, pad_id)
    encoded = model.model(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True)
    cache = encoded.past_key_values
    cache.batch_repeat_interleave(per_prompt)
    comp_ids, targets = _right_pad(completion_rows, pad_id)
    mask = torch.cat([prompt_mask.repeat_interleave(per_prompt, 0), torch.ones_like(comp_ids)], dim=1)
    hidden = model.model(input_ids=comp_ids, attention_mask=mask, past_key_values=cache, use_cache=False)
    last_prompt_state = encoded.last_hidden_state[:, -1:].repeat_interleave(per_prompt, 0)
    # The first completion token is predicted from the prompt's last position, token i from completion token i-1.
    predicting = torch.cat([last_prompt_state, hidden.last_hidden_state[:, :-1]], dim=1)
    keep = targets != IGNORE
    if head_ids is None:
        return F.cross_entropy(model.lm_head(predicting[keep]), targets[keep])
    logits = predicting[keep] @ model.lm_head.weight[head_ids].T
    return F.cross_entropy(logits, torch.searchsorted(head_ids, targets[keep]))


def head_for_step(
    prompt_rows: Sequence[list[int]], first_title: int, vocab: int, sampled_titles: int, generator: torch.Generator
) -> torch.Tensor:
    """Sampled softmax: every BPE token, every title of the step's prompts (the ones a profile may cite, and the
    other prompts' titles as hard negatives), and ``sampled_titles`` random other titles, so that over the run
    every title's logit is pushed down where it does not belong. Title ids are the tail ``[first_title, vocab)``."""
    in_prompts = torch.tensor(sorted({t for row in prompt_rows for t in row if t >= first_title}), dtype=torch.long)
    random_titles = torch.randint(first_title, vocab, (sampled_titles,), generator=generator)
    return torch.cat([torch.arange(first_title), in_prompts, random_titles]).unique(sorted=True)


def _lr_factor(step: int, cfg: NanoConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_sft(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[SftPrompt], cfg: NanoConfig
) -> SftStats:
    """Plain SFT on writer profiles; deterministic for ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    negatives = torch.Generator().manual_seed(cfg.seed)
    prompt_ids = tokenizer([p.prompt.text for p in prompts], add_special_tokens=False)["input_ids"]
    titles = sorted(title_token_ids(tokenizer))
    first_title, vocab = (titles[0], len(tokenizer)) if titles else (len(tokenizer), len(tokenizer))
    if titles != list(range(first_title, vocab)):
        raise ValueError("title tokens must be the last ids of the vocabulary")
    order: list[int] = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(cfg.steps):
        if len(order) < cfg.prompts_per_step:
            fresh = list(range(len(prompts)))
            rng.shuffle(fresh)
            order.extend(fresh)
        picked, order = order[: cfg.prompts_per_step], order[cfg.prompts_per_step :]
        profiles = [
            completion_text(text)
            for i in picked
            for text in draw_profiles(prompts[i].prompt, cfg.profiles_per_prompt, rng)
        ]
        completions = [
            [*ids, tokenizer.eos_token_id] for ids in tokenizer(profiles, add_special_tokens=False)["input_ids"]
        ]
        rows = [prompt_ids[i] for i in picked]
        head = (
            head_for_step(rows, first_title, vocab, cfg.sampled_titles, negatives)
            if cfg.sampled_titles is not None
            else None
        )
        loss = shared_prompt_loss(model, rows, completions, tokenizer.pad_token_id, head)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info(
                "nano sft step %d/%d loss %.3f (%.0f s)", step + 1, cfg.steps, losses[-1], time.perf_counter() - started
            )
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return SftStats(
        steps=cfg.steps,
        first_loss=losses[0],
        final_loss=sum(tail) / len(tail),
        seconds=time.perf_counter() - started,
        completions_seen=cfg.steps * cfg.prompts_per_step * cfg.profiles_per_prompt,
    )
