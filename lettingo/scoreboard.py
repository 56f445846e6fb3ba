"""A user's explored candidates, their rewards, and the preference pairs they make.

An exploring regeneration opens a *round*: K candidate profiles from one prompt. Each later rated interaction
of the user tests every open candidate with f_Rec (task evaluation); click rewards count too when they name a
candidate. Once every candidate of a round has ``min_rewards`` rewards, the round's candidates split into P+
(mean reward above 0.5) and P- (below); each (P+, P-) pair is emitted once, as in the paper.

Rewards are recorded once per (source, target), so a reward delivered twice is counted once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol, Self

from pydantic import BaseModel, Field

from lettingo.data import LabelScheme, Rating, Sentiment
from lettingo.recommenders.base import SentimentPrediction, SentimentQuery
from lettingo.records import Item, PreferencePair, ProfileCandidate, Reward, RewardSource

MAX_ROUNDS = 3


class CandidateScore(BaseModel):
    profile_id: str
    text: str
    generator: str = ""
    rewarded: list[str] = Field(default_factory=list)  # "<source>:<target>" already counted
    total: float = 0.0

    @property
    def n(self) -> int:
        return len(self.rewarded)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0


class Round(BaseModel):
    round_id: str  # the history_ref the candidates were generated from
    prompt: str
    policy_version: str
    candidates: dict[str, CandidateScore] = Field(default_factory=dict)
    emitted_pairs: list[str] = Field(default_factory=list)


class Scoreboard(BaseModel):
    rounds: list[Round] = Field(default_factory=list)  # oldest first, at most MAX_ROUNDS

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        return cls.model_validate_json(payload)

    def open_candidates(self) -> list[CandidateScore]:
        return [c for r in self.rounds for c in r.candidates.values()]

    def add_candidate(self, candidate: ProfileCandidate, prompt: str) -> bool:
        """File ``candidate`` under its round (opened on first sight); False if it was already there."""
        round_ = next((r for r in self.rounds if r.round_id == candidate.history_ref), None)
        if round_ is None:
            round_ = Round(round_id=candidate.history_ref, prompt=prompt, policy_version=candidate.model_version)
            self.rounds.append(round_)
            del self.rounds[:-MAX_ROUNDS]
        if candidate.profile_id in round_.candidates:
            return False
        round_.candidates[candidate.profile_id] = CandidateScore(
            profile_id=candidate.profile_id, text=candidate.text, generator=candidate.generator
        )
        return True

    def record(self, reward: Reward) -> bool:
        """Count ``reward`` for its candidate; False if unknown or already counted."""
        key = f"{reward.source.value}:{reward.target}"
        for round_ in self.rounds:
            score = round_.candidates.get(reward.profile_id)
            if score is not None and key not in score.rewarded:
                score.rewarded.append(key)
                score.total += reward.value
                return True
        return False

    def new_pairs(self, user_id: str, min_rewards: int) -> list[PreferencePair]:
        pairs = []
        for round_ in self.rounds:
            scores = list(round_.candidates.values())
            if len(scores) < 2 or any(s.n < min_rewards for s in scores):
                continue
            chosen = [s for s in scores if s.mean > 0.5]
            rejected = [s for s in scores if s.mean < 0.5]
            for good in chosen:
                for bad in rejected:
                    pair_id = hashlib.blake2b(
                        f"{good.profile_id}>{bad.profile_id}".encode(), digest_size=12
                    ).hexdigest()
                    if pair_id in round_.emitted_pairs:
                        continue
                    round_.emitted_pairs.append(pair_id)
                    pairs.append(
                        PreferencePair(
                            pair_id=pair_id,
                            user_id=user_id,
                            prompt=round_.prompt,
                            chosen=good.text,
                            rejected=bad.text,
                            chosen_reward=good.mean,
                            rejected_reward=bad.mean,
                            chosen_profile_id=good.profile_id,
                            rejected_profile_id=bad.profile_id,
                            policy_version=round_.policy_version,
                        )
                    )
        return pairs


class SentimentReader(Protocol):
    """The part of f_Rec (lettingo.recommenders.base.Recommender) that task evaluation needs."""

    name: str
    version: str

    def predict_sentiment(self, queries: Sequence[SentimentQuery]) -> list[SentimentPrediction]: ...


class AttributeMentionReader:
    """A cheap, frozen f_Rec for tests and demos without models: *like* when the profile names the target's
    title or one of its genres, *dislike* otherwise. Enough to give profiles different rewards."""

    name = "attribute_mention"
    version = "1"

    def __init__(self, catalog: Mapping[str, Item]) -> None:
        self.catalog = catalog

    def predict_sentiment(self, queries: Sequence[SentimentQuery]) -> list[SentimentPrediction]:
        out = []
        for q in queries:
            item = self.catalog.get(q.target_id)
            words = [item.title, *item.attributes] if item else []
            text = q.profile.lower()
            hit = any(w.lower() in text for w in words if w)
            out.append(SentimentPrediction(Sentiment.LIKE if hit else Sentiment.DISLIKE))
        return out


def evaluate_candidates(
    user_id: str,
    candidates: Sequence[CandidateScore],
    recent: Sequence[Rating],
    target_item_id: str,
    rating: float,
    reader: SentimentReader,
    labels: LabelScheme,
    ts: float,
) -> list[Reward]:
    """Task evaluation: can f_Rec, reading each candidate, predict the user's sentiment for the new target?"""
    if not candidates:
        return []
    actual = labels.label(rating)
    queries = [SentimentQuery(c.text, tuple(recent), target_item_id) for c in candidates]
    predictions = reader.predict_sentiment(queries)
    rewards = []
    for candidate, prediction in zip(candidates, predictions, strict=True):
        correct = prediction.label is actual
        rewards.append(
            Reward(
                user_id=user_id,
                profile_id=candidate.profile_id,
                source=RewardSource.TASK_EVAL,
                target=target_item_id,
                predicted=prediction.label.value if prediction.label else None,
                actual=actual.value,
                correct=correct,
                value=1.0 if correct else 0.0,
                model_version=f"{reader.name}:{reader.version}",
                ts=ts,
            )
        )
    return rewards
