"""Features of the embedding reader: similarities between profile, recent history and items, plus rating statistics.

The profile is embedded in chunks (lines, sentences, then groups of comma-separated phrases) because one vector
for a 70-title profile blurs every title into a genre average, and all-MiniLM-L6-v2 reads only 256 tokens.
Ranking features are centred per query: a linear score ranks candidates, so only differences between them matter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from lettingo.data import Item, Rating

FEATURE_VERSION = "1"
MAX_CHUNKS = 24
CHUNK_WORDS = 24
_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+|\n+")


def item_text(item: Item | None, item_id: str) -> str:
    if item is None:
        return f"item {item_id}"
    genres = ", ".join(item.attributes)
    return f"{item.title}. Genres: {genres}" if genres else item.title


def profile_chunks(profile: str) -> list[str]:
    """Short pieces of a profile, each embedded on its own; ``[]`` for an empty profile."""
    chunks: list[str] = []
    for sentence in _SENTENCE_END.split(profile):
        words = sentence.split()
        if not words:
            continue
        if len(words) <= CHUNK_WORDS:
            chunks.append(" ".join(words))
            continue
        group: list[str] = []
        for phrase in sentence.split(","):
            phrase_words = phrase.split()
            if group and len(group) + len(phrase_words) > CHUNK_WORDS:
                chunks.append(" ".join(group))
                group = []
            group.extend(phrase_words[: CHUNK_WORDS * 2])
        if group:
            chunks.append(" ".join(group))
    return chunks[:MAX_CHUNKS]


class ItemStats:
    """Popularity and smoothed mean rating per item, from the training users' ratings only (frozen with the reader)."""

    def __init__(
        self, item_ids: Sequence[str], sums: np.ndarray, counts: np.ndarray, prior_weight: float = 5.0
    ) -> None:
        self.item_ids = list(item_ids)
        self.sums = np.asarray(sums, dtype=np.float64)
        self.counts = np.asarray(counts, dtype=np.float64)
        self.prior_weight = prior_weight
        self._index = {i: n for n, i in enumerate(self.item_ids)}
        self.global_mean = float(self.sums.sum() / max(self.counts.sum(), 1.0))

    @classmethod
    def from_ratings(cls, ratings: Iterable[Rating]) -> ItemStats:
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for r in ratings:
            sums[r.item_id] = sums.get(r.item_id, 0.0) + r.rating
            counts[r.item_id] = counts.get(r.item_id, 0) + 1
        ids = sorted(sums)
        return cls(ids, np.array([sums[i] for i in ids]), np.array([counts[i] for i in ids]))

    def lookup(self, item_ids: Sequence[str], exclude_rating: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(log1p count, smoothed mean); ``exclude_rating`` leaves one rating out (a training user's own)."""
        idx = np.array([self._index.get(i, -1) for i in item_ids])
        known = idx >= 0
        sums = np.where(known, self.sums[idx], 0.0)
        counts = np.where(known, self.counts[idx], 0.0)
        if exclude_rating is not None:
            sums = np.where(counts > 0, sums - exclude_rating, sums)
            counts = np.maximum(counts - 1, 0)
        mean = (sums + self.prior_weight * self.global_mean) / (counts + self.prior_weight)
        return np.log1p(counts), mean


def _profile_sims(profile_vectors: np.ndarray, item_vectors: np.ndarray) -> list[np.ndarray]:
    sims = profile_vectors @ item_vectors.T  # chunks x items
    top = np.sort(sims, axis=0)[::-1][:3]
    return [sims.max(axis=0), sims.mean(axis=0), top.mean(axis=0)]


def _recent_sims(recent_vectors: np.ndarray, ratings: np.ndarray, item_vectors: np.ndarray) -> list[np.ndarray]:
    sims = recent_vectors @ item_vectors.T  # recent x items
    centred = ratings - ratings.mean()
    weights = np.exp(10.0 * sims)
    weights /= weights.sum(axis=0, keepdims=True)
    return [sims.max(axis=0), sims.mean(axis=0), (centred[:, None] * sims).mean(axis=0), weights.T @ ratings]


PROFILE_NAMES = ["profile_max_sim", "profile_mean_sim", "profile_top3_sim"]
RECENT_NAMES = ["recent_max_sim", "recent_mean_sim", "recent_rating_weighted_sim", "recent_sim_weighted_rating"]
ITEM_NAMES = ["item_log_count", "item_mean_rating"]
USER_NAMES = ["recent_mean_rating", "recent_rating_std", "recent_like_share", "recent_dislike_share"]


def feature_names(task: str, channels: str) -> list[str]:
    names = (PROFILE_NAMES if "profile" in channels else []) + (RECENT_NAMES if "recent" in channels else [])
    return names + ITEM_NAMES + (USER_NAMES if task == "sentiment" else [])


def ranking_features(
    profile_vectors: np.ndarray | None,
    recent: tuple[np.ndarray, np.ndarray] | None,  # (vectors, ratings)
    item_vectors: np.ndarray,
    item_stats: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """candidates x features, centred over the candidates of the query."""
    columns: list[np.ndarray] = []
    if profile_vectors is not None:
        columns += (
            _profile_sims(profile_vectors, item_vectors) if len(profile_vectors) else [np.zeros(len(item_vectors))] * 3
        )
    if recent is not None:
        columns += _recent_sims(recent[0], recent[1], item_vectors)
    columns += list(item_stats)
    x = np.stack(columns, axis=1)
    return x - x.mean(axis=0, keepdims=True)


def sentiment_features(
    profile_vectors: np.ndarray | None,
    recent_vectors: np.ndarray,
    recent_ratings: np.ndarray,
    target_vector: np.ndarray,
    target_stats: tuple[float, float],
    like_at: float,
    dislike_at: float,
) -> np.ndarray:
    columns: list[float] = []
    target = target_vector[None, :]
    if profile_vectors is not None:
        columns += [float(c[0]) for c in _profile_sims(profile_vectors, target)] if len(profile_vectors) else [0.0] * 3
    columns += [float(c[0]) for c in _recent_sims(recent_vectors, recent_ratings, target)]
    columns += list(target_stats)
    columns += [
        float(recent_ratings.mean()),
        float(recent_ratings.std()),
        float((recent_ratings >= like_at).mean()),
        float((recent_ratings <= dislike_at).mean()),
    ]
    return np.array(columns)
