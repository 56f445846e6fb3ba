"""Rating -> like / neutral / dislike, as in the paper."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Sentiment(StrEnum):
    LIKE = "like"
    NEUTRAL = "neutral"
    DISLIKE = "dislike"


@dataclass(frozen=True, slots=True)
class LabelScheme:
    """``like`` at or above ``like_at``, ``dislike`` at or below ``dislike_at``, ``neutral`` between.

    The defaults fit half-star scales (ml-latest); :meth:`for_scale` picks 2 as the dislike bound on
    integer scales (MovieLens-100K), where 2.5 cannot occur.
    """

    like_at: float = 4.0
    dislike_at: float = 2.5

    def __post_init__(self) -> None:
        if self.dislike_at >= self.like_at:
            raise ValueError(f"dislike_at ({self.dislike_at}) must be below like_at ({self.like_at})")

    @classmethod
    def for_scale(cls, integer_scale: bool) -> LabelScheme:
        return cls(like_at=4.0, dislike_at=2.0 if integer_scale else 2.5)

    def label(self, rating: float) -> Sentiment:
        if rating >= self.like_at:
            return Sentiment.LIKE
        if rating <= self.dislike_at:
            return Sentiment.DISLIKE
        return Sentiment.NEUTRAL
