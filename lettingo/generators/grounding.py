"""Grounded decoding: what a profile quotes and the figures it states must come from the user's history.

The profile prompt shows the history and a summary of its figures (:mod:`lettingo.prompts.history_stats`);
small models still write "average rating 4.2, likes 11% and dislikes 63%" for a user whose average is 3.1, and
cite a disliked film as a favourite. A per-row rule, applied at every step from the row's own completion so far:

* **Titles**: inside an open quote, only a continuation towards one of the prompt's titles is allowed (a trie
  over characters, so it works for any tokenizer: one token per title as in nano, or a title spelled over a
  dozen BPE pieces); a token may not open a quote that cannot become such a title. When the clause already
  states a sentiment ("Loved ...", "Did not enjoy ..."), only titles the user rated that way are allowed.
* **Markup**: no ``<`` or ``>``: the prompt's own delimiters are not a profile's (SmolLM2 answered with XML).
* **Terms**: a sentence that opens with "A" / "An" may only go on as the rater kind the history's shares make the
  user ("A generous rater", never "A hard-to-please viewer" for one who likes 70 %) or as another writer's opening
  ("A viewer of mainly"); after the writers' listing phrases (:func:`lettingo.profile_quality.term_slots`) only
  the history's genres, liked items' tags and decades may follow, joined as the writers join them. A small model
  spells a tag over several BPE pieces and drifted into "chn grishology"; the rule follows a pattern of the
  ``regex`` module, whose partial matching tells whether a text can still become a match, so any tokenizer works.
* **Figures**: after ``average rating``, ``likes``, ``dislikes``, ``from`` (a year range) and a decade's
  ``(`` ... ``on average)``, a number must be the true one, written as the summary writes it; words may follow
  instead ("likes Comedy"), numbers may not be other numbers.

The phrases are those :mod:`lettingo.profile_quality` reads, so with this rule every figure and title the checker
can read is true; what the checker cannot read is not constrained either. Rows are judged on their own tokens
only, so a row's text still does not depend on the other rows of its batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import regex
import torch

from lettingo.data import Sentiment
from lettingo.profile_quality import TermSlot, clauses, stated_sentiment, term_slots
from lettingo.prompts.history_stats import RATER_PHRASES, HistoryStats
from lettingo.prompts.profile import ProfilePrompt

_LEADING_DIGIT = re.compile(r"^\s?\d")
NO_NUMBER = "\x00"  # required where the history has no such figure (a decade the user never rated): no number fits


def _required_figures(prompt: ProfilePrompt) -> list[tuple[re.Pattern[str], Any]]:
    """(trigger, value or per-decade function) for each figure the summary states."""
    stats = HistoryStats.of(prompt.entries)
    if stats is None:
        return []
    decades: dict[str, list[float]] = {}
    for e in prompt.entries:
        if e.item.year is not None:
            decades.setdefault(str(e.item.year // 10 * 10), []).append(e.rating)
    out: list[tuple[re.Pattern[str], Any]] = [
        (re.compile(r"\baverage(?: (?:rating|score))?(?: (?:of|is|was))?:?", re.IGNORECASE), f" {stats.average:.1f}"),
        (re.compile(r"(?<![A-Za-z])lik(?:e|es|ed)\b", re.IGNORECASE), f" {stats.like_share:.0%}"),
        (re.compile(r"\bdislik(?:e|es|ed)\b", re.IGNORECASE), f" {stats.dislike_share:.0%}"),
        (
            re.compile(r"\b(\d{3}0)s\b[^.\d(]{0,40}?\(", re.IGNORECASE),
            {d: f"{sum(r) / len(r):.1f}" for d, r in decades.items()},
        ),
    ]
    if stats.oldest is not None:
        out.append((re.compile(r"\bfrom", re.IGNORECASE), f" {stats.oldest}"))
        out.append((re.compile(r"\bfrom \d{4} (?:to|until|through)", re.IGNORECASE), f" {stats.newest}"))
    return out


_SENTENCE_START = re.compile(r"(?:^|[.!?](?=\s|$))")
OTHER_OPENINGS = ("A viewer of mainly",)  # the writers' sentences that open with "A" and are not a rater kind


def _opening_slot(prompt: ProfilePrompt, slots: Sequence[TermSlot]) -> TermSlot | None:
    """A sentence that opens with "A" or "An" (alone) goes on as the true rater kind or another writer's opening,
    and no sentence opens as a slot that nothing true can follow ("Often dislikes" for a user who disliked
    nothing)."""
    stats = HistoryStats.of(prompt.entries)
    if stats is None:
        return None
    openings = [*RATER_PHRASES[stats.rater_kind], *OTHER_OPENINGS]
    allowed = "|".join(regex.escape(o) for o in openings)
    false = sorted({o for slot in slots if not slot.possible for o in slot.openings}, key=len, reverse=True)
    never = f"(?!(?:{'|'.join(regex.escape(o) for o in false)}))" if false else ""
    pattern = rf"\s*+(?:(?:{allowed})|(?!An?(?:\s|$)){never}).*"
    return TermSlot("opening", _SENTENCE_START, pattern, tuple(false), flags=regex.DOTALL)


def _figure_slots(prompt: ProfilePrompt) -> list[TermSlot]:
    """The strictness writer's rating phrase and the era writer's year range, figure after figure: once the
    average is followed by a comma, the shares must follow as the summary states them (the quick nano wrote
    "likes 83% and dislikes Favourites include ..." and "from 1940% of items")."""
    stats = HistoryStats.of(prompt.entries)
    if stats is None:
        return []
    shares = regex.escape(f", likes {stats.like_share:.0%} and dislikes {stats.dislike_share:.0%} of items")
    rating = rf"(?: of| is| was)?:? {stats.average:.1f}(?:{shares})?"
    out = [TermSlot("rating", re.compile(r"\baverage rating\b", re.IGNORECASE), rating)]
    if stats.oldest is not None:
        years = rf" {stats.oldest} to {stats.newest}"
        out.append(TermSlot("years", re.compile(r"\bwatched titles from\b", re.IGNORECASE), years))
    return out


_ITEM_SEPARATOR = re.compile(r",\s*|\s+and(?:\s+|$)")


def _lists_twice(listing: str, words: frozenset[str]) -> bool:
    """A listing names one word twice ("tagged classic, shenanigans, classic"; "the 1990s and 1990s"), or the item
    being written can no longer become a word not yet listed (so the row would run into a dead end)."""
    body = listing.strip()
    parts = [re.sub(r"^the ", "", w) for w in _ITEM_SEPARATOR.split(body.removesuffix("."))]
    done = parts if body.endswith(".") else parts[:-1]
    if len(done) != len(set(done)):
        return True
    if body.endswith("."):
        return False
    current, left = parts[-1], words - set(done)
    if not current:  # right after a separator: some word must be left to list
        return not left
    if "the ".startswith(current):  # "the 1990s": decades are listed after "the"
        return False
    # the item being written: the start of a word not listed yet, or one followed by the start of what may follow
    # it ("Rates Drama and Comedy highest", "Rates the 1990s best (4.1 on average)")
    return not any(w.startswith(current) or (current.startswith(w) and _after_item(current[len(w) :])) for w in left)


def _after_item(rest: str) -> bool:
    return " and".startswith(rest) or " highest".startswith(rest) or rest.startswith(" (")


def _trigger_phrases(slot: TermSlot) -> list[str]:
    """The phrases of a slot's trigger (``\\b(?:Often dislikes|...)\\b``, as lettingo.profile_quality builds it)."""
    inner = slot.trigger.pattern.removeprefix(r"\b(?:").removesuffix(r")\b")
    return [re.sub(r"\\(.)", r"\1", p) for p in inner.split("|")]


