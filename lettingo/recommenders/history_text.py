"""Deterministic texts made from a user's older history H_u, used by the baselines and to train the reader.

Four styles: the raw history as text, a fixed-format JSON summary, liked/disliked titles, and genres only.
They are deliberately simple; the learned generator should beat them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence

from lettingo.data import Item, LabelScheme, Rating, Sentiment

ProfileWriter = Callable[[Sequence[Rating], dict[str, Item]], str]
MAX_CHARS = 2_000


def _title(items: dict[str, Item], item_id: str) -> str:
    item = items.get(item_id)
    return item.title if item else f"item {item_id}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def raw_history_text(history: Sequence[Rating], items: dict[str, Item]) -> str:
    """The long history itself, newest first: one "title (genres): rating" line per item."""
    lines = []
    for r in reversed(history):
        item = items.get(r.item_id)
        genres = ", ".join(item.attributes) if item else ""
        lines.append(f"{_title(items, r.item_id)} ({genres}): {r.rating:g}")
    return _cut("\n".join(lines))


def _genre_counts(history: Sequence[Rating], items: dict[str, Item], scheme: LabelScheme) -> tuple[Counter, Counter]:
    liked: Counter[str] = Counter()
    disliked: Counter[str] = Counter()
    for r in history:
        item = items.get(r.item_id)
        label = scheme.label(r.rating)
        for g in item.attributes if item else ():
            if label is Sentiment.LIKE:
                liked[g] += 1
            elif label is Sentiment.DISLIKE:
                disliked[g] += 1
    return liked, disliked


def fixed_format_profile(history: Sequence[Rating], items: dict[str, Item], scheme: LabelScheme | None = None) -> str:
    """A short JSON summary: rating habits, top genres, a few liked and disliked titles."""
    scheme = scheme or LabelScheme()
    if not history:
        return json.dumps({"ratings": 0})
    ratings = [r.rating for r in history]
    liked_genres, disliked_genres = _genre_counts(history, items, scheme)
    best = sorted(history, key=lambda r: (-r.rating, -r.ts))
    summary = {
        "ratings": len(ratings),
        "mean_rating": round(sum(ratings) / len(ratings), 2),
        "liked_genres": [g for g, _ in liked_genres.most_common(4)],
        "disliked_genres": [g for g, _ in disliked_genres.most_common(3)],
        "liked": [_title(items, r.item_id) for r in best if scheme.label(r.rating) is Sentiment.LIKE][:5],
        "disliked": [_title(items, r.item_id) for r in reversed(best) if scheme.label(r.rating) is Sentiment.DISLIKE][
            :3
        ],
    }
    return _cut(json.dumps(summary, ensure_ascii=False))


def titles_profile(history: Sequence[Rating], items: dict[str, Item], scheme: LabelScheme | None = None) -> str:
    """Concrete titles: the ones liked (best and newest first), then the ones disliked."""
    scheme = scheme or LabelScheme()
    ordered = sorted(history, key=lambda r: (-r.rating, -r.ts))
    liked = [_title(items, r.item_id) for r in ordered if scheme.label(r.rating) is Sentiment.LIKE]
    disliked = [_title(items, r.item_id) for r in reversed(ordered) if scheme.label(r.rating) is Sentiment.DISLIKE]
    text = "Enjoyed: " + ", ".join(liked[:25]) + "."
    if disliked:
        text += "\nDid not enjoy: " + ", ".join(disliked[:8]) + "."
    return _cut(text)


def genre_profile(history: Sequence[Rating], items: dict[str, Item], scheme: LabelScheme | None = None) -> str:
    """Genres only, no titles: the coarse profile that the titles style should beat on ranking."""
    scheme = scheme or LabelScheme()
    liked, disliked = _genre_counts(history, items, scheme)
    watched: Counter[str] = Counter(
        g for r in history for g in (items[r.item_id].attributes if r.item_id in items else ())
    )
    text = "Watches mostly " + ", ".join(g for g, _ in watched.most_common(4)) + " movies."
    if liked:
        text += " Favourite genres: " + ", ".join(g for g, _ in liked.most_common(3)) + "."
    if disliked:
        text += " Tends to dislike " + ", ".join(g for g, _ in disliked.most_common(2)) + "."
    return text


PROFILE_STYLES: dict[str, ProfileWriter] = {
    "raw_history": raw_history_text,
    "fixed_format": fixed_format_profile,
    "titles": titles_profile,
    "genres": genre_profile,
}
