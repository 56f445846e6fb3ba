""":class:`~lettingo.generators.decoding.Decoding` for torch backends: logits processors over the completion only
(transformers' own n-gram ban and repetition penalty, told to skip the prompt) and the stop rule.

Every rule looks at one row's own completion tokens, so a row's text still does not depend on the other rows of
its batch (the fast decoder's guarantee, :mod:`lettingo.generators.llama_decode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
)

from lettingo.generators.decoding import Decoding, stop_index
from lettingo.generators.grounding import RowState


class CompletionNoRepeatNGram(NoRepeatNGramLogitsProcessor):
    """transformers' n-gram ban over the tokens after ``prompt_length`` only: copying the prompt stays allowed."""

    def __init__(self, ngram_size: int, prompt_length: int = 0) -> None:
        super().__init__(ngram_size)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return super().__call__(input_ids[:, self.prompt_length :], scores)


def completion_processors(decoding: Decoding, has_title_tokens: bool, prompt_length: int = 0) -> list[LogitsProcessor]:
    """The processors of ``decoding`` for rows whose first ``prompt_length`` tokens are the prompt."""
    out: list[LogitsProcessor] = []
    size = decoding.ngram_size(has_title_tokens)
    if size > 0:
        out.append(CompletionNoRepeatNGram(size, prompt_length))
    if decoding.repetition_penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(float(decoding.repetition_penalty), prompt_length or None))
    return out


def apply_processors(
    processors: Sequence[LogitsProcessor],
    completion: torch.Tensor,
    scores: torch.Tensor,
    columns: torch.Tensor,
    vocab_size: int,
    banned: Sequence[torch.Tensor | None] = (),
) -> torch.Tensor:
    """``processors`` and per-row ``banned`` masks on scores computed for ``columns`` (sorted token ids) only:
    spread over the whole vocabulary, processed, gathered back."""
    masks = [(i, m) for i, m in enumerate(banned) if m is not None]
    processors = processors if completion.shape[1] else ()
    if not processors and not masks:
        return scores
    full = scores.new_full((scores.shape[0], vocab_size), float("-inf"))
    full[:, columns] = scores
    for processor in processors:
        full = processor(completion, full)
    for i, mask in masks:
        full[i, mask[:vocab_size]] = float("-inf")
    return full[:, columns]


class GroundingProcessor(LogitsProcessor):
    """:class:`~lettingo.generators.grounding.GroundingRule` for ``generate`` (every row shares one prompt)."""

    def __init__(self, rule: Any, facts: Any, prompt_length: int) -> None:
        self.rule, self.facts, self.prompt_length = rule, facts, prompt_length
        self.states: dict[int, Any] = {}  # row -> its RowState, carried between steps

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, ids in enumerate(input_ids[:, self.prompt_length :].tolist()):
            state = self.states.get(row)
            if state is None:
                state = self.states[row] = RowState(self.facts)
            mask = self.rule.banned(ids, self.facts, state)
            if mask is not None:
                scores[row, mask[: scores.shape[1]].to(scores.device)] = float("-inf")
        return scores


class StopRule:
    """Ends a row once its decoded completion holds a stop string after some text (:func:`stop_index`).

    Decoding a row costs little, but not every step: a row is decoded only when its last token could end a
    stop string (its text holds a stop string's last character)."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)

    @cached_property
    def may_end(self) -> torch.Tensor:
        lasts = {s[-1] for s in self.stop}
        texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        return torch.tensor([any(c in t for c in lasts) for t in texts], dtype=torch.bool)

    def done(self, completion: Sequence[int]) -> bool:
        if not self.stop or not completion:
            return False
        last = completion[-1]
        if last < len(self.may_end) and not bool(self.may_end[last]):
            return False
        return stop_index(self.tokenizer.decode(list(completion), skip_special_tokens=True), self.stop) is not None


class StopCriteria(StoppingCriteria):
    """:class:`StopRule` for ``generate``: rows are judged on their tokens after ``prompt_length``."""

    def __init__(self, rule: StopRule, prompt_length: int) -> None:
        self.rule = rule
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        rows = input_ids[:, self.prompt_length :].tolist()
        return torch.tensor([self.rule.done(r) for r in rows], dtype=torch.bool, device=input_ids.device)
