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

**Cost per step.** Each row carries a :class:`RowState` from step to step: its text, and for every trigger where
its last final match is and where ``finditer`` would look next (a match attempt that starts further back than the
pattern can read is final). A step decodes the new token, scans from those points only, and rescans a trigger
for a candidate token only when the trigger may still match at the text's end or inside the token (known per
tokenizer); so a step costs the same however long the completion. What depends only on the vocabulary and a
slot's pattern (the tokens a slot allows after a given text) is kept per tokenizer and shared by prompts.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
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

SLOT_MASKS = 512  # slot masks kept per tokenizer, a vocabulary of booleans each: at most 6 MB on nano, 25 MB on SmolLM2
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
    titles_written: dict[tuple[Sentiment | None, str], torch.Tensor] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, prompt: ProfilePrompt) -> PromptFacts:
        titles = {e.quoted_title[1:-1]: e.sentiment for e in prompt.entries}
        slots = [*term_slots(prompt.entries), *_figure_slots(prompt)]
        opening = _opening_slot(prompt, slots)
        false = tuple(sorted({p.lower() for slot in slots if not slot.possible for p in _trigger_phrases(slot)}))
        return cls(titles, tuple(_required_figures(prompt)), (*slots, *([opening] if opening else [])), false)

    @cached_property
    def figures_behind(self) -> int | None:
        """The most characters before its start that a figure trigger's match reads; None when unknown."""
        widths = [_behind(p) for p, _ in self.figures]
        known = [w for w in widths if w is not None]
        return max(known, default=0) if len(known) == len(widths) else None

    def pool(self, sentiment: Sentiment | None) -> frozenset[str]:
        if sentiment is None:
            return frozenset(self.titles)
        return frozenset(t for t, s in self.titles.items() if s is sentiment)


@functools.lru_cache(maxsize=1024)
def _reach(pattern: re.Pattern[str]) -> int | None:
    """The most characters a match attempt of ``pattern`` reads from where it starts (its widest match and
    what its lookaheads read past it); None when unbounded or unknown."""
    around = _around(pattern)
    if around is None:
        return None
    width = re._parser.parse(pattern.pattern, pattern.flags).getwidth()[1]  # type: ignore[attr-defined]
    return width + around[1] if width < 2**16 else None


_LEAVES = {"LITERAL", "NOT_LITERAL", "IN", "ANY", "RANGE", "CATEGORY", "GROUPREF"}
_CONTAINERS = {  # parsed op -> its subpatterns
    "SUBPATTERN": lambda av: [av[3]],
    "BRANCH": lambda av: av[1],
    "ATOMIC_GROUP": lambda av: [av],
    "MAX_REPEAT": lambda av: [av[2]],
    "MIN_REPEAT": lambda av: [av[2]],
    "POSSESSIVE_REPEAT": lambda av: [av[2]],
}


def _behind(pattern: re.Pattern[str]) -> int | None:
    """The most characters before a match's start that ``pattern`` reads (lookbehinds, ``\\b``)."""
    around = _around(pattern)
    return None if around is None else around[0]


@functools.lru_cache(maxsize=1024)
def _around(pattern: re.Pattern[str]) -> tuple[int, int] | None:
    """(characters read before, after) a match by ``pattern``'s lookarounds and anchors at most; None when the
    pattern holds something this does not know."""
    try:
        parsed = re._parser.parse(pattern.pattern, pattern.flags)  # type: ignore[attr-defined]
    except (AttributeError, re.error):
        return None

    def walk(items: Any) -> tuple[int, int] | None:
        behind = ahead = 0
        for op, av in items:
            name = str(op)
            inner: tuple[int, int] | None = (0, 0)
            if name in ("ASSERT", "ASSERT_NOT"):
                direction, sub = av
                inner = walk(sub)
                if inner is not None:
                    width = sub.getwidth()[1]
                    inner = (max(inner[0], width if direction < 0 else 0), max(inner[1], width if direction > 0 else 0))
            elif name == "AT":
                inner = (1, 2)  # \b reads a character either side; $ the end or a newline before it
            elif name in _CONTAINERS:
                for sub in _CONTAINERS[name](av):
                    part = walk(sub)
                    if part is None:
                        return None
                    behind, ahead = max(behind, part[0]), max(ahead, part[1])
            elif name not in _LEAVES:
                return None
            if inner is None:
                return None
            behind, ahead = max(behind, inner[0]), max(ahead, inner[1])
        return behind, ahead

    return walk(parsed)