def _completes(text: str, token: str, phrase: str) -> bool:
    """``token`` (lower case) ends ``phrase`` as a whole word, which the text had not written yet."""
    tail = text[-len(phrase) - 1 :].lower()
    joined = tail + token
    at = joined.find(phrase, max(0, len(tail) - len(phrase) + 1))
    while at >= 0:
        end = at + len(phrase)
        if end > len(tail) and not joined[at - 1 : at].isalpha() and not joined[end : end + 1].isalpha():
            return True
        at = joined.find(phrase, at + 1)
    return False


def _finishes(allowed: regex.Pattern[str], rest: str, probe: str) -> bool:
    """The token completes the slot and goes on past it (nano's `` items.`` after ``... of``)."""
    m = allowed.match(rest + probe)
    return m is not None and len(rest) < m.end() < len(rest + probe)


@dataclass(frozen=True)
class PromptFacts:
    """The history's titles (their quoted text, outer quotes dropped) by sentiment, and its figures."""

    titles: dict[str, Sentiment]
    figures: tuple[tuple[re.Pattern[str], Any], ...]
    slots: tuple[TermSlot, ...] = ()
    false_phrases: tuple[str, ...] = ()  # phrases nothing true can follow, lower case: never written anywhere
    masks: dict[Sentiment | None, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)
    slot_masks: dict[tuple[int, str], torch.Tensor | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, prompt: ProfilePrompt) -> PromptFacts:
        titles = {e.quoted_title[1:-1]: e.sentiment for e in prompt.entries}
        slots = [*term_slots(prompt.entries), *_figure_slots(prompt)]
        opening = _opening_slot(prompt, slots)
        false = tuple(sorted({p.lower() for slot in slots if not slot.possible for p in _trigger_phrases(slot)}))
        return cls(titles, tuple(_required_figures(prompt)), (*slots, *([opening] if opening else [])), false)

    def open_slots(self, text: str) -> list[tuple[int, str]]:
        """(slot index, what follows its trigger) for each slot the text ends inside of: right after its trigger,
        or part of the way into what may follow it."""
        out = []
        for index, slot in enumerate(self.slots):
            ends = [m.end() for m in slot.trigger.finditer(text)]
            if not ends:
                continue
            rest = text[ends[-1] :]
            m = slot.allowed.fullmatch(rest, partial=True) if rest.strip() else None
            # a slot with false openings decides each token while its sentence is as short as they are:
            # "Often" matches, "Often dislikes" does not
            short = slot.openings and len(rest.strip()) <= max(map(len, slot.openings))
            if not rest.strip() or (m is not None and m.partial) or (short and slot.what == "opening"):
                out.append((index, rest))
        return out

    def pool(self, sentiment: Sentiment | None) -> frozenset[str]:
        if sentiment is None:
            return frozenset(self.titles)
        return frozenset(t for t, s in self.titles.items() if s is sentiment)

    def violated(self, text: str) -> bool:
        """The text states a figure that is not the true one (its last figure slot, read as far as it goes)."""
        best: tuple[int, str] | None = None
        for pattern, value in self.figures:
            for m in pattern.finditer(text):
                required = value.get(m.group(1), NO_NUMBER) if isinstance(value, dict) else value
                if required is not None and (best is None or m.end() > best[0]):
                    best = (m.end(), required)
        if best is None:
            return False
        rest = text[best[0] :]
        return bool(_LEADING_DIGIT.match(rest)) and not _consistent(best[1], rest)

    def requirement(self, text: str) -> tuple[str, str] | None:
        """(what must be written, what of it is written so far) when the text ends inside a figure's slot."""
        best: tuple[int, str] | None = None
        for pattern, value in self.figures:
            for m in pattern.finditer(text):
                required = value.get(m.group(1), NO_NUMBER) if isinstance(value, dict) else value
                if required is not None and (best is None or m.end() > best[0]):
                    best = (m.end(), required)
        if best is None:
            return None
        end, required = best
        rest = text[end:]
        if rest.strip() and not _LEADING_DIGIT.match(rest):
            return None  # words followed the trigger ("likes Comedy"): nothing required
        if rest and ((rest.startswith(required) and len(rest) > len(required)) or not required.startswith(rest)):
            return None  # written already (or diverged before the rule applied)
        return required, rest


