"""Constrained decoding for tokenizers with one token per title: only titles present in the prompt may appear.

With it, every title a nano profile cites comes from the user's own history (grounded by construction); the
DESIGN notes that without it a model this small garbled or invented titles and DPO moved nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from transformers import LogitsProcessor


class PromptTitlesOnly(LogitsProcessor):
    """Masks every title token that does not occur in the row's ``input_ids`` so far (prompt or earlier output).

    Works for any batch layout (left padding, several samples per prompt), because each row is judged on its
    own tokens; a title the row has already produced stays allowed, since it came from the prompt.
    """

    def __init__(self, title_ids: Iterable[int], vocab_size: int, banned_ids: Iterable[int] = ()) -> None:
        self.is_title = torch.zeros(vocab_size, dtype=torch.bool)
        ids = torch.tensor(sorted(set(title_ids)), dtype=torch.long)
        if len(ids):
            self.is_title[ids] = True
        # Always masked: for nano, the BPE pieces that hold a quote, so quotes only ever open a real title.
        self.banned = torch.zeros(vocab_size, dtype=torch.bool)
        banned = torch.tensor(sorted(set(banned_ids)), dtype=torch.long)
        if len(banned):
            self.banned[banned] = True

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab = scores.shape[-1]
        is_title, banned = self._fit(self.is_title, vocab, scores.device), self._fit(self.banned, vocab, scores.device)
        present = torch.zeros_like(scores, dtype=torch.bool)
        present.scatter_(1, input_ids.clamp(max=vocab - 1), True)
        return scores.masked_fill((is_title & ~present) | banned, float("-inf"))

    def allowed(self, prompt_ids: Sequence[int]) -> torch.Tensor:
        """The token ids a continuation of ``prompt_ids`` may hold, sorted: the same rule, as a list."""
        scores = self(torch.tensor([prompt_ids]), torch.zeros((1, len(self.is_title))))
        return torch.isfinite(scores[0]).nonzero().squeeze(1)

    @staticmethod
    def _fit(mask: torch.Tensor, vocab: int, device: torch.device) -> torch.Tensor:
        """The mask cut or padded to the model's head width (a head can be wider than the tokenizer)."""
        mask = mask[:vocab].to(device)
        if mask.shape[0] < vocab:
            mask = torch.cat([mask, torch.zeros(vocab - mask.shape[0], dtype=torch.bool, device=device)])
        return mask


def allowed_token_ids(
    prompt_ids: Sequence[int], title_ids: Iterable[int], vocab_size: int, banned_ids: Iterable[int] = ()
) -> list[int]:
    """Every non-title, non-banned token plus the prompt's titles: the same rule as a flat list (vLLM's
    ``allowed_token_ids``)."""
    titles, banned = set(title_ids), set(banned_ids)
    present = titles.intersection(prompt_ids)
    return [i for i in range(vocab_size) if (i not in titles or i in present) and i not in banned]
