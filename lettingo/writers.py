"""Simple profile writers over H_u.

Each writer turns a user's history entries into a short natural-language profile, with its wording and its
choices drawn from a seeded :class:`random.Random`, so one history yields varied profiles. They feed the nano
model's SFT data (a mix of styles, so exploration has real diversity and DPO has styles to choose between) and
also act as exploration generators on their own.

Titles are always cited in their quoted prompt form after a space (`` "Heat (1995)"``), which is exactly one
token for the nano tokenizer. The ``poor`` writer is uninformative on purpose: random genres, not the user's.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

from lettingo.data import Sentiment
from lettingo.data.loaders import ML100K_GENRES
from lettingo.prompts.history_stats import RATER_PHRASES, HistoryStats, decade
from lettingo.prompts.profile import HistoryEntry

ProfileWriter = Callable[[Sequence[HistoryEntry], random.Random], str]
SentenceWriter = Callable[[Sequence[HistoryEntry], random.Random], list[str]]

# MovieLens' genres (less "unknown"): used by the ``poor`` writer, and as a fallback vocabulary when a catalogue
# has no attributes.
COMMON_GENRES = tuple(g for g in ML100K_GENRES if g != "unknown")
EMPTY_PROFILE = "Too little history to describe this user yet."


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _cite(entries: Sequence[HistoryEntry]) -> str:
    """Quoted titles joined for a sentence; each title follows a space, so each stays one nano token."""
    return _join([e.quoted_title for e in entries])


def _with(sentiment: Sentiment, entries: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    return [e for e in entries if e.sentiment is sentiment]


def _genre_scores(entries: Sequence[HistoryEntry]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    seen: Counter[str] = Counter()
    liked: Counter[str] = Counter()
    disliked: Counter[str] = Counter()
    for e in entries:
        for g in e.item.attributes:
            seen[g] += 1
            if e.sentiment is Sentiment.LIKE:
                liked[g] += 1
            elif e.sentiment is Sentiment.DISLIKE:
                disliked[g] += 1
    return seen, liked, disliked


def genre_sentences(entries: Sequence[HistoryEntry], rng: random.Random) -> list[str]:
    """Genre statistics: what they watch most, which genres they like and dislike."""
    seen, liked, disliked = _genre_scores(entries)
    if not seen:
        return [EMPTY_PROFILE]
    k = rng.randint(2, 4)
    top = [g for g, _ in seen.most_common(k)]
    liked_rate = {g: liked[g] / n for g, n in seen.items() if n >= 2 and liked[g]}  # "Rates X highest": liked
    best = sorted(liked_rate, key=lambda g: (-liked_rate[g], g))[: rng.randint(1, 3)]
    worst = [g for g, _ in disliked.most_common(rng.randint(1, 2))]
    opening = rng.choice(["Watches mostly", "Mostly watches", "A viewer of mainly", "Their history is dominated by"])
    parts = [f"{opening} {_join(top)}."]
    if best:
        parts.append(
            rng.choice(["Rates {} highest.", "Most enthusiastic about {}.", "Tends to love {}."]).format(_join(best))
        )
    if worst:
        parts.append(
            rng.choice(["Often dislikes {}.", "Is hard to please with {}.", "Tends to dislike {}."]).format(
                _join(worst)
            )
        )
    tail = parts[1:]
    rng.shuffle(tail)
    return [parts[0], *tail]


def titles_sentences(entries: Sequence[HistoryEntry], rng: random.Random) -> list[str]:
    """Concrete titles: a sample of liked ones (favourites first) and a few disliked ones."""
    if not entries:
        return [EMPTY_PROFILE]
    liked = sorted(_with(Sentiment.LIKE, entries), key=lambda e: -e.rating)
    disliked = _with(Sentiment.DISLIKE, entries)
    pool = liked[: max(6, len(liked) // 2)]
    picked_likes = rng.sample(pool, min(len(pool), rng.randint(3, 6)))
    picked_dislikes = rng.sample(disliked, min(len(disliked), rng.randint(0, 3)))
    parts = []
    if picked_likes:
        verb = rng.choice(["Loved", "Enjoyed", "Really liked", "Favourites include"])
        parts.append(f"{verb} {_cite(picked_likes)}.")
    else:
        parts.append("Liked few of the items rated.")
    if picked_dislikes:
        verb = rng.choice(["Disliked", "Did not enjoy", "Was let down by"])
        parts.append(f"{verb} {_cite(picked_dislikes)}.")
    return parts


def era_sentences(entries: Sequence[HistoryEntry], rng: random.Random) -> list[str]:
    """Eras: which decades they watch and which they rate best, with one title as an example."""
    dated = [e for e in entries if e.item.year is not None]
    if not dated:
        return [EMPTY_PROFILE]
    decades = Counter(decade(e.item.year) for e in dated)  # type: ignore[arg-type]
    top = [d for d, _ in decades.most_common(rng.randint(1, 3))]
    stats = HistoryStats.of(entries)
    assert stats is not None
    parts = [
        rng.choice(["Mostly watches items from the {}.", "Drawn to the {}.", "Prefers titles from the {}."]).format(
            _join(top)
        )
    ]
    if (best := stats.best_decade) is not None:
        parts.append(
            rng.choice(["Rates the {} best", "Happiest with the {}"]).format(best)
            + f" ({stats.decade_averages[best]:.1f} on average)."
        )
    if rng.random() < 0.7:
        parts.append(f"Watched titles {stats.years_phrase()}.")
    liked_old = [e for e in dated if e.sentiment is Sentiment.LIKE and decade(e.item.year) in top]  # type: ignore[arg-type]
    if liked_old and rng.random() < 0.6:
        parts.append(f"For example liked {rng.choice(liked_old).quoted_title}.")
    return parts


def strictness_sentences(entries: Sequence[HistoryEntry], rng: random.Random) -> list[str]:
    """Rater strictness: average rating, share of likes and dislikes.

    Not the tags of what they liked: the prompt never shows tags (nor does the stream's catalogue carry them), so a
    model trained to state them could only make them up ("tagged aliens, chn grishology")."""
    if not entries:
        return [EMPTY_PROFILE]
    stats = HistoryStats.of(entries)
    assert stats is not None
    kind = rng.choice(RATER_PHRASES[stats.rater_kind])
    return [f"{kind}: {stats.rating_phrase()}."]


def combined_writer(entries: Sequence[HistoryEntry], rng: random.Random) -> str:
    """A mix: one or two sentences from the genre, title, era and strictness writers, in a random order."""
    if not entries:
        return EMPTY_PROFILE
    chosen = rng.sample([genre_sentences, titles_sentences, era_sentences, strictness_sentences], rng.randint(2, 3))
    return " ".join(w(entries, rng)[0] for w in chosen)


def poor_writer(entries: Sequence[HistoryEntry], rng: random.Random) -> str:
    """Uninformative on purpose: genres drawn at random, not from the user's history."""
    liked = rng.sample(COMMON_GENRES, rng.randint(1, 3))
    rest = [g for g in COMMON_GENRES if g not in liked]
    disliked = rng.sample(rest, rng.randint(0, 2))
    out = rng.choice(["Likes {}.", "Enjoys {}.", "Into {}."]).format(_join(liked))
    if disliked:
        out += f" Not a fan of {_join(disliked)}."
    return out


def _joined(sentences: SentenceWriter) -> ProfileWriter:
    def writer(entries: Sequence[HistoryEntry], rng: random.Random) -> str:
        return " ".join(sentences(entries, rng))

    writer.__doc__ = sentences.__doc__
    writer.__name__ = sentences.__name__.replace("_sentences", "_writer")
    return writer


genre_writer = _joined(genre_sentences)
titles_writer = _joined(titles_sentences)
era_writer = _joined(era_sentences)
strictness_writer = _joined(strictness_sentences)

WRITERS: dict[str, ProfileWriter] = {
    "genres": genre_writer,
    "titles": titles_writer,
    "era": era_writer,
    "strictness": strictness_writer,
    "combined": combined_writer,
    "poor": poor_writer,
}


def get_writer(name: str) -> ProfileWriter:
    try:
        return WRITERS[name]
    except KeyError:
        raise ValueError(f"unknown profile writer {name!r}; known: {', '.join(WRITERS)}") from None


def write_profile(name: str, entries: Sequence[HistoryEntry], rng: random.Random) -> str:
    return get_writer(name)(entries, rng)
