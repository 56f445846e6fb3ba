"""Figures of a history H_u, computed once and stated the same way everywhere.

The profile prompt shows them in a summary line and the profile writers state them, in the same words, so a
generator only has to copy a figure, never to compute one: a 2M-parameter model cannot average 70 ratings, and
copying is what made its titles true (one token per title). ``lettingo.profile_quality`` checks the figures a
profile states against the same history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean

from lettingo.data import Sentiment


def decade(year: int) -> str:
    return f"{year // 10 * 10}s"


# What kind of rater the shares of likes and dislikes make a user, and the words each kind is stated in (with its
# article, as a sentence opens with it). The writers, the prompt's summary, grounded decoding and the fact checker
# all read these, so "hard-to-please" can only be written for a user who dislikes 30 % or more of what they rate.
GENEROUS, STRICT, BALANCED = "generous", "strict", "balanced"
RATER_PHRASES: dict[str, tuple[str, ...]] = {
    GENEROUS: ("A generous rater", "An easy-to-please viewer", "A positive rater"),
    STRICT: ("A harsh critic", "A strict rater", "A hard-to-please viewer"),
    BALANCED: ("A balanced rater", "A moderate rater", "A middle-of-the-road viewer"),
}
GENEROUS_LIKE_SHARE = 0.6
STRICT_DISLIKE_SHARE = 0.3


@dataclass(frozen=True, slots=True)
class HistoryStats:
    count: int
    average: float
    like_share: float  # in [0, 1]
    dislike_share: float
    oldest: int | None  # item years
    newest: int | None
    decade_averages: dict[str, float]  # decades with two or more ratings

    @classmethod
    def of(cls, entries: Sequence) -> HistoryStats | None:
        """``entries``: :class:`lettingo.prompts.profile.HistoryEntry` items; None for an empty history."""
        if not entries:
            return None
        years = [e.item.year for e in entries if e.item.year is not None]
        by_decade: dict[str, list[float]] = {}
        for e in entries:
            if e.item.year is not None:
                by_decade.setdefault(decade(e.item.year), []).append(e.rating)
        return cls(
            count=len(entries),
            average=mean(e.rating for e in entries),
            like_share=sum(e.sentiment is Sentiment.LIKE for e in entries) / len(entries),
            dislike_share=sum(e.sentiment is Sentiment.DISLIKE for e in entries) / len(entries),
            oldest=min(years) if years else None,
            newest=max(years) if years else None,
            decade_averages={d: mean(rs) for d, rs in by_decade.items() if len(rs) >= 2},
        )

    @property
    def rater_kind(self) -> str:
        if self.like_share >= GENEROUS_LIKE_SHARE:
            return GENEROUS
        return STRICT if self.dislike_share >= STRICT_DISLIKE_SHARE else BALANCED

    @property
    def best_decade(self) -> str | None:
        rated = self.decade_averages
        return max(rated, key=lambda d: (rated[d], d)) if rated else None

    def rating_phrase(self) -> str:
        """The strictness writer's words: ``average rating 3.8, likes 45% and dislikes 12% of items``."""
        return (
            f"average rating {self.average:.1f}, likes {self.like_share:.0%} and dislikes "
            f"{self.dislike_share:.0%} of items"
        )

    def years_phrase(self) -> str | None:
        return None if self.oldest is None else f"from {self.oldest} to {self.newest}"

    def best_decade_phrase(self) -> str | None:
        best = self.best_decade
        return None if best is None else f"the {best} best ({self.decade_averages[best]:.1f} on average)"

    def summary(self) -> str:
        """One line for the prompt: every figure a profile may state, in the words a profile states it."""
        parts = [f"{self.count} rated items" + (f" {self.years_phrase()}" if self.oldest is not None else "")]
        parts.append(f"{RATER_PHRASES[self.rater_kind][0].lower()}: {self.rating_phrase()}")
        if (best := self.best_decade_phrase()) is not None:
            parts.append(f"rates {best}")
        return "Summary: " + "; ".join(parts) + "."
