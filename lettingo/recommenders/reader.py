"""The CPU f_Rec: all-MiniLM-L6-v2 similarities and rating statistics read by frozen linear scorers.

One scorer per (task, channels): ``profile``, ``recent``, ``profile+recent`` and ``none`` (item statistics
only), so that a query without a profile or without h_u is scored by a model trained on that same situation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lettingo.byte_lru import MIB, ByteLRU
from lettingo.data import Dataset, LabelScheme, Sentiment
from lettingo.recommenders.base import (
    RankingPrediction,
    RankingQuery,
    SentimentPrediction,
    SentimentQuery,
    Task,
)
from lettingo.recommenders.encoder import EMBEDDING_DIM, TextEncoder, encoder_id
from lettingo.recommenders.features import (
    FEATURE_VERSION,
    ItemStats,
    batch_features,
    context_sims,
    feature_columns,
    feature_names,
    item_text,
    profile_chunks,
    ranking_features,
    sentiment_features,
)
from lettingo.recommenders.scorer import LinearScorer, read_frozen, write_frozen

log = logging.getLogger(__name__)

Query = SentimentQuery | RankingQuery
# Chunk vectors of the profiles scored lately (keyed by the profile text): about 6,000 profiles of 1 KB.
PROFILE_CACHE_BYTES = 64 * MIB
BLOCK_QUERIES = 512  # queries whose padded vectors are gathered at once (a few MB each), bounding the memory


def channels_of(query: Query) -> str:
    has_profile = bool(query.profile.strip())
    has_recent = query.recent is not None and len(query.recent) > 0
    return {(True, True): "profile+recent", (True, False): "profile", (False, True): "recent"}.get(
        (has_profile, has_recent), "none"
    )


class EmbeddingReader:
    name = "embedding"

    def __init__(
        self,
        scorers: dict[tuple[str, str], LinearScorer],
        item_stats: ItemStats,
        dataset: Dataset,
        encoder: TextEncoder,
        scheme: LabelScheme,
        version: str = "unsaved",
    ) -> None:
        self.scorers = scorers
        self.item_stats = item_stats
        self.dataset = dataset
        self.encoder = encoder
        self.scheme = scheme
        self.version = version
        # Item vectors and statistics live in growing matrices, so that a batch gathers them by row index;
        # row 0 is zeros, the padding of queries with fewer items than the longest.
        self._item_rows: dict[str, int] = {}
        self._item_matrix = np.zeros((1, EMBEDDING_DIM), dtype=np.float32)
        self._item_stat_rows = np.zeros((1, 2), dtype=np.float64)  # (log1p count, smoothed mean) as ItemStats.lookup
        self.profile_vectors: ByteLRU[str, np.ndarray] = ByteLRU(PROFILE_CACHE_BYTES)
        self._batch_profiles: dict[str, np.ndarray] = {}  # the last prepared batch's, held while it is scored

    # --- embeddings -------------------------------------------------------------------------------------------
    def prepare(self, profiles: Sequence[str], item_ids: Sequence[str]) -> None:
        """Embed, in as few model calls as possible, every profile and item that is not cached yet."""
        rows = self._item_rows
        new_items = sorted({i for i in item_ids if i not in rows})
        if new_items:
            texts = [item_text(self.dataset.items.get(i), i) for i in new_items]
            self._add_items(new_items, self.encoder.encode(texts, persist=True))
        self._batch_profiles = {}
        new_profiles = []
        for p in dict.fromkeys(profiles):
            cached = self.profile_vectors.get(p)
            if cached is None:
                new_profiles.append(p)
            else:
                self._batch_profiles[p] = cached
        if new_profiles:
            chunked = [profile_chunks(p) for p in new_profiles]
            vectors = self.encoder.encode([c for chunks in chunked for c in chunks])
            start = 0
            for profile, chunks in zip(new_profiles, chunked, strict=True):
                own = vectors[start : start + len(chunks)].copy()  # a view would keep the whole batch alive
                self.profile_vectors.put(profile, own)
                self._batch_profiles[profile] = own
                start += len(chunks)

    def _profile(self, profile: str) -> np.ndarray:
        """A prepared profile's chunk vectors: this batch's own, even where the bounded cache let them go."""
        found = self._batch_profiles.get(profile)
        return found if found is not None else self.profile_vectors[profile]

    def warm_items(self) -> None:
        """Embed the whole catalogue now (cached on disk), so that scoring never waits on a new item."""
        self.prepare([], list(self.dataset.items))
        self.encoder.save()

    def _add_items(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        start = len(self._item_rows) + 1
        end = start + len(item_ids)
        if end > len(self._item_matrix):  # grow geometrically: adding items one batch at a time stays linear
            size = max(end, 2 * len(self._item_matrix), 1024)
            matrix = np.zeros((size, EMBEDDING_DIM), dtype=np.float32)
            matrix[:start] = self._item_matrix[:start]
            stats = np.zeros((size, 2), dtype=np.float64)
            stats[:start] = self._item_stat_rows[:start]
            self._item_matrix, self._item_stat_rows = matrix, stats
        self._item_matrix[start:end] = vectors
        self._item_stat_rows[start:end] = np.stack(self.item_stats.lookup(item_ids), axis=1)
        self._item_rows.update(zip(item_ids, range(start, end), strict=True))

    def _items(self, item_ids: Sequence[str]) -> np.ndarray:
        rows = self._item_rows
        return self._item_matrix[[rows[i] for i in item_ids]]

    def _recent(self, query: Query) -> tuple[np.ndarray, np.ndarray] | None:
        if not query.recent:
            return None
        return self._items([r.item_id for r in query.recent]), np.array([r.rating for r in query.recent])

    # --- features ---------------------------------------------------------------------------------------------
    def features(self, task: Task, query: Query) -> tuple[str, np.ndarray]:
        """(channels, features): ``candidates x features`` for ranking, one row for sentiment."""
        channels = channels_of(query)
        profile = self._profile(query.profile) if "profile" in channels else None
        recent = self._recent(query)
        if task is Task.RANKING:
            assert isinstance(query, RankingQuery)
            ids = query.candidate_ids
            return channels, ranking_features(profile, recent, self._items(ids), self.item_stats.lookup(ids))
        assert isinstance(query, SentimentQuery)
        if recent is None:
            raise ValueError("the sentiment task needs the recent history h_u")
        count, mean = self.item_stats.lookup([query.target_id])
        row = sentiment_features(
            profile,
            recent[0],
            recent[1],
            self._items([query.target_id])[0],
            (float(count[0]), float(mean[0])),
            self.scheme.like_at,
            self.scheme.dislike_at,
        )
        return channels, row[None, :]

    # --- scoring ----------------------------------------------------------------------------------------------
    def score_batch(self, task: Task | str, queries: Sequence[Query]) -> list[np.ndarray]:
        """Ranking: one score per candidate. Sentiment: probabilities in :attr:`sentiment_classes` order.

        Several queries are scored together: their features are computed for the whole batch at once
        (:meth:`batch_features`), equal to float32 rounding to those of :meth:`features`, the one-query path
        that the scorers were trained on and that a single query still takes.
        """
        task = Task(task)
        item_ids: list[str] = []
        for q in queries:
            if task is Task.RANKING:
                if not isinstance(q, RankingQuery):
                    raise TypeError(f"the ranking task needs RankingQuery, not {type(q).__name__}")
                item_ids += q.candidate_ids
            else:
                if not isinstance(q, SentimentQuery):
                    raise TypeError(f"the sentiment task needs SentimentQuery, not {type(q).__name__}")
                if not q.recent:
                    raise ValueError("the sentiment task needs the recent history h_u")
                item_ids.append(q.target_id)
            item_ids += [r.item_id for r in q.recent or ()]
        self.prepare([q.profile for q in queries if q.profile.strip()], item_ids)
        if len(queries) == 1:  # the one-query path has less fixed cost than the padded arrays
            channels, x = self.features(task, queries[0])
            scores = self._score(task, channels, x)
            return [scores if task is Task.RANKING else scores[0]]
        out: list[np.ndarray] = [np.empty(0)] * len(queries)
        for start in range(0, len(queries), BLOCK_QUERIES):
            block = queries[start : start + BLOCK_QUERIES]
            x, n_items, block_channels = self.batch_features(task, block)
            for name in dict.fromkeys(block_channels):
                picked = [n for n, c in enumerate(block_channels) if c == name]
                rows = x[picked][:, :, feature_columns(task.value, name)]
                counts = n_items[picked]
                valid = np.arange(rows.shape[1])[None, :] < counts[:, None]
                scores = self._score(task, name, rows[valid])
                ends = np.cumsum(counts).tolist()
                for k, n in enumerate(picked):
                    out[start + n] = (
                        scores[ends[k] - 1] if task is Task.SENTIMENT else scores[ends[k] - counts[k] : ends[k]]
                    )
        return out

    def _score(self, task: Task, channels: str, x: np.ndarray) -> np.ndarray:
        """Ranking: one logit per row. Sentiment: class probabilities, one row per query."""
        scorer = self.scorers.get((task.value, channels))
        if scorer is None:
            raise KeyError(f"this reader has no {task.value} scorer for channels {channels!r}")
        return scorer.logits(x)[:, 0] if task is Task.RANKING else scorer.probabilities(x)

    def batch_features(self, task: Task | str, queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(features ``Q x C x F`` with the columns of every channel, items per query, channels per query) of
        prepared queries; ranking candidates are padded to the longest query (``C``), sentiment has ``C = 1``.

        Queries with the same profile and h_u (the draws of one case) form one context: its profile chunks and
        h_u are gathered once and compared with the items of all its queries in one matrix product.
        """
        task = Task(task)
        channels = [channels_of(q) for q in queries]
        rows = self._item_rows
        if task is Task.RANKING:
            n_items = np.array([len(q.candidate_ids) for q in queries], dtype=np.int64)  # type: ignore[union-attr]
            index = _padded([rows[i] for q in queries for i in q.candidate_ids], n_items, np.int64)  # type: ignore[union-attr]
        else:
            n_items = np.ones(len(queries), dtype=np.int64)
            index = np.array([rows[q.target_id] for q in queries], dtype=np.int64).reshape(-1, 1)  # type: ignore[union-attr]
        stats = self._item_stat_rows[index]  # padding: row 0, zeros

        # distinct profiles and h_u, and the contexts (profile, h_u) of the queries
        profiles: dict[str, int] = {"": 0}
        recents: dict[int, int] = {id(None): 0}
        recent_list: list[Sequence] = [()]  # each distinct h_u; () for none
        contexts: dict[tuple[int, int], list[int]] = {}
        query_profile = np.zeros(len(queries), dtype=np.int64)
        for n, (q, c) in enumerate(zip(queries, channels, strict=True)):
            p = query_profile[n] = profiles.setdefault(q.profile, len(profiles)) if "profile" in c else 0
            r = recents.setdefault(id(q.recent) if q.recent else id(None), len(recents))
            if r == len(recent_list):
                recent_list.append(q.recent or ())
            contexts.setdefault((p, r), []).append(n)
        chunk_vectors = [np.zeros((0, EMBEDDING_DIM), dtype=np.float32)]
        chunk_vectors += [self._profile(p) for p in list(profiles)[1:]]
        n_chunks = np.array([len(v) for v in chunk_vectors], dtype=np.int64)
        n_recent = np.array([len(r) for r in recent_list], dtype=np.int64)
        ratings = _padded([x.rating for r in recent_list for x in r], n_recent, np.float64)
        recent_index = _padded([rows[x.item_id] for r in recent_list for x in r], n_recent, np.int64)
        width_r, width_k = recent_index.shape[1], int(n_chunks.max())

        # contexts with many queries are split so that padding every context to the same slots stays cheap
        slots = max(1, min(max(len(m) for m in contexts.values()), -(-len(queries) // len(contexts))))
        groups = [
            (key, members[i : i + slots]) for key, members in contexts.items() for i in range(0, len(members), slots)
        ]
        context_of = np.empty(len(queries), dtype=np.int64)
        slot_of = np.empty(len(queries), dtype=np.int64)
        vectors = np.zeros((len(groups), width_r + width_k, EMBEDDING_DIM), dtype=np.float32)
        for g, ((p, _), members) in enumerate(groups):
            context_of[members] = g
            slot_of[members] = range(len(members))
            vectors[g, width_r : width_r + n_chunks[p]] = chunk_vectors[p]
        recent_of_group = np.array([r for (_, r), _ in groups], dtype=np.int64)
        vectors[:, :width_r] = self._item_matrix[recent_index[recent_of_group]]
        group_index = np.zeros((len(groups), slots, index.shape[1]), dtype=np.int64)
        group_index[context_of, slot_of] = index
        sims = context_sims(vectors, self._item_matrix[group_index], context_of, slot_of)

        query_recent = recent_of_group[context_of]
        x = batch_features(
            task.value,
            sims[:, width_r:] if width_k else None,
            n_chunks[query_profile],
            sims[:, :width_r] if width_r else None,
            ratings[query_recent],
            n_recent[query_recent],
            n_items,
            (stats[:, :, 0], stats[:, :, 1]),
            self.scheme.like_at,
            self.scheme.dislike_at,
        )
        return x, n_items, channels

    def score_one(self, task: Task | str, query: Query) -> np.ndarray:
        """The unbatched path: embeds and scores a single query."""
        return self.score_batch(task, [query])[0]

    @property
    def sentiment_classes(self) -> tuple[Sentiment, ...]:
        scorer = self.scorers.get(("sentiment", "recent"))
        return tuple(Sentiment(c) for c in scorer.classes) if scorer else ()

    def predict_sentiment(self, queries: Sequence[SentimentQuery]) -> list[SentimentPrediction]:
        classes = self.sentiment_classes
        out = []
        for probs in self.score_batch(Task.SENTIMENT, queries):
            out.append(
                SentimentPrediction(classes[int(np.argmax(probs))], dict(zip(classes, map(float, probs), strict=True)))
            )
        return out

    def rank(self, queries: Sequence[RankingQuery]) -> list[RankingPrediction]:
        # stable sort on -score: ties keep candidate order, which the sampler already shuffled
        return [
            RankingPrediction(tuple(int(i) for i in np.argsort(-s, kind="stable")))
            for s in self.score_batch(Task.RANKING, queries)
        ]

    # --- persistence ------------------------------------------------------------------------------------------
    def save(self, folder: Path, extra_manifest: dict | None = None) -> str:
        arrays: dict[str, np.ndarray] = {
            "item_stats/ids": np.array(self.item_stats.item_ids),
            "item_stats/sums": self.item_stats.sums,
            "item_stats/counts": self.item_stats.counts,
        }
        scorers = []
        for (task, channels), scorer in sorted(self.scorers.items()):
            arrays.update(scorer.to_arrays(f"{task}/{channels}"))
            scorers.append(
                {
                    "task": task,
                    "channels": channels,
                    "features": list(scorer.feature_names),
                    "classes": list(scorer.classes),
                }
            )
        manifest = {
            "kind": "embedding_reader",
            "encoder": encoder_id(),
            "feature_version": FEATURE_VERSION,
            "label_scheme": {"like_at": self.scheme.like_at, "dislike_at": self.scheme.dislike_at},
            "scorers": scorers,
            **(extra_manifest or {}),
        }
        write_frozen(folder, arrays, manifest)
        self.version = load_manifest_version(folder)
        return self.version

    @classmethod
    def load(cls, folder: Path, dataset: Dataset, encoder: TextEncoder) -> EmbeddingReader:
        """Load a frozen reader; refuses (:class:`ReaderChecksumError`) if its arrays do not match the manifest."""
        arrays, manifest = read_frozen(Path(folder))
        if manifest.get("feature_version") != FEATURE_VERSION or manifest.get("encoder") != encoder_id():
            raise ValueError(
                f"{folder}: built for features v{manifest.get('feature_version')} / {manifest.get('encoder')}; "
                "rebuild it"
            )
        stats = ItemStats(
            [str(i) for i in arrays["item_stats/ids"]], arrays["item_stats/sums"], arrays["item_stats/counts"]
        )
        scorers = {}
        for s in manifest["scorers"]:
            if s["features"] != feature_names(s["task"], s["channels"]):
                raise ValueError(f"{folder}: feature names of {s['task']}/{s['channels']} do not match this code")
            scorers[(s["task"], s["channels"])] = LinearScorer.from_arrays(
                arrays, f"{s['task']}/{s['channels']}", s["features"], s["classes"]
            )
        scheme = LabelScheme(**manifest["label_scheme"])
        return cls(
            scorers, stats, dataset, encoder, scheme, version=f"embedding-{manifest['sha256']['reader.npz'][:12]}"
        )


def _padded(flat: list, counts: np.ndarray, dtype: type) -> np.ndarray:
    """Values of several rows, one row after another, as ``rows x longest`` (zero padded)."""
    width = int(counts.max(initial=0))
    if len(flat) == len(counts) * width:
        return np.array(flat, dtype=dtype).reshape(len(counts), width)
    padded: np.ndarray = np.zeros((len(counts), width), dtype=dtype)
    padded[np.arange(width)[None, :] < counts[:, None]] = flat
    return padded


def load_manifest_version(folder: Path) -> str:
    _, manifest = read_frozen(folder)
    return f"embedding-{manifest['sha256']['reader.npz'][:12]}"