@functools.lru_cache(maxsize=1024)
def _partial(pattern: re.Pattern[str]) -> regex.Pattern[str]:
    """``pattern`` in the ``regex`` module, for its partial matching: whether a match may start at a position
    once more text follows."""
    return regex.compile(pattern.pattern, pattern.flags)


class _Scan:
    """The last match of ``pattern`` in a growing text, found without rescanning what cannot change.

    A match attempt that starts more than :func:`_reach` characters before the end reads only characters that
    are already written, so its outcome (a match, or none) is final: :meth:`advance` records the last final match
    and the position where ``finditer`` would look next, and :meth:`last` scans from there only. Exactly the
    last match of ``pattern.finditer(text)``: ``finditer``'s ``pos`` keeps the characters before it visible to
    ``\b`` and lookbehinds."""

    __slots__ = ("partial", "pattern", "reach", "resume", "settled")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern, self.reach = pattern, _reach(pattern)
        self.partial = _partial(pattern)
        self.resume = 0
        self.settled: re.Match[str] | None = None

    def advance(self, text: str) -> None:
        """``text`` extends the text of the last call."""
        if self.reach is None:
            return
        final = len(text) - self.reach  # attempts that start before this read only written characters
        for m in self.pattern.finditer(text, self.resume):
            if m.start() >= final:
                break
            self.settled, self.resume = m, m.end()
        self.resume = max(self.resume, final)

    def last(self, text: str) -> re.Match[str] | None:
        """The last match in ``text`` (the advanced text, or it extended)."""
        m = self.settled
        for m in self.pattern.finditer(text, self.resume):  # noqa: B007 -- the loop's last value is the answer
            pass
        return m


