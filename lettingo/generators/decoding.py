"""Repetition control and stop conditions, the same in every backend.

A profile is one short paragraph. Three things keep a generator from looping (the quick nano used to write
``and dislikes 7% and dislikes 7% ...`` until its token limit):

* **No repeated n-grams in the completion** (``no_repeat_ngram_size``): a token that would repeat an n-gram the
  completion already holds is masked. The prompt is left out of the rule, so a model may still copy a title or
  a figure from its history. The right size depends on the tokenizer: with one token per title (nano) 4 is
  plenty; a byte-level BPE spells ``(1995)`` in five tokens, so two titles of the same year share a 6-gram and
  a small size would forbid citing the second one. ``None`` picks :data:`NGRAM_WITH_TITLE_TOKENS` or
  :data:`NGRAM_SUBWORD` by the tokenizer.
* **A repetition penalty** on the completion's tokens (off by default: it also penalises the digits and quotes
  every title citation needs). OpenAI-compatible servers get ``frequency_penalty`` instead.
* **Stop strings**: once the profile has begun (some non-blank text before it), a stop string ends it:
  a blank line, or prompt markup the model should never write.

Whatever the backend did, :func:`finish_text` cuts the text at the first stop string and at the start of a
loop (a word n-gram seen :data:`LOOP_REPEATS` times), so no served profile repeats itself, and back to its last
full sentence when it stops mid-sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

NGRAM_WITH_TITLE_TOKENS = 4
NGRAM_SUBWORD = 8
DEFAULT_STOP = ("\n\n", "<history>", "</history>", "Profile:")
LOOP_WORDS = 4  # a loop: the same run of this many words ...
LOOP_REPEATS = 3  # ... seen this many times
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


@dataclass(frozen=True, slots=True)
class Decoding:
    """How a backend keeps a completion from repeating itself, and when it stops."""

    no_repeat_ngram_size: int | None = None
    """Completion n-grams that may not occur twice; None: by tokenizer (4 with title tokens, 8 otherwise); 0: off."""
    repetition_penalty: float = 1.0
    """>1 divides the logits of tokens already in the completion (the prompt is excluded); 1: off."""
    frequency_penalty: float = 0.0
    """OpenAI-compatible servers: the standard frequency_penalty (vLLM and OpenAI: output tokens only)."""
    stop: tuple[str, ...] = field(default=DEFAULT_STOP)
    """Strings that end a profile once it has begun."""
    cut_loops: bool = True
    """Cut the returned text where a loop begins (:func:`finish_text`)."""
    grounded: bool = True
    """Quoted titles and stated figures must be the history's (:mod:`lettingo.generators.grounding`)."""

    def __post_init__(self) -> None:
        if self.no_repeat_ngram_size is not None and self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise ValueError(f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")

    def ngram_size(self, has_title_tokens: bool) -> int:
        if self.no_repeat_ngram_size is not None:
            return self.no_repeat_ngram_size
        return NGRAM_WITH_TITLE_TOKENS if has_title_tokens else NGRAM_SUBWORD

    @classmethod
    def from_options(cls, options: dict[str, str], base: Decoding | None = None) -> Decoding:
        """A spec's ``no_repeat_ngram``, ``repetition_penalty``, ``frequency_penalty`` options over ``base``."""
        base = base or cls()
        changes: dict[str, Any] = {}
        if "no_repeat_ngram" in options:
            changes["no_repeat_ngram_size"] = int(options["no_repeat_ngram"])
        if "repetition_penalty" in options:
            changes["repetition_penalty"] = float(options["repetition_penalty"])
        if "frequency_penalty" in options:
            changes["frequency_penalty"] = float(options["frequency_penalty"])
        if "grounded" in options:
            changes["grounded"] = options["grounded"].lower() in ("1", "true", "yes", "on")
        return replace(base, **changes) if changes else base


OFF = Decoding(
    no_repeat_ngram_size=0, repetition_penalty=1.0, frequency_penalty=0.0, stop=(), cut_loops=False, grounded=False
)
"""No control at all: for short answers (the LLM judge) and for measuring what the controls change."""


def stop_index(text: str, stop: Sequence[str]) -> int | None:
    """Where the first stop string that follows some non-blank text begins, or None."""
    best = None
    for s in stop:
        start = 0
        while (at := text.find(s, start)) >= 0:
            if text[:at].strip():
                best = at if best is None else min(best, at)
                break
            start = at + 1
    return best


def loop_start(text: str, words: int = LOOP_WORDS, repeats: int = LOOP_REPEATS) -> int | None:
    """Character offset where a loop begins: the second occurrence of a ``words``-word run that occurs
    ``repeats`` times or more; None when the text does not loop."""
    spans = [(m.start(), m.group().casefold().strip(".,;:!?\"'")) for m in _WORD.finditer(text)]
    seen: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(spans) - words + 1):
        key = tuple(w for _, w in spans[i : i + words])
        starts = seen.setdefault(key, [])
        starts.append(spans[i][0])
        if len(starts) >= repeats:
            return starts[1]
    return None


def finish_text(
    text: str, stop: Sequence[str] = DEFAULT_STOP, cut_loops: bool = True, complete: bool = True
) -> tuple[str, bool]:
    """``text`` cut at its first stop string and (with ``cut_loops``) at the start of a loop, then back to its
    last full sentence when a loop was cut or the text is not ``complete`` (it ran into the token limit);
    returns the text and whether anything was cut."""
    cut = len(text)
    at = stop_index(text, stop)
    if at is not None:
        cut, complete = at, True
    looping = loop_start(text[:cut]) if cut_loops else None
    if looping is not None:
        cut, complete = looping, False
    if cut_loops and not _SENTENCE_END.search(text[:cut].rstrip()[-3:] + " "):
        complete = False  # ended mid-sentence (a constrained row with nothing left to write): keep full sentences
    if not complete:
        kept = text[:cut].rstrip()
        # a full stop right after a digit at the very end may be a decimal point ("average rating 3." of "3.7")
        ends = [
            m.end()
            for m in _SENTENCE_END.finditer(kept)
            if not (m.end() == len(kept) and kept[m.start() - 1 : m.start()].isdigit())
        ]
        if ends:
            cut = ends[-1]
    return text[:cut].strip(), cut < len(text.rstrip())


def repeated_ngram_rate(text: str, n: int = LOOP_WORDS) -> float:
    """Share of the text's word n-grams that already occurred earlier in it (0 for a text without repeats)."""
    words = [w.casefold().strip(".,;:!?\"'") for w in _WORD.findall(text)]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)
