"""The CPU f_Rec: all-MiniLM-L6-v2 similarities and rating statistics read by frozen linear scorers.

One scorer per (task, channels): ``profile``, ``recent``, ``profile+recent`` and ``none`` (item statistics
only), so that a query without a profile or without h_u is scored by a model trained on that same situation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lettingo.data import Dataset, LabelScheme, Sentiment
from lettingo.recommenders.base import (
    RankingPrediction,
    RankingQuery,
    SentimentPrediction,
    SentimentQuery,
    Task,
)
from lettingo.recommenders.encoder import TextEncoder, encoder_id
from lettingo.recommenders.features import (
    FEATURE_VERSION,
    ItemStats,
    feature_names,
    item_text,
    profile_chunks,
    ranking_features,
    sentiment_features,
)
from lettingo.recommenders.scorer import LinearScorer, read_frozen, write_frozen

log = logging.getLogger(__name__)

Query = SentimentQuery | RankingQuery
MAX_CACHED_PROFILES = 50_000


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
        self._item_vectors: dict[str, np.ndarray] = {}
        self._profile_vectors: dict[str, np.ndarray] = {}

    # --- embeddings -------------------------------------------------------------------------------------------
    def prepare(self, profiles: Sequence[str], item_ids: Sequence[str]) -> None:
        """Embed, in as few model calls as possible, every profile and item that is not cached yet."""
        new_items = sorted({i for i in item_ids if i not in self._item_vectors})
        if new_items:
            texts = [item_text(self.dataset.items.get(i), i) for i in new_items]
            self._item_vectors.update(zip(new_items, self.encoder.encode(texts, persist=True), strict=True))
        new_profiles = list(dict.fromkeys(p for p in profiles if p not in self._profile_vectors))
        if new_profiles:
            if len(self._profile_vectors) + len(new_profiles) > MAX_CACHED_PROFILES:
                self._profile_vectors.clear()
            chunked = [profile_chunks(p) for p in new_profiles]
            vectors = self.encoder.encode([c for chunks in chunked for c in chunks])
            start = 0
            for profile, chunks in zip(new_profiles, chunked, strict=True):
                self._profile_vectors[profile] = vectors[start : start + len(chunks)]
                start += len(chunks)

    def warm_items(self) -> None:
        """Embed the whole catalogue now (cached on disk), so that scoring never waits on a new item."""
        self.prepare([], list(self.dataset.items))
        self.encoder.save()

    def _items(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.stack([self._item_vectors[i] for i in item_ids])

    def _recent(self, query: Query) -> tuple[np.ndarray, np.ndarray] | None:
        if not query.recent:
            return None
        return self._items([r.item_id for r in query.recent]), np.array([r.rating for r in query.recent])

    # --- features ---------------------------------------------------------------------------------------------
    def features(self, task: Task, query: Query) -> tuple[str, np.ndarray]:
        """(channels, features): ``candidates x features`` for ranking, one row for sentiment."""
        channels = channels_of(query)
        profile = self._profile_vectors[query.profile] if "profile" in channels else None
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
        """Ranking: one score per candidate. Sentiment: probabilities in :attr:`sentiment_classes` order."""
        task = Task(task)
        item_ids: list[str] = []
        for q in queries:
            item_ids += list(q.candidate_ids) if isinstance(q, RankingQuery) else [q.target_id]
            item_ids += [r.item_id for r in q.recent or ()]
        self.prepare([q.profile for q in queries if q.profile.strip()], item_ids)
        by_channels: dict[str, list[tuple[int, np.ndarray]]] = {}
        for n, q in enumerate(queries):
            channels, x = self.features(task, q)
            by_channels.setdefault(channels, []).append((n, x))
        out: list[np.ndarray] = [np.empty(0)] * len(queries)
        for channels, rows in by_channels.items():
            scorer = self.scorers.get((task.value, channels))
            if scorer is None:
                raise KeyError(f"this reader has no {task.value} scorer for channels {channels!r}")
            x = np.concatenate([r for _, r in rows])
            scores = scorer.logits(x)[:, 0] if task is Task.RANKING else scorer.probabilities(x)
            start = 0
            for n, r in rows:
                out[n] = scores[start : start + len(r)] if task is Task.RANKING else scores[start]
                start += len(r)
        return out

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


def load_manifest_version(folder: Path) -> str:
    _, manifest = read_frozen(folder)
    return f"embedding-{manifest['sha256']['reader.npz'][:12]}"