class RowState:
    """One row's completion text and where its figure and slot triggers last matched, carried from step to step
    so that each step scans only the end of the text (its cost does not grow with the completion)."""

    def __init__(self, facts: PromptFacts) -> None:
        self.facts = facts
        self._start()

    def _start(self) -> None:
        self.ids: list[int] = []
        self.text = ""
        self.figures = [_Scan(pattern) for pattern, _value in self.facts.figures]
        self.triggers = [_Scan(slot.trigger) for slot in self.facts.slots]

    def advance(self, rule: GroundingRule, ids: Sequence[int]) -> str:
        """The completion text of ``ids``; only tokens added since the last call are decoded and scanned (a row
        whose tokens do not extend the last call's starts over)."""
        k = len(self.ids)
        if len(ids) < k or list(ids[:k]) != self.ids:
            self._start()
            k = 0
        if len(ids) > k:
            new = list(ids[k:])
            self.ids += new
            self.extend(rule.completion_text(new))
        return self.text

    def extend(self, text: str) -> RowState:
        self.text += text
        for scan in (*self.figures, *self.triggers):
            scan.advance(self.text)
        return self

    def violations(self, rule: GroundingRule, candidates: Sequence[int]) -> list[int]:
        """The candidate tokens after which the text states a wrong figure.

        A trigger is scanned again for a token only when it could match after its scan's resume point: starting
        in the text (its partial search there finds something) or in the token (known per tokenizer for the
        characters before the token). Every other trigger's last match is the one the text already has."""
        texts, facts, text = rule.texts, self.facts, self.text
        behind = facts.figures_behind
        if behind is None:
            return [i for i in candidates if self.violated(texts[i])]
        before = text[len(text) - behind :] if behind else ""
        pending, starting = [], []
        for scan in self.figures:
            m = scan.partial.search(text, scan.resume, partial=True)
            pending.append(m is not None and m.start() < len(text))
            starting.append(rule.trigger_tokens(scan.pattern.pattern, scan.pattern.flags, before))
        settled = [scan.settled for scan in self.figures]
        waiting = any(pending)  # a trigger may match in the text's end: every token rescans it
        rescan = frozenset().union(*starting)
        best = self._best(settled)  # for every token that rescans nothing
        if best is not None and len(text) - best[0] >= 2 and not _LEADING_DIGIT.match(text[best[0] :]):
            best = None  # words follow the last trigger: such a token writes no number into its slot
        # while some trigger waits: the best of the others' final matches, and which ones wait
        fixed = self._ranked((k, m) for k, (m, wait) in enumerate(zip(settled, pending, strict=True)) if not wait)
        waits = [(k, self.figures[k]) for k, wait in enumerate(pending) if wait]
        out = []
        for i in candidates:
            token = texts[i]
            if not waiting and i not in rescan:
                if best is not None and self._wrong(best, text + token):
                    out.append(i)
                continue
            extended = text + token
            if i not in rescan:  # only the waiting triggers can end elsewhere
                ranked = self._ranked(
                    [*([fixed[:2]] if fixed else []), *((k, scan.last(extended)) for k, scan in waits)]
                )
                if ranked is not None and self._wrong((ranked[1].end(), ranked[2]), extended):
                    out.append(i)
                continue
            scanned = [
                scan.last(extended) if wait or i in starts else m
                for scan, wait, starts, m in zip(self.figures, pending, starting, settled, strict=True)
            ]
            if self._wrong(self._best(scanned), extended):
                out.append(i)
        return out

    def _ranked(self, matches: Any) -> tuple[int, re.Match[str], str] | None:
        """Of (trigger index, its last match or None) pairs, the match that ends last (the first trigger's of
        those ending together) with the number it requires: (index, match, number); as :meth:`_best` ranks."""
        best: tuple[int, re.Match[str], str] | None = None
        for k, m in matches:
            if m is None:
                continue
            value = self.facts.figures[k][1]
            required = value.get(m.group(1), NO_NUMBER) if isinstance(value, dict) else value
            if required is None:
                continue
            if best is None or m.end() > best[1].end() or (m.end() == best[1].end() and k < best[0]):
                best = (k, m, required)
        return best

    @staticmethod
    def _wrong(best: tuple[int, str] | None, text: str) -> bool:
        """The number after the trigger that ends at ``best[0]`` is not ``best[1]``."""
        if best is None:
            return False
        rest = text[best[0] :]
        return bool(_LEADING_DIGIT.match(rest)) and not _consistent(best[1], rest)

    def _figure(self, text: str) -> tuple[int, str] | None:
        """(end of the last figure trigger, the number it requires) in ``text``: of the triggers that end last,
        the first in the facts' order."""
        return self._best([scan.last(text) for scan in self.figures])

    def _best(self, matches: Sequence[re.Match[str] | None]) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for m, (_pattern, value) in zip(matches, self.facts.figures, strict=True):
            if m is None:
                continue
            required = value.get(m.group(1), NO_NUMBER) if isinstance(value, dict) else value
            if required is not None and (best is None or m.end() > best[0]):
                best = (m.end(), required)
        return best

    def violated(self, token: str) -> bool:
        """The text followed by ``token`` states a figure that is not the true one."""
        text = self.text + token
        best = self._figure(text)
        if best is None:
            return False
        rest = text[best[0] :]
        return bool(_LEADING_DIGIT.match(rest)) and not _consistent(best[1], rest)

    def requirement(self) -> tuple[str, str] | None:
        """(what must be written, what of it is written so far) when the text ends inside a figure's slot."""
        best = self._figure(self.text)
        if best is None:
            return None
        end, required = best
        rest = self.text[end:]
        if rest.strip() and not _LEADING_DIGIT.match(rest):
            return None  # words followed the trigger ("likes Comedy"): nothing required
        if rest and ((rest.startswith(required) and len(rest) > len(required)) or not required.startswith(rest)):
            return None  # written already (or diverged before the rule applied)
        return required, rest

    def open_slots(self) -> list[tuple[int, str]]:
        """(slot index, what follows its trigger) for each slot the text ends inside of."""
        out = []
        for index, (slot, scan) in enumerate(zip(self.facts.slots, self.triggers, strict=True)):
            m = scan.last(self.text)
            if m is None:
                continue
            rest = self.text[m.end() :]
            match = slot.allowed.fullmatch(rest, partial=True) if rest.strip() else None
            # the opening slot decides each token while its sentence may still become a false opening ("Often"
            # matches, "Often dislikes" does not); once it cannot ("Mostly watches"), nothing is left to check
            sentence = rest.lstrip()
            short = len(sentence.rstrip()) <= max(map(len, slot.openings), default=0) and any(
                o.startswith(sentence) or sentence.startswith(o) for o in slot.openings
            )
            if not rest.strip() or (match is not None and match.partial) or (short and slot.what == "opening"):
                out.append((index, rest))
        return out


