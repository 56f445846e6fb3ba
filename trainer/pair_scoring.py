"""Sequence log-probabilities of the chosen and rejected completions, for the gate's held-out pair metrics.

Tokenised like TRL's DPO preprocessing: prompt + completion + EOS, the completion starting where the tokenised
prompt and the tokenised prompt+completion diverge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lettingo.records import PreferencePair
from trainer.policy import load_policy


def _completion_ids(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], int]:
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + completion)["input_ids"] + [tokenizer.eos_token_id]
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    return full_ids, start


@torch.no_grad()
def sequence_logps(
    model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 16
):
    """Sum of log p(completion token | everything before) for each (prompt, completion)."""
    results: list[float] = []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        encoded = [
            _completion_ids(tokenizer, p, c)
            for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size], strict=True)
        ]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        completion_mask = torch.zeros((len(encoded), width), dtype=torch.bool)
        for row, (ids, first) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            completion_mask[row, first : len(ids)] = True
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False).logits
        logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = input_ids[:, 1:].to(device)
        token_logps = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mask = completion_mask[:, 1:].to(device)
        results.extend((token_logps * mask).sum(dim=-1).tolist())
    return results


def pair_logps(model_path: str, pairs: Sequence[PreferencePair]) -> tuple[list[float], list[float]]:
    """(log p(chosen), log p(rejected)) of every pair under the policy at ``model_path``."""
    model, tokenizer = load_policy(model_path)
    prompts = [p.prompt for p in pairs]
    chosen = sequence_logps(model, tokenizer, prompts, [p.chosen for p in pairs])
    rejected = sequence_logps(model, tokenizer, prompts, [p.rejected for p in pairs])
    return chosen, rejected
