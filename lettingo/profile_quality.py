"""Is a profile readable and true to the history it was written from?

:func:`check_profile` reads what a profile states and compares it with the history entries of its prompt:

* **figures**: an overall average rating ("average rating 3.8", "3.8 on average"), a decade's average ("rates the
  1990s best (4.1 on average)"), the share of likes and dislikes ("likes 45% and dislikes 12% of items") and a
  year range ("from 1972 to 2004"); each is true when it is within :data:`AVERAGE_TOLERANCE` /
  :data:`PERCENT_TOLERANCE` points of the truth (the writers round to one decimal and whole percents);
* **titles**: every quoted title must be one of the prompt's; when its clause states a sentiment ("Loved",
  "Disliked", "Did not enjoy", ...), the user's rating of it must carry that sentiment;
* **terms**: the kind of rater a profile calls the user ("a hard-to-please viewer") must be the one the shares of
  likes and dislikes make them (:data:`lettingo.prompts.history_stats.RATER_PHRASES`), and the words listed after
  the writers' phrases (:func:`term_slots`: genres after "Watches mostly", tags after "tagged", decades after
  "Drawn to the") must be the history's: a genre it holds, a tag of an item the user liked, a decade it covers.

:func:`quality_report` pools the checks of many profiles with well-formedness, distinctness and the repeated
word 4-gram rate. Nothing here generates: it reads texts, so it measures any backend, writer or stored profile.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import mean
from typing import Any

import regex

from lettingo.data import Dataset, LabelScheme, Sentiment
from lettingo.generators.decoding import repeated_ngram_rate
from lettingo.prompts.escape import quote
from lettingo.prompts.history_stats import RATER_PHRASES, HistoryStats, decade
from lettingo.prompts.profile import HistoryEntry, ProfilePrompt, profile_prompt_from_entries

AVERAGE_TOLERANCE = 0.1  # rating points
PERCENT_TOLERANCE = 1.0  # percentage points
# A JSON string literal: how titles appear in prompts and in grounded profiles.
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')

_NUMBER = r"(?<![\d.])(\d(?:\.\d+)?)"
_DECADE_AVERAGE = re.compile(r"\b(\d{3}0)s\b[^.\d]{0,40}?\(\s*" + _NUMBER + r"\s+on average\s*\)", re.IGNORECASE)
_AVERAGE = re.compile(
    r"\baverage(?:\s+(?:rating|score))?(?:\s+(?:of|is|was))?\s*:?\s*" + _NUMBER + r"(?![\d%])"
    r"|" + _NUMBER + r"\s+on average\b",
    re.IGNORECASE,
)
_SHARE = re.compile(r"\b(dis)?lik(?:es?|ed)\s+(\d{1,3}(?:\.\d+)?)\s?%", re.IGNORECASE)
_SHARE_AFTER = re.compile(
    r"\b(\d{1,3}(?:\.\d+)?)\s?%\s+(?:of\s+(?:the\s+)?(?:items|movies|films|titles|ratings)\s+)?(?:are\s+|were\s+)?"
    r"(dis)?liked\b",
    re.IGNORECASE,
)
_YEARS = re.compile(r"\bfrom\s+(\d{4})\s+(?:to|until|through)\s+(\d{4})\b", re.IGNORECASE)
_SENTIMENT_WORDS = re.compile(
    r"\b(?P<dislike>dislike[sd]?|did not (?:enjoy|like)|didn't (?:enjoy|like)|let down|not a fan|hated?|hates|"
    r"disappoint\w*|hard to please with)\b"
    r"|\b(?P<like>lov(?:e|ed|es)|enjoy(?:ed|s)?|lik(?:e|ed|es)|favou?rites?|adored?|fan of|highly rated|"
    r"rated highly)\b",
    re.IGNORECASE,
)
# Every rater phrase of every kind, without its article: the checker reads whichever a profile states.
_RATER = re.compile(
    r"\b(" + "|".join(re.escape(p.split(" ", 1)[1]) for ps in RATER_PHRASES.values() for p in ps) + r")\b",
    re.IGNORECASE,
)
_KIND_OF_PHRASE = {p.split(" ", 1)[1].casefold(): kind for kind, ps in RATER_PHRASES.items() for p in ps}
_CLAUSE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\s+but\s+|\s+while\s+|\s+whereas\s+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TermSlot:
    """Where a profile lists words of a closed vocabulary: after ``trigger``, the text must go on as ``allowed``
    (a pattern of the ``regex`` module, which can tell a prefix of a match: grounded decoding writes through it)."""

    what: str
    trigger: re.Pattern[str]
    source: str  # the pattern of ``allowed``
    openings: tuple[str, ...] = ()  # the sentence openings that lead into the slot
    possible: bool = True  # False: nothing true can follow (no disliked genre to list), so its openings are false
    words: frozenset[str] = frozenset()  # a plain listing's words (each at most once); empty for other slots
    flags: int = 0

    @property
    def allowed(self) -> regex.Pattern[str]:
        """Compiled when first needed: a listing of a history's 100 tags takes the ``regex`` module some 50 ms."""
        return _compiled(self.source, self.flags)


