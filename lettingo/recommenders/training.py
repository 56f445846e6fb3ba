"""Train the embedding reader once on training users, then freeze it (content-hashed under ``.lettingo/models``)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lettingo.data import Dataset, DatasetSplit, LabelScheme
from lettingo.recommenders.base import RankingQuery, SentimentQuery, Task
from lettingo.recommenders.encoder import TextEncoder, encoder_id
from lettingo.recommenders.features import FEATURE_VERSION, ItemStats, feature_names
from lettingo.recommenders.history_text import PROFILE_STYLES
from lettingo.recommenders.negatives import NegativeSampler
from lettingo.recommenders.reader import EmbeddingReader
from lettingo.recommenders.scorer import LinearScorer

log = logging.getLogger(__name__)

RANKING_CHANNELS = ("profile", "recent", "profile+recent", "none")
SENTIMENT_CHANNELS = ("recent", "profile+recent")


@dataclass(frozen=True)
class ReaderTrainingConfig:
    targets_per_user: int = 3
    draws: int = 2  # negative draws per ranking target
    n_negatives: int = 9
    styles: tuple[str, ...] = ("titles", "genres", "fixed_format", "raw_history")
    max_users: int | None = None
    stats_holdout: int = 12  # each training user's last ratings left out of the item statistics
    regularization_c: float = 1.0
    seed: int = 13


def dataset_fingerprint(dataset: Dataset) -> str:
    h = hashlib.sha256()
    for user in sorted(dataset.ratings_by_user):
        for r in dataset.ratings_by_user[user]:
            h.update(f"{r.user_id},{r.item_id},{r.rating},{r.ts};".encode())
    for item_id in sorted(dataset.items):
        item = dataset.items[item_id]
        h.update(f"{item_id}|{item.title}|{'/'.join(item.attributes)};".encode())
    return h.hexdigest()


def reader_key(dataset: Dataset, split: DatasetSplit, config: ReaderTrainingConfig, scheme: LabelScheme) -> str:
    """A content hash of everything that determines the trained reader."""
    payload = json.dumps(
        {
            "data": dataset_fingerprint(dataset),
            "split": asdict(split.cfg),
            "config": asdict(config),
            "scheme": [scheme.like_at, scheme.dislike_at],
            "encoder": encoder_id(),
            "features": FEATURE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train_reader(
    dataset: Dataset,
    split: DatasetSplit,
    encoder: TextEncoder,
    config: ReaderTrainingConfig | None = None,
    scheme: LabelScheme | None = None,
) -> tuple[EmbeddingReader, dict[str, float]]:
    """Fit every (task, channels) scorer on the training users; returns the reader and its training accuracy."""
    config = config or ReaderTrainingConfig()
    scheme = scheme or LabelScheme.for_scale(dataset.integer_scale)
    users = list(split.train[: config.max_users] if config.max_users else split.train)
    held = config.stats_holdout
    stats = ItemStats.from_ratings(r for u in users for r in dataset.ratings_by_user[u][: -held or None])
    reader = EmbeddingReader({}, stats, dataset, encoder, scheme)
    sampler = NegativeSampler(dataset, config.n_negatives, seed=config.seed)
    user_set = set(users)
    cases = [c for c in split.cases(dataset, "train", config.targets_per_user) if c.user_id in user_set]
    first_case = {c.user_id: c for c in cases if c.position == 0}

    profiles: dict[str, str] = {}
    for n, user in enumerate(users):
        if user in first_case:
            style = config.styles[n % len(config.styles)]
            writer = PROFILE_STYLES[style]
            profiles[user] = writer(first_case[user].long_history, dataset.items)

    ranking: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {c: ([], []) for c in RANKING_CHANNELS}
    sentiment: dict[str, tuple[list[np.ndarray], list[str]]] = {c: ([], []) for c in SENTIMENT_CHANNELS}
    batch = 64
    for start in tqdm(range(0, len(cases), batch), desc="reader features", unit="batch", leave=False):
        chunk = [c for c in cases[start : start + batch] if c.user_id in profiles]
        candidates = [sampler.sample(c.user_id, c.target.item_id, d) for c in chunk for d in range(config.draws)]
        item_ids = [i for cand in candidates for i in cand.candidate_ids]
        item_ids += [r.item_id for c in chunk for r in c.recent] + [c.target.item_id for c in chunk]
        reader.prepare([profiles[c.user_id] for c in chunk], item_ids)
        for k, case in enumerate(chunk):
            profile = profiles[case.user_id]
            for cand in candidates[k * config.draws : (k + 1) * config.draws]:
                y = np.zeros(len(cand.candidate_ids))
                y[cand.target_index] = 1
                for channels in RANKING_CHANNELS:
                    q = RankingQuery(
                        profile if "profile" in channels else "",
                        case.recent if "recent" in channels else None,
                        cand.candidate_ids,
                    )
                    ranking[channels][0].append(reader.features(Task.RANKING, q)[1])
                    ranking[channels][1].append(y)
            label = scheme.label(case.target.rating).value
            for channels in SENTIMENT_CHANNELS:
                s = SentimentQuery(profile if "profile" in channels else "", case.recent, case.target.item_id)
                sentiment[channels][0].append(reader.features(Task.SENTIMENT, s)[1])
                sentiment[channels][1].append(label)
    encoder.save()

    report: dict[str, float] = {"train_users": float(len(profiles)), "train_cases": float(len(cases))}
    for channels, (xs, ys) in ranking.items():
        scorer = LinearScorer.fit(
            np.concatenate(xs), np.concatenate(ys), feature_names("ranking", channels), config.regularization_c
        )
        reader.scorers[("ranking", channels)] = scorer
        hits = [float(np.argmax(scorer.logits(x)[:, 0]) == np.argmax(y)) for x, y in zip(xs, ys, strict=True)]
        report[f"ranking/{channels}/train_hr1"] = float(np.mean(hits))
    for channels, (xs, labels) in sentiment.items():
        x, y = np.concatenate(xs), np.array(labels)
        scorer = LinearScorer.fit(x, y, feature_names("sentiment", channels), config.regularization_c)
        reader.scorers[("sentiment", channels)] = scorer
        predicted = np.array(scorer.classes)[np.argmax(scorer.probabilities(x), axis=1)]
        report[f"sentiment/{channels}/train_accuracy"] = float(np.mean(predicted == y))
    log.info("reader trained: %s", json.dumps(report))
    return reader, report


def build_or_load_reader(
    dataset: Dataset,
    split: DatasetSplit,
    models_dir: Path,
    encoder: TextEncoder,
    config: ReaderTrainingConfig | None = None,
    scheme: LabelScheme | None = None,
) -> tuple[EmbeddingReader, Path]:
    """The frozen reader for this data, split and config: loaded if already built (checksum verified), else trained."""
    config = config or ReaderTrainingConfig()
    scheme = scheme or LabelScheme.for_scale(dataset.integer_scale)
    folder = Path(models_dir) / f"reader-{reader_key(dataset, split, config, scheme)}"
    if (folder / "manifest.json").exists():
        log.info("using the frozen reader at %s", folder)
        return EmbeddingReader.load(folder, dataset, encoder), folder
    reader, report = train_reader(dataset, split, encoder, config, scheme)
    reader.save(folder, {"training": asdict(config), "training_report": report, "dataset": dataset.name})
    log.info("froze the reader at %s (version %s)", folder, reader.version)
    return EmbeddingReader.load(folder, dataset, encoder), folder
