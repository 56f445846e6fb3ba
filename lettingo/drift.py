"""When does a user need a new profile?

Cold start: the first profile is requested once a user has ``cold_start_after`` interactions.

Drift: compare what the user did *since the last profile* with what they had done *when it was profiled*, as
two distributions, over item attributes (genres) and over sentiments (like / neutral / dislike). The score is
the larger of the two Jensen-Shannon divergences (base 2, so it lies in [0, 1]). A request is emitted when

- at least ``min_new_events`` interactions arrived since the last profile (too little evidence is noise),
- at least ``cooldown_seconds`` of event time passed since the last request (no request storms), and
- the score reaches ``threshold``.

Everything is a function of the event stream (counts and event timestamps, never the wall clock), so a replay
of the same stream emits the same requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import log2

from lettingo.records import RequestReason
from lettingo.user_state import UserState


@dataclass(frozen=True, slots=True)
class DriftConfig:
    threshold: float = 0.15
    min_new_events: int = 5
    cooldown_seconds: float = 86_400.0
    cold_start_after: int = 5


@dataclass(frozen=True, slots=True)
class DriftDecision:
    reason: RequestReason | None  # None: no request
    score: float  # the drift score (0 at cold start or when not measured)

    @property
    def request(self) -> bool:
        return self.reason is not None


def jensen_shannon(p_counts: Mapping[str, float], q_counts: Mapping[str, float]) -> float:
    """JS divergence (base 2) between two count vectors; 0 when either is empty (nothing to compare).

    Negative counts count as 0. Computed once per applied event, so in one pass over the keys (sorted, so the
    sums do not depend on the order of the dictionaries)."""
    keys = sorted(p_counts.keys() | q_counts.keys())
    p_get, q_get = p_counts.get, q_counts.get
    p = [v if (v := p_get(k, 0.0)) > 0 else 0.0 for k in keys]
    q = [v if (v := q_get(k, 0.0)) > 0 else 0.0 for k in keys]
    p_total, q_total = sum(p), sum(q)
    if not p_total or not q_total:
        return 0.0
    kl_p = kl_q = 0.0
    for x, y in zip(p, q, strict=True):
        x, y = x / p_total, y / q_total
        m = (x + y) / 2
        if x > 0:
            kl_p += x * log2(x / m)
        if y > 0:
            kl_q += y * log2(y / m)
    return max(0.0, min(1.0, (kl_p + kl_q) / 2))


def since(current: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """What was added to ``current`` after ``reference`` was taken (positive differences only)."""
    ref = reference.get
    return {k: d for k, v in current.items() if (d := v - ref(k, 0.0)) > 0}


def drift_score(state: UserState) -> float:
    attributes = jensen_shannon(since(state.attribute_counts, state.reference_attributes), state.reference_attributes)
    sentiments = jensen_shannon(since(state.sentiment_counts, state.reference_sentiments), state.reference_sentiments)
    return max(attributes, sentiments)


def decide(state: UserState, config: DriftConfig) -> DriftDecision:
    if state.requests == 0:
        if state.count >= config.cold_start_after:
            return DriftDecision(RequestReason.COLD_START, 0.0)
        return DriftDecision(None, 0.0)
    if state.count - state.profiled_at < config.min_new_events:
        return DriftDecision(None, 0.0)
    score = drift_score(state)
    if state.last_ts - state.profiled_ts < config.cooldown_seconds:
        return DriftDecision(None, score)
    return DriftDecision(RequestReason.DRIFT if score >= config.threshold else None, score)