def _consistent(required: str, written: str) -> bool:
    """``written`` is on the way to ``required``, or holds it followed by something that is not more digits."""
    if required.startswith(written):
        return True
    if not written.startswith(required):
        return False
    after = written[len(required) :]
    return not (after[0].isdigit() or (after[0] == "." and len(after) > 1 and after[1].isdigit()))


class GroundingRule:
    """Per tokenizer: the text of every token and indexes over it; per row, the tokens the rule bans."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer
        self._phrase_tokens: dict[str, list[tuple[int, str]]] = {}

    @cached_property
    def texts(self) -> list[str]:
        count = min(len(self.tokenizer), self.vocab_size)
        special = set(self.tokenizer.all_special_ids)
        decoded = self.tokenizer.batch_decode([[i] for i in range(count)])
        return ["" if i in special else t for i, t in enumerate(decoded)] + [""] * (self.vocab_size - count)

    @cached_property
    def by_first(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, t in enumerate(self.texts):
            if t:
                out.setdefault(t[0], []).append(i)
        return out

    @cached_property
    def probes(self) -> dict[str, dict[str, list[int]]]:
        """Token ids by first character and by their text up to the first quote (what a term slot can tell apart:
        a quote never belongs in one, so the thousands of nano title tokens are one probe)."""
        out: dict[str, dict[str, list[int]]] = {}
        for i, t in enumerate(self.texts):
            if t:
                probe = t[: t.index('"') + 1] if '"' in t else t
                out.setdefault(t[0], {}).setdefault(probe, []).append(i)
        return out

    @cached_property
    def empty(self) -> list[int]:
        """Tokens without text (EOS and the other special tokens): allowed in a slot only where it may end."""
        return [i for i, t in enumerate(self.texts) if not t]

    def _slot(self, facts: PromptFacts, index: int, rest: str) -> torch.Tensor | None:
        """The tokens a slot bans after ``rest``; cached per prompt, since rows and sentences meet the same states."""
        key = (index, rest)
        if key not in facts.slot_masks:
            allowed = facts.slots[index].allowed
            words = facts.slots[index].words
            ok = []
            for first, probes in self.probes.items():
                if allowed.fullmatch(rest + first, partial=True) is None:
                    continue
                for probe, ids in probes.items():
                    fits = allowed.fullmatch(rest + probe, partial=True) is not None or _finishes(allowed, rest, probe)
                    if fits and not (words and _lists_twice(rest + probe, words)):
                        ok.extend(ids)
            done = allowed.fullmatch(rest)
            if done is not None:
                ok.extend(self.empty)
            # nothing can follow (a phrase with no true continuation, as "Often dislikes" for a user who
            # disliked nothing): leave the row free rather than stuck
            facts.slot_masks[key] = (
                self._mask_allowing(ok) if ok and (done is None or len(ok) > len(self.empty)) else None
            )
        return facts.slot_masks[key]

    @cached_property
    def digit_start(self) -> list[int]:
        return [i for i, t in enumerate(self.texts) if _LEADING_DIGIT.match(t)]

    @cached_property
    def mid_number(self) -> list[int]:
        """Tokens in which a figure's trigger could end and its number begin (nano's `` (4.4``); quotes excluded."""
        return [i for i, t in enumerate(self.texts) if '"' not in t and re.search(r"[^\s\d]\s?\d", t)]

    @cached_property
    def number_continuation(self) -> torch.Tensor:
        """Tokens that would make a finished number longer (a digit, or a decimal point and a digit)."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        ids = [i for i, t in enumerate(self.texts) if t[:1].isdigit() or (t[:1] == "." and t[1:2].isdigit())]
        if ids:
            mask[torch.tensor(ids, dtype=torch.long)] = True
        return mask

    @cached_property
    def markup(self) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        ids = [i for i, t in enumerate(self.texts) if "<" in t or ">" in t]
        if ids:
            mask[torch.tensor(ids, dtype=torch.long)] = True
        return mask

    @cached_property
    def quote_tokens(self) -> dict[int, tuple[str, str | None]]:
        """Tokens holding a quote: (text after the first quote, the quoted text when the token closes it too)."""
        out = {}
        for i, t in enumerate(self.texts):
            if '"' in t:
                after = t.split('"', 1)[1]
                inner, closes, rest = after.partition('"')
                out[i] = (after, inner if closes and '"' not in rest else None)
        return out

    def completion_text(self, ids: Sequence[int]) -> str:
        texts = self.texts
        return "".join(texts[i] if i < len(texts) else "" for i in ids)

    def banned(self, ids: Sequence[int], facts: PromptFacts) -> torch.Tensor | None:
        """A boolean mask of the tokens the row may not produce next (None: no restriction)."""
        text = self.completion_text(ids)
        if text.count('"') % 2 == 1:
            return self._inside_title(text, facts)
        need = facts.requirement(text)
        if need is not None and need[1].strip():
            return self._figure(*need)  # a number has begun: only its true continuation
        mask = self._outside(facts, stated_sentiment(clauses(text)[-1]) if text.strip() else None).clone()
        if need is not None:  # a figure's slot is open: words may follow, or the true number
            mask |= self._figure(*need)
        candidates = self.mid_number
        if text[-1:].isdigit() or text[-1:] == ".":  # "4.3" written, then ".": "0" would make it "4.3.0"
            candidates = candidates + self.digit_start
        wrong = [i for i in candidates if facts.violated(text + self.texts[i])]
        if wrong:
            mask[torch.tensor(wrong, dtype=torch.long)] = True
        for index, rest in facts.open_slots(text):
            slot = self._slot(facts, index, rest)
            if slot is not None:
                mask |= slot
        for phrase in facts.false_phrases:
            completing = [i for i, t in self._completers(phrase) if _completes(text, t, phrase)]
            if completing:
                mask[torch.tensor(completing, dtype=torch.long)] = True
        return mask

    def _completers(self, phrase: str) -> list[tuple[int, str]]:
        """Tokens that can write the end of ``phrase`` (they begin with a suffix of it, or hold it whole)."""
        if phrase not in self._phrase_tokens:
            ends = tuple(phrase[-j:] for j in range(1, len(phrase) + 1))
            self._phrase_tokens[phrase] = [
                (i, t.lower())
                for i, t in enumerate(self.texts)
                if t and (t.lower().startswith(ends) or phrase in t.lower())
            ]
        return self._phrase_tokens[phrase]

    def _mask_allowing(self, allowed: Sequence[int]) -> torch.Tensor:
        mask = torch.ones(self.vocab_size, dtype=torch.bool)
        if allowed:
            mask[torch.tensor(list(allowed), dtype=torch.long)] = False
        return mask

    def _inside_title(self, text: str, facts: PromptFacts) -> torch.Tensor:
        opened = text.rfind('"')
        written = text[opened + 1 :]
        before = text[:opened]
        sentiment = stated_sentiment(clauses(before)[-1]) if before.strip() else None
        targets = [t + '"' for t in facts.pool(sentiment) if t.startswith(written)]
        if not targets:  # the title was opened under another clause's rule: any title of the history
            targets = [t + '"' for t in facts.pool(None) if t.startswith(written)]
        allowed = set()
        for first in {t[len(written)] for t in targets}:
            for i in self.by_first.get(first, ()):
                s = written + self.texts[i]
                if any(t.startswith(s) or (s.startswith(t) and '"' not in s[len(t) :]) for t in targets):
                    allowed.add(i)
        return self._mask_allowing(sorted(allowed))

    def _figure(self, required: str, written: str) -> torch.Tensor:
        if written == required:  # written in full: it may not grow into another number
            return self.number_continuation
        if written.strip():  # the number has begun: only its true continuation
            pool = self.by_first.get(required[len(written)], [])
            return self._mask_allowing([i for i in pool if _consistent(required, written + self.texts[i])])
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        wrong = [i for i in self.digit_start if not _consistent(required, written + self.texts[i])]
        if wrong:
            mask[torch.tensor(wrong, dtype=torch.long)] = True
        return mask

    def _outside(self, facts: PromptFacts, sentiment: Sentiment | None) -> torch.Tensor:
        """Quote-holding tokens that cannot open (or be) a title of the pool; cached per prompt and sentiment."""
        if sentiment not in facts.masks:
            pool = facts.pool(sentiment)
            wrong = [
                i
                for i, (after, inner) in self.quote_tokens.items()
                if (inner not in pool if inner is not None else not any(t.startswith(after) for t in pool))
            ]
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            if wrong:
                mask[torch.tensor(wrong, dtype=torch.long)] = True
            facts.masks[sentiment] = mask | self.markup
        return facts.masks[sentiment]


def grounding_rows(rule: GroundingRule, facts: Sequence[PromptFacts], n: int):
    """The fast decoder's per-row callback: row ``r`` belongs to prompt ``r // n``."""
    return lambda row, ids: rule.banned(ids, facts[row // n])