def _consistent(required: str, written: str) -> bool:
    """``written`` is on the way to ``required``, or holds it followed by something that is not more digits."""
    if required.startswith(written):
        return True
    if not written.startswith(required):
        return False
    after = written[len(required) :]
    return not (after[0].isdigit() or (after[0] == "." and len(after) > 1 and after[1].isdigit()))


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)  # the tokens whose probe ends here


class GroundingRule:
    """Per tokenizer: the text of every token and indexes over it; per row, the tokens the rule bans."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer
        self._phrase_tokens: dict[str, list[tuple[int, str]]] = {}
        self._trigger_tokens: dict[tuple[str, int, str], frozenset[int]] = {}
        self._slot_masks: OrderedDict[tuple[str, int, frozenset[str], str], torch.Tensor | None] = OrderedDict()

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
        """The tokens a slot bans after ``rest``. It depends on the slot's pattern and words and on ``rest`` only,
        so it is kept per tokenizer (bounded, least recently used first out): prompts of one rater kind share
        their opening slot, a user's next prompt most of its slots, rows and sentences the same states."""
        slot = facts.slots[index]
        key = (slot.source, slot.flags, slot.words, rest)
        if key in self._slot_masks:
            self._slot_masks.move_to_end(key)
            return self._slot_masks[key]
        ok = self.fitting(slot, rest)
        done = slot.allowed.fullmatch(rest)
        if done is not None:
            ok.extend(self.empty)
        if not ok and rest.strip():
            # a listing begun on a path no true text completes (" an", the start of " and", with no word left to
            # list): the row ends here, and what is served ends at its last full sentence
            mask = self._mask_allowing(self.empty)
        else:
            # nothing can follow (a phrase with no true continuation, as "Often dislikes" for a user who
            # disliked nothing): leave the row free rather than stuck
            mask = self._mask_allowing(ok) if ok and (done is None or len(ok) > len(self.empty)) else None
        self._slot_masks[key] = mask
        if len(self._slot_masks) > SLOT_MASKS:
            self._slot_masks.popitem(last=False)
        return mask

    @cached_property
    def probe_trie(self) -> _Node:
        """The :attr:`probes` as a trie over their characters."""
        root = _Node()
        for probes in self.probes.values():
            for probe, ids in probes.items():
                node = root
                for char in probe:
                    node = node.children.setdefault(char, _Node())
                node.ids = ids
        return root

    def fitting(self, slot: TermSlot, rest: str) -> list[int]:
        """The tokens whose text may follow ``rest`` in ``slot`` (on the way to a match of its pattern, or ending
        it and going on) without listing a word twice.

        Each token's own check is a partial match of ``rest`` and its text, or a match that ends inside its text
        (:func:`_finishes`). Walking the :attr:`probe_trie` checks a shared beginning once: a beginning that no
        match can start with, and no shorter one of which is a whole match, rules out every text below it. (A
        match ending inside a text is a whole match of that text's beginning, as no slot pattern looks past its
        end.) A listing state so checks a few hundred beginnings instead of the whole vocabulary."""
        allowed, words, ok = slot.allowed, slot.words, []

        def visit(node: _Node, text: str, matched_before: bool, dead: bool) -> None:
            m = None if dead else allowed.fullmatch(text, partial=True)
            if m is None and not matched_before:
                return
            if node.ids:
                probe = text[len(rest) :]
                fits = m is not None or _finishes(allowed, rest, probe)
                if fits and not (words and _lists_twice(text, words)):
                    ok.extend(node.ids)
            matched = matched_before or (m is not None and not m.partial)
            for char, child in node.children.items():
                visit(child, text + char, matched, m is None)

        for char, child in self.probe_trie.children.items():
            visit(child, rest + char, False, False)
        return ok

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

    @cached_property
    def quote_index(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """The quote tokens by the title they hold whole, and the others by their text after the quote."""
        closing: dict[str, list[int]] = {}
        opening: dict[str, list[int]] = {}
        for i, (after, inner) in self.quote_tokens.items():
            if inner is not None:
                closing.setdefault(inner, []).append(i)
            else:
                opening.setdefault(after, []).append(i)
        return closing, opening

    @cached_property
    def quote_mask(self) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        if self.quote_tokens:
            mask[torch.tensor(list(self.quote_tokens), dtype=torch.long)] = True
        return mask

    def completion_text(self, ids: Sequence[int]) -> str:
        texts = self.texts
        return "".join(texts[i] if i < len(texts) else "" for i in ids)

    def banned(self, ids: Sequence[int], facts: PromptFacts, state: RowState | None = None) -> torch.Tensor | None:
        """A boolean mask of the tokens the row may not produce next (None: no restriction). ``state`` carries the
        row's text and scans from its previous step (see :class:`RowState`); without it the row starts afresh."""
        if state is None or state.facts is not facts:
            state = RowState(facts)
        text = state.advance(self, ids)
        if text.count('"') % 2 == 1:
            return self._inside_title(text, facts)
        need = state.requirement()
        if need is not None and need[1].strip():
            return self._figure(*need)  # a number has begun: only its true continuation
        mask = self._outside(facts, stated_sentiment(clauses(text)[-1]) if text.strip() else None).clone()
        if need is not None:  # a figure's slot is open: words may follow, or the true number
            mask |= self._figure(*need)
        candidates = self.mid_number
        if text[-1:].isdigit() or text[-1:] == ".":  # "4.3" written, then ".": "0" would make it "4.3.0"
            candidates = candidates + self.digit_start
        wrong = state.violations(self, candidates)
        if wrong:
            mask[torch.tensor(wrong, dtype=torch.long)] = True
        for index, rest in state.open_slots():
            slot = self._slot(facts, index, rest)
            if slot is not None:
                mask |= slot
        for phrase in facts.false_phrases:
            completing = [i for i, t in self._completers(phrase) if _completes(text, t, phrase)]
            if completing:
                mask[torch.tensor(completing, dtype=torch.long)] = True
        return mask

    def trigger_tokens(self, pattern: str, flags: int, before: str) -> frozenset[int]:
        """The candidate tokens (:attr:`mid_number`, :attr:`digit_start`) in which a figure trigger can start a
        match when the text ends with ``before``; per tokenizer."""
        key = (pattern, flags, before)
        if key not in self._trigger_tokens:
            compiled = re.compile(pattern, flags)
            self._trigger_tokens[key] = frozenset(
                i
                for i in {*self.mid_number, *self.digit_start}
                if compiled.search(before + self.texts[i], len(before)) is not None
            )
        return self._trigger_tokens[key]

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
        key = (sentiment, written)
        if key not in facts.titles_written:  # rows of one prompt meet the same states
            targets = [t + '"' for t in facts.pool(sentiment) if t.startswith(written)]
            if not targets:  # the title was opened under another clause's rule: any title of the history
                targets = [t + '"' for t in facts.pool(None) if t.startswith(written)]
            # a token fits when the text it makes is on the way to a target, or a whole target followed by text
            # without a quote
            ways = {t[:k] for t in targets for k in range(len(written) + 1, len(t) + 1)}
            whole = set(targets)
            allowed = []
            for first in {t[len(written)] for t in targets}:
                for i in self.by_first.get(first, ()):
                    s = written + self.texts[i]
                    if s in ways or ('"' in s and s[: s.rindex('"') + 1] in whole):
                        allowed.append(i)
            facts.titles_written[key] = self._mask_allowing(sorted(allowed))
        return facts.titles_written[key]

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
            starts = {t[:k] for t in pool for k in range(len(t) + 1)}  # what a title of the pool starts with
            closing, opening = self.quote_index
            fine = [i for t in pool for i in closing.get(t, ())] + [i for a in starts for i in opening.get(a, ())]
            mask = self.quote_mask.clone()
            if fine:
                mask[torch.tensor(fine, dtype=torch.long)] = False
            facts.masks[sentiment] = mask | self.markup
        return facts.masks[sentiment]


def grounding_rows(rule: GroundingRule, facts: Sequence[PromptFacts], n: int):
    """The fast decoder's per-row callback: row ``r`` belongs to prompt ``r // n``; each row keeps its state."""
    states: dict[int, RowState] = {}

    def banned(row: int, ids: Sequence[int]) -> torch.Tensor | None:
        state = states.get(row)
        if state is None:
            state = states[row] = RowState(facts[row // n])
        return rule.banned(ids, state.facts, state)

    return banned
