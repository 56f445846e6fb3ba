"""The recommender (f_Rec) interface shared by every reader, for the two tasks.

``sentiment``: profile + recent history h_u + one target item -> like / neutral / dislike.
``ranking``: profile (+ optionally h_u) + numbered candidates -> candidates best first.
A prediction of ``None`` means the reader's answer could not be parsed: it is wrong, and it is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from lettingo.data import Rating, Sentiment


class Task(StrEnum):
    SENTIMENT = "sentiment"
    RANKING = "ranking"


@dataclass(frozen=True, slots=True)
class SentimentQuery:
    profile: str
    recent: tuple[Rating, ...]
    target_id: str


@dataclass(frozen=True, slots=True)
class RankingQuery:
    profile: str
    recent: tuple[Rating, ...] | None  # None: the profile is the only history channel
    candidate_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SentimentPrediction:
    label: Sentiment | None
    probabilities: dict[Sentiment, float] | None = None  # None for readers that only answer a label


@dataclass(frozen=True, slots=True)
class RankingPrediction:
    order: tuple[int, ...] | None  # candidate indices, best first; an LLM judge gives only its one choice


@runtime_checkable
class Recommender(Protocol):
    """f_Rec. ``version`` identifies the frozen reader so that rewards record which one judged them."""

    name: str
    version: str

    def predict_sentiment(self, queries: Sequence[SentimentQuery]) -> list[SentimentPrediction]: ...

    def rank(self, queries: Sequence[RankingQuery]) -> list[RankingPrediction]: ...


@runtime_checkable
class TextCompleter(Protocol):
    """Anything that completes a batch of prompts (a generator backend, an OpenAI-compatible client adapter)."""

    def complete(self, prompts: list[str], temperature: float = 0.0) -> list[str]: ...