@functools.lru_cache(maxsize=4096)
def _compiled(source: str, flags: int) -> regex.Pattern[str]:
    return regex.compile(source, flags)


NOTHING = r"(?!)"  # a pattern nothing matches: no continuation is true


def _listing(words: Iterable[str]) -> str:
    """A pattern for ``words`` joined as the writers join them (``A``, ``A and B``, ``A, B and C``); longer words
    first, so a word that begins another does not cut it short."""
    alternatives = sorted({w for w in words if w}, key=lambda w: (-len(w), w))
    if not alternatives:
        return NOTHING
    one = "(?:" + "|".join(regex.escape(w) for w in alternatives) + ")"
    return f"{one}(?:, {one})*(?: and {one})?"


def _trigger(*phrases: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b", re.IGNORECASE)


def term_slots(entries: Sequence[HistoryEntry]) -> list[TermSlot]:
    """The writers' phrases that list genres, tags and decades, each with the words that are true after it for
    this history. A genre watched must be one of the history's; a genre loved (or disliked) one of an item the
    user liked (disliked); a tag one of a liked item's; a decade one the history covers, and the best one that
    of the highest average (:class:`HistoryStats`), with that average when it is given."""
    stats = HistoryStats.of(entries)
    if stats is None:
        return []
    seen = {g for e in entries for g in e.item.attributes}
    liked = {g for e in entries if e.sentiment is Sentiment.LIKE for g in e.item.attributes}
    disliked = {g for e in entries if e.sentiment is Sentiment.DISLIKE for g in e.item.attributes}
    tags = {t for e in entries if e.sentiment is Sentiment.LIKE for t in e.item.tags}
    periods = {decade(e.item.year) for e in entries if e.item.year is not None}
    decades = _listing(periods)
    top = stats.best_decade
    average = "" if top is None else rf"(?: \({stats.decade_averages[top]:.1f} on average\))?"
    rates_best = "" if top is None else rf"|the {top} best{average}"

    dated = any(e.item.year is not None for e in entries)

    def slot(
        what: str, phrases: tuple[str, ...], allowed: str, possible: object, *openings: str, words: Iterable[str] = ()
    ) -> TermSlot:
        listed = frozenset(words)
        return TermSlot(what, _trigger(*phrases), allowed, openings or phrases, bool(possible), listed)

    return [
        slot(
            "genre",
            ("Watches mostly", "A viewer of mainly", "Their history is dominated by"),
            rf" {_listing(seen)}\.",
            seen,
            words=seen,
        ),
        slot(
            "genre or decade",
            ("Mostly watches",),
            rf" (?:{_listing(seen)}\.|items from the {decades}\.)",
            seen or dated,
        ),
        slot("liked genre", ("Most enthusiastic about", "Tends to love"), rf" {_listing(liked)}\.", liked, words=liked),
        slot(
            "liked genre or best decade",
            ("Rates",),
            rf" (?:{_listing(liked)} highest\.{rates_best})",
            liked or top,
            words=liked | ({f"{top} best"} if top else set()),
        ),
        slot(
            "disliked genre",
            ("Often dislikes", "Is hard to please with", "Tends to dislike"),
            rf" {_listing(disliked)}\.",
            disliked,
            words=disliked,
        ),
        slot("best decade", ("Happiest with",), rf" the {top}{average}" if top else NOTHING, top),
        slot("decade", ("Drawn to", "Prefers titles from", "items from"), rf" the {decades}\.", dated, words=periods),
        slot("tag", ("tagged",), rf" {_listing(tags)}\.", tags, "Liked items are often tagged", words=tags),
    ]


def cited_titles(text: str) -> list[str]:
    return QUOTED.findall(text)


def is_well_formed(text: str) -> bool:
    """Non-empty, ends a sentence, balanced quotes, no stray markup from the prompt."""
    stripped = text.strip()
    return (
        bool(stripped)
        and stripped[-1] in ".!?"
        and stripped.count('"') % 2 == 0
        and "<history>" not in stripped
        and "Profile:" not in stripped
    )


@dataclass(frozen=True, slots=True)
class ProfileChecks:
    """What one profile states, checked against its history."""

    figures: int = 0
    figures_true: int = 0
    titles: int = 0
    titles_present: int = 0
    titles_with_sentiment: int = 0  # present titles whose clause states a sentiment
    titles_sentiment_true: int = 0
    terms: int = 0  # rater kinds and listed genres, tags and decades
    terms_true: int = 0
    errors: tuple[str, ...] = ()  # what was false, for reading

    @property
    def checks(self) -> int:
        return self.figures + self.titles + self.terms

    @property
    def true(self) -> int:
        """Figures within tolerance, titles present with the stated sentiment (or none stated), true terms."""
        wrong_sentiment = self.titles_with_sentiment - self.titles_sentiment_true
        return self.figures_true + self.titles_present - wrong_sentiment + self.terms_true


@dataclass(frozen=True, slots=True)
class _Truth:
    average: float | None
    like_share: float | None
    dislike_share: float | None
    decade_average: dict[int, float]
    years: tuple[int, int] | None
    sentiment_by_title: dict[str, Sentiment]

    @classmethod
    def of(cls, entries: Sequence[HistoryEntry]) -> _Truth:
        if not entries:
            return cls(None, None, None, {}, None, {})
        n = len(entries)
        by_decade: dict[int, list[float]] = {}
        years = [e.item.year for e in entries if e.item.year is not None]
        for e in entries:
            if e.item.year is not None:
                by_decade.setdefault(e.item.year // 10 * 10, []).append(e.rating)
        return cls(
            average=mean(e.rating for e in entries),
            like_share=100 * sum(e.sentiment is Sentiment.LIKE for e in entries) / n,
            dislike_share=100 * sum(e.sentiment is Sentiment.DISLIKE for e in entries) / n,
            decade_average={d: mean(rs) for d, rs in by_decade.items()},
            years=(min(years), max(years)) if years else None,
            sentiment_by_title={e.quoted_title: e.sentiment for e in entries},
        )


def clauses(text: str) -> list[str]:
    """Clauses, split outside quoted titles (a title may hold a full stop)."""
    titles: list[str] = []

    def hide(m: re.Match[str]) -> str:
        titles.append(m.group())
        return f"\x00{len(titles) - 1}\x00"

    hidden = QUOTED.sub(hide, text)
    return [re.sub(r"\x00(\d+)\x00", lambda m: titles[int(m.group(1))], c) for c in _CLAUSE_SPLIT.split(hidden)]


def stated_sentiment(text: str, last: bool = True) -> Sentiment | None:
    """The sentiment the last (or first) sentiment word of ``text`` states, quoted titles ignored."""
    words = list(_SENTIMENT_WORDS.finditer(QUOTED.sub(" ", text)))
    if not words:
        return None
    word = words[-1] if last else words[0]
    return Sentiment.DISLIKE if word.group("dislike") else Sentiment.LIKE


def title_sentiments(clause: str) -> list[tuple[str, Sentiment | None]]:
    """Each quoted title of a clause with the sentiment stated for it: by the nearest sentiment word before it
    ("Loved X", "Disliked X"), else the first one after it ("X was a favourite")."""
    out = []
    for m in QUOTED.finditer(clause):
        before = stated_sentiment(clause[: m.start()])
        out.append((m.group(), before if before is not None else stated_sentiment(clause[m.end() :], last=False)))
    return out


def check_profile(text: str, entries: Sequence[HistoryEntry]) -> ProfileChecks:
    truth = _Truth.of(entries)
    figures: list[tuple[str, bool]] = []  # (statement, true)
    decade_spans = []
    for m in _DECADE_AVERAGE.finditer(text):
        decade, value = int(m.group(1)), float(m.group(2))
        actual = truth.decade_average.get(decade)
        figures.append((m.group(), actual is not None and abs(actual - value) <= AVERAGE_TOLERANCE + 1e-9))
        decade_spans.append(m.span())
    for m in _AVERAGE.finditer(text):
        if any(start <= m.start() < end for start, end in decade_spans):
            continue
        value = float(m.group(1) or m.group(2))
        figures.append((m.group(), truth.average is not None and abs(truth.average - value) <= AVERAGE_TOLERANCE))
    shares = [(m.group(), bool(m.group(1)), float(m.group(2))) for m in _SHARE.finditer(text)]
    shares += [(m.group(), bool(m.group(2)), float(m.group(1))) for m in _SHARE_AFTER.finditer(text)]
    for statement, dislike, value in shares:
        actual = truth.dislike_share if dislike else truth.like_share
        figures.append((statement, actual is not None and abs(actual - value) <= PERCENT_TOLERANCE + 1e-9))
    for m in _YEARS.finditer(text):
        figures.append((m.group(), truth.years == (int(m.group(1)), int(m.group(2)))))
    titles = present = stated = stated_true = 0
    errors = [f"figure: {s}" for s, ok in figures if not ok]
    terms = _check_terms(text, entries)
    errors += [f"{what}: {statement}" for what, statement, ok in terms if not ok]
    for clause in clauses(text):
        for title, sentiment in title_sentiments(clause):
            titles += 1
            rated = truth.sentiment_by_title.get(title)
            if rated is None:
                errors.append(f"title not in history: {title}")
                continue
            present += 1
            if sentiment is not None:
                stated += 1
                stated_true += rated is sentiment
                if rated is not sentiment:
                    errors.append(f"title {title}: stated {sentiment.value}, rated {rated.value}")
    return ProfileChecks(
        figures=len(figures),
        figures_true=sum(ok for _, ok in figures),
        titles=titles,
        titles_present=present,
        titles_with_sentiment=stated,
        titles_sentiment_true=stated_true,
        terms=len(terms),
        terms_true=sum(ok for _, _, ok in terms),
        errors=tuple(errors),
    )


def _check_terms(text: str, entries: Sequence[HistoryEntry]) -> list[tuple[str, str, bool]]:
    """(what, statement, true) for each rater kind and each listing of :func:`term_slots` the text states."""
    stats = HistoryStats.of(entries)
    out = []
    for m in _RATER.finditer(QUOTED.sub(lambda q: " " * len(q.group()), text)):
        out.append(
            ("rater", m.group(), stats is not None and _KIND_OF_PHRASE[m.group(1).casefold()] == stats.rater_kind)
        )
    for slot in term_slots(entries):
        for m in slot.trigger.finditer(text):
            rest = text[m.end() :]
            statement = (m.group() + rest).split(".", 1)[0][:80]
            out.append((slot.what, statement, slot.allowed.match(rest) is not None))
    return out


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Pooled over profiles: shares in [0, 1]; ``None`` where nothing of the kind was stated."""

    profiles: int
    distinct: float  # distinct texts among all profiles (1: no two alike, across users and samples)
    well_formed: float
    repeated_4gram_rate: float  # mean share of a profile's word 4-grams that repeat an earlier one
    figures_per_profile: float
    figures_true: float | None  # stated averages, shares and years within tolerance of the truth
    titles_per_profile: float
    titles_grounded: float | None  # cited titles present in the history
    titles_sentiment_true: float | None  # present titles cited with a sentiment, whose rating carries it
    terms_per_profile: float
    terms_true: float | None  # rater kinds and listed genres, tags and decades that are the history's
    factual_consistency: float | None  # every check pooled: true figures + titles present with the right sentiment

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.0f} %"

        return (
            f"distinct {pct(self.distinct)}, well-formed {pct(self.well_formed)}, "
            f"titles grounded {pct(self.titles_grounded)} ({self.titles_per_profile:.1f} per profile, "
            f"stated sentiment true {pct(self.titles_sentiment_true)}), figures true {pct(self.figures_true)} "
            f"({self.figures_per_profile:.1f} per profile), terms true {pct(self.terms_true)} "
            f"({self.terms_per_profile:.1f} per profile), factual consistency {pct(self.factual_consistency)}, "
            f"repeated 4-grams {pct(self.repeated_4gram_rate)}"
        )


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def quality_report(samples: Sequence[tuple[ProfilePrompt, Sequence[str]]]) -> QualityReport:
    """``samples``: each prompt with the profiles written from it."""
    checks: list[ProfileChecks] = []
    texts: list[str] = []
    for prompt, profiles in samples:
        for text in profiles:
            texts.append(text)
            checks.append(check_profile(text, prompt.entries))
    n = len(texts)
    figures = sum(c.figures for c in checks)
    titles = sum(c.titles for c in checks)
    stated = sum(c.titles_with_sentiment for c in checks)
    return QualityReport(
        profiles=n,
        distinct=round(len(set(texts)) / n, 4) if n else 0.0,
        well_formed=round(sum(map(is_well_formed, texts)) / n, 4) if n else 0.0,
        repeated_4gram_rate=round(mean(map(repeated_ngram_rate, texts)), 4) if n else 0.0,
        figures_per_profile=round(figures / n, 2) if n else 0.0,
        figures_true=_share(sum(c.figures_true for c in checks), figures),
        titles_per_profile=round(titles / n, 2) if n else 0.0,
        titles_grounded=_share(sum(c.titles_present for c in checks), titles),
        titles_sentiment_true=_share(sum(c.titles_sentiment_true for c in checks), stated),
        terms_per_profile=round(sum(c.terms for c in checks) / n, 2) if n else 0.0,
        terms_true=_share(sum(c.terms_true for c in checks), sum(c.terms for c in checks)),
        factual_consistency=_share(sum(c.true for c in checks), sum(c.checks for c in checks)),
    )


def prompt_from_text(text: str, user_id: str, dataset: Dataset) -> ProfilePrompt | None:
    """The prompt a stored prompt text (an explore line's, a candidate record's) was rendered from: its history
    lines read back (titles and order) with the user's ratings of those items; None unless it renders to
    ``text`` again (an item or rating the dataset does not hold)."""
    by_title = {quote(item.title): item for item in dataset.items.values()}
    labels = LabelScheme.for_scale(dataset.integer_scale)
    rating_of = {r.item_id: r.rating for r in dataset.ratings_by_user.get(user_id, [])}
    entries = []
    for line in text.split("<history>", 1)[-1].split("</history>", 1)[0].splitlines():
        title = QUOTED.match(line.removeprefix("- "))
        item = by_title.get(title.group()) if title else None
        if item is not None and item.item_id in rating_of:
            rating = rating_of[item.item_id]
            entries.append(HistoryEntry(item, rating, labels.label(rating)))
    prompt = profile_prompt_from_entries(entries, user_id)
    return prompt if prompt.text == text else None
