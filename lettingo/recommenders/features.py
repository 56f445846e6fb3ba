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


# --- the same features for a whole batch of queries at once ----------------------------------------------------
# Per-query rows are padded to the longest of the batch with zero vectors, which give similarities of exactly 0 and
# are masked out of every statistic, so that a few batched matrix products replace a Python loop over queries. The
# reductions run over the same axis in the same order as the one-query functions above: the features match theirs
# to float32 rounding of the similarities (the matrix products differ in shape).


def _valid(counts: np.ndarray, width: int) -> np.ndarray:
    """queries x width: True where a padded row is real."""
    return np.arange(width)[None, :] < counts[:, None]


def context_sims(contexts: np.ndarray, items: np.ndarray, context_of: np.ndarray, slot_of: np.ndarray) -> np.ndarray:
    """Similarities of each query's context vectors (h_u and profile chunks) to its items, ``Q x V x C``.

    Queries that share a context (the draws of one case) are scored by one matrix product: ``contexts`` is
    ``N x V x D``, ``items`` ``N x S x C x D`` holds the items of up to ``S`` queries per context, and query ``q``
    is context ``context_of[q]``, slot ``slot_of[q]``.
    """
    n, s, c, d = items.shape
    sims = np.matmul(contexts, items.reshape(n, s * c, d).transpose(0, 2, 1))  # N x V x S*C
    return sims.reshape(n, contexts.shape[1], s, c)[context_of, :, slot_of, :]


def batch_profile_sims(sims: np.ndarray, n_chunks: np.ndarray) -> list[np.ndarray]:
    """``_profile_sims`` per query from padded similarities ``Q x K x C``; each column ``Q x C``. A query with no
    chunk gets zeros, as :func:`ranking_features` gives it."""
    q, k, c = sims.shape
    if k == 0:
        return [np.zeros((q, c), dtype=np.float32)] * 3
    valid = _valid(n_chunks, k)[:, :, None]
    masked = np.where(valid, sims, np.float32(-np.inf))
    n = np.maximum(n_chunks, 1)
    top = np.sort(masked, axis=1)[:, : -4 if k > 3 else None : -1]  # the 3 largest, descending; padding last
    columns = [
        masked.max(axis=1),
        sims.sum(axis=1) / n.astype(np.float32)[:, None],
        np.where(np.isfinite(top), top, np.float32(0)).sum(axis=1) / np.minimum(n, 3).astype(np.float32)[:, None],
    ]
    empty = (n_chunks == 0)[:, None]
    return [np.where(empty, np.float32(0), col) for col in columns] if empty.any() else columns


def batch_recent_sims(sims: np.ndarray, ratings: np.ndarray, n_recent: np.ndarray) -> list[np.ndarray]:
    """``_recent_sims`` per query from padded similarities ``Q x R x C`` and ratings ``Q x R`` (zero padded); each
    column ``Q x C``. Queries with no recent item get zeros (their scorer does not read them)."""
    valid_r = _valid(n_recent, sims.shape[1])
    valid = valid_r[:, :, None]
    n = np.maximum(n_recent, 1)
    centred = np.where(valid_r, ratings - (ratings.sum(axis=1) / n)[:, None], 0.0)
    weights = np.where(valid, np.exp(np.float32(10.0) * sims), np.float32(0))
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), np.float32(1e-30))
    return [
        np.where((n_recent > 0)[:, None], np.where(valid, sims, np.float32(-np.inf)).max(axis=1), np.float32(0)),
        sims.sum(axis=1) / n.astype(np.float32)[:, None],
        (centred[:, :, None] * sims).sum(axis=1) / n[:, None],
        np.matmul(weights.transpose(0, 2, 1).astype(np.float64), ratings[:, :, None])[:, :, 0],
    ]


def batch_features(
    task: str,
    profile_sims: np.ndarray | None,
    n_chunks: np.ndarray,
    recent_sims: np.ndarray | None,
    ratings: np.ndarray,
    n_recent: np.ndarray,
    n_items: np.ndarray,
    item_stats: tuple[np.ndarray, np.ndarray],
    like_at: float,
    dislike_at: float,
) -> np.ndarray:
    """``Q x C x F`` features of a padded batch with every column of :func:`feature_names` for ``profile+recent``
    (the caller keeps those of each query's channels; :func:`feature_columns`): ranking rows are centred over each
    query's ``n_items`` candidates; sentiment has one item per query (``C = 1``) and adds the rating statistics of
    h_u. ``profile_sims``/``recent_sims`` ``None``: no query of the batch has that channel (zero columns)."""
    q, c = item_stats[0].shape
    zeros = np.zeros((q, c), dtype=np.float32)
    columns = batch_profile_sims(profile_sims, n_chunks) if profile_sims is not None else [zeros] * 3
    columns += batch_recent_sims(recent_sims, ratings, n_recent) if recent_sims is not None else [zeros] * 4
    columns += list(item_stats)
    if task == "sentiment":
        valid = _valid(n_recent, ratings.shape[1])
        n = np.maximum(n_recent, 1)
        mean = ratings.sum(axis=1) / n
        deviation = np.where(valid, ratings - mean[:, None], 0.0)
        user = [
            mean,
            np.sqrt((deviation * deviation).sum(axis=1) / n),
            (valid & (ratings >= like_at)).sum(axis=1) / n,
            (valid & (ratings <= dislike_at)).sum(axis=1) / n,
        ]
        columns += [np.broadcast_to(u[:, None], (q, c)) for u in user]
    x = np.stack(columns, axis=2).astype(np.float64, copy=False)
    if task == "sentiment":
        return x
    x = np.where(_valid(n_items, c)[:, :, None], x, 0.0)
    return x - x.sum(axis=1, keepdims=True) / np.maximum(n_items, 1)[:, None, None]


def feature_columns(task: str, channels: str) -> list[int]:
    """Where the columns of :func:`feature_names` ``(task, channels)`` lie in :func:`batch_features`."""
    full = feature_names(task, "profile+recent")
    return [full.index(name) for name in feature_names(task, channels)]
