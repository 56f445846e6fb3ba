"""The tokens a grounding slot allows after a text: what every token's own check gives, found at a fraction of
the checks (a slot mask is computed for each new listing state of each new history: on the stream, one of the
largest costs of a profile)."""

from __future__ import annotations

import pytest

from lettingo.generators.decoding import Decoding
from lettingo.generators.hf import HFGenerator


@pytest.fixture(scope="module")
def prompts(validation_prompts: list) -> list:
    return validation_prompts[:3]


def _every_probe(rule, slot, rest: str) -> set[int]:
    """The specification: each token on its own (by its text up to a quote), as the rule first checked them."""
    from lettingo.generators.grounding import _finishes, _lists_twice

    allowed, ok = slot.allowed, set()
    for probes in rule.probes.values():
        for probe, ids in probes.items():
            fits = allowed.fullmatch(rest + probe, partial=True) is not None or _finishes(allowed, rest, probe)
            if fits and not (slot.words and _lists_twice(rest + probe, slot.words)):
                ok.update(ids)
    return ok


def _rests(facts, texts: list[str]) -> set[tuple[int, str]]:
    """(slot index, what follows its trigger) at every point of ``texts`` where a slot is open, up to 30
    characters into it."""
    out = set()
    for text in texts:
        for index, slot in enumerate(facts.slots):
            for m in slot.trigger.finditer(text):
                after = text[m.end() : m.end() + 30]
                out.update((index, after[:k]) for k in range(len(after) + 1))
    return out


def test_a_slot_allows_what_each_tokens_own_check_allows(nano: HFGenerator, prompts) -> None:
    """On sampled profiles (grounded, and free ones that write what the rule forbids) and on written listings:
    every slot state's allowed tokens are exactly those the per-token check allows."""
    from lettingo.generators.grounding import PromptFacts

    rule = nano.grounding
    free = nano.generate(prompts, temperature=1.5, max_new_tokens=96, seed=7, decoding=Decoding(grounded=False))
    grounded = nano.generate(prompts, temperature=1.0, max_new_tokens=96, seed=7)
    written = (
        " Watches mostly Drama, Comedy and Action. Rates the 1990s best (3.2 on average). Tends to love Drama an."
        " A generous rater: average rating 4.3, likes 84% and dislikes 3% of items. Liked items are often tagged"
        " atmospheric, classic, classic and. Watched titles from 1990 to 2000. Drawn to the 1990s and the 1980s."
    )
    checked = 0
    for prompt, free_rows, grounded_rows in zip(prompts, free, grounded, strict=True):
        facts = PromptFacts.of(prompt)
        texts = [g.text for g in (*free_rows, *grounded_rows)] + [written]
        for index, rest in sorted(_rests(facts, texts)):
            slot = facts.slots[index]
            assert set(rule.fitting(slot, rest)) == _every_probe(rule, slot, rest), (slot.what, rest)
            checked += 1
    assert checked > 1000


class _CountingPattern:
    """A slot's compiled pattern that counts the matches it is asked for."""

    def __init__(self, pattern) -> None:
        self.wrapped, self.calls = pattern, 0

    def fullmatch(self, *args, **kwargs):
        self.calls += 1
        return self.wrapped.fullmatch(*args, **kwargs)

    def match(self, *args, **kwargs):
        self.calls += 1
        return self.wrapped.match(*args, **kwargs)


def test_a_listing_slot_checks_only_the_texts_its_words_can_begin_with(
    nano: HFGenerator, prompts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new listing state was checked against every one of the vocabulary's token texts (nano: 1,186 after
    grouping, and as many checks again for the texts that do not fit): 3-6 ms each, some 26 ms of a profile's
    89 ms in batches of six. Texts that share a beginning which cannot start the listing are now ruled out
    together."""
    from lettingo.generators.grounding import PromptFacts
    from lettingo.profile_quality import TermSlot

    rule = nano.grounding
    genre = next(s for s in PromptFacts.of(prompts[0]).slots if s.what == "genre")
    counting = _CountingPattern(genre.allowed)
    monkeypatch.setattr(TermSlot, "allowed", property(lambda _slot: counting))
    texts = sum(map(len, rule.probes.values()))  # each checked once or twice before
    first, second = sorted(genre.words)[:2]
    for rest in ("", f" {first},", f" {first}, {second[:3]}"):
        counting.calls = 0
        assert rule.fitting(genre, rest), rest
        assert counting.calls < texts / 2, (rest, counting.calls, texts)


def test_a_sentence_that_left_every_false_opening_is_no_longer_checked(nano: HFGenerator, prompts) -> None:
    """A sentence's opening was checked against the whole vocabulary for its first 28 characters ("Mostly watches
    Dr" as much as "Often dis"), though once it is no false opening's beginning nothing can make it one. Where the
    rule now stops checking, the opening's own mask bans nothing; it still checks the beginnings of false
    openings."""
    from lettingo.generators.grounding import PromptFacts, RowState

    rule = nano.grounding
    facts = next(f for f in map(PromptFacts.of, prompts) if any(s.what == "opening" and s.openings for s in f.slots))
    index, opening = next((i, s) for i, s in enumerate(facts.slots) if s.what == "opening")
    false = opening.openings[0]
    beginnings = [f" {false[:k]}" for k in range(len(false) + 1)]
    decided = [" Mostly watches Drama", " Loved", " Tends to love", " Another"]
    for text in [*beginnings, *decided, " An easy", " A"]:
        state = RowState(facts).extend(text)
        checked = [rest for i, rest in state.open_slots() if i == index]
        assert checked == ([] if text in decided else [text]), text
        if not checked:
            mask = rule._slot(facts, index, text)
            assert mask is None or not bool(mask.any()), text
